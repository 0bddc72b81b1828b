"""Report folders written all at once: a temporary sibling folder renamed into place when complete.

An interrupted `lwm evaluate` or `lwm simulate` leaves no half-written report, and a report
already at the path is kept until the new one is whole.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """Yields a temporary folder beside `out`; when the block ends without an error it becomes `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        yield staging
        if out.exists():
            previous = out.with_name(f".{out.name}-old")
            shutil.rmtree(previous, ignore_errors=True)
            os.replace(out, previous)
            os.replace(staging, out)
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_outputs(out: Path, files: dict[str, str]) -> None:
    """Write `files` ({name: text}) into `out` all at once."""
    with staged(out) as folder:
        for name, text in files.items():
            (folder / name).write_text(text)
