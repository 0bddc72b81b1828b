"""Folders a command will write, checked before any work starts.

A read-only working directory (a container, a shared checkout) otherwise fails half-way with a
`PermissionError` or an SQLAlchemy traceback. The check probes the folder, or the nearest one of
its parents that exists (the command would create the rest there), by creating and removing a
temporary file: the only test that also catches read-only mounts and root without
CAP_DAC_OVERRIDE, where permission bits alone mislead.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from sharding.errors import ConfigError, ShardError


def nearest_existing(path: Path) -> Path:
    """`path` or its nearest parent that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(folder: str | Path, what: str, fix: str) -> None:
    """Raise ConfigError naming `folder` (`what` it is for) and `fix` when nothing can be written there."""
    existing = nearest_existing(Path(folder))
    if not existing.is_dir():
        raise ConfigError(f"{folder}: {existing} is a file, not a folder ({what}); {fix}")
    try:
        handle, probe = tempfile.mkstemp(prefix=".lwm-write-probe-", dir=existing)
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        reason = "read-only filesystem" if error.errno == errno.EROFS else "permission denied"
        shown = folder if Path(os.path.abspath(folder)) == existing else f"{folder} (in {existing})"
        raise ConfigError(f"{shown}: not writable ({reason}; {what}); {fix}") from error
    os.close(handle)
    os.unlink(probe)


def permission_denied(path: str | Path, doing: str) -> ShardError:
    """The one line for a file this user may not read."""
    return ShardError(f"{path}: permission denied {doing}; make it readable (chmod a+r {path}, or chown) "
                       "or run as a user who can read it")
