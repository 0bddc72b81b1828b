"""The writer lock: one `lwm shard` writer per output (per partition) at a time.

A writer holds `.lwm-writer.lock` in its output folder (`.lwm-writer.part-<i>-of-<k>.lock` for
`--partition i/k`, so the k machines of one job write at once), created atomically with
`os.open(O_CREAT | O_EXCL)` and holding the pid, host and start time as JSON. A second writer is
refused with a one-line `WriterLockError` naming the lock file and its holder. A lock left by a
dead process on this host (pid no longer alive) is taken over, and the writer says so; a lock
from another host cannot be checked, so the message says to delete it if no writer runs there.
After taking its own lock a writer also refuses when a live writer holds a lock whose partition
count differs (a single run beside a `--partition` run, or `0/2` beside `0/4`: their shard
names overlap). The lock goes on normal exit and on any exception (`with`, `finally`); a
`kill -9` or an unhandled SIGTERM leaves it behind, and the next run takes it over as stale.

Remote outputs (fsspec URLs): `file://` is a local folder and gets the same atomic lock. Other
filesystems (`s3://`, `gs://`, `memory://`...) have no atomic create, so the lock there is best
effort: an existing lock is honoured exactly as above, but two writers starting within the
same moment can both write theirs (last writer wins, the other sees the switch only if it
reads back in time). Run one writer per output (or per partition) there by construction.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sharding.errors import ShardError
from sharding.output import DatasetOutput
from sharding.partition import Partition

LOCK_NAME = ".lwm-writer.lock"
LOCK_RE = re.compile(r"^\.lwm-writer(?:\.part-(\d{5})-of-(\d{5}))?\.lock$")
_READ_TRIES = 20  # a lock file is created empty and filled at once: re-read it for up to 1 s


class WriterLockError(ShardError):
    """Another writer holds the output (or this partition of it)."""


def lock_name(partition: Partition) -> str:
    """`.lwm-writer.lock`, or `.lwm-writer.part-00001-of-00004.lock` for partition 1/4."""
    if partition.single:
        return LOCK_NAME
    return f".lwm-writer.part-{partition.index:05d}-of-{partition.count:05d}.lock"


def lock_partition(name: str) -> Partition | None:
    """The partition a lock file name stands for, or None for other files."""
    match = LOCK_RE.match(name)
    if not match:
        return None
    if match.group(1) is None:
        return Partition()
    index, count = int(match.group(1)), int(match.group(2))
    return Partition(index, count) if 0 <= index < count else None


def holder_record(partition: Partition) -> dict[str, Any]:
    """What a lock file holds: this process's pid, host and start time (UTC), and its partition."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "partition": str(partition),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (signal 0 checks without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    except (OverflowError, ValueError):
        return False
    return True


def is_stale(holder: dict[str, Any] | None) -> bool:
    """A lock of this host whose process is gone; locks of other hosts are never judged stale."""
    if not holder or holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    return isinstance(pid, int) and not pid_alive(pid)


class _Store:
    """Create, read and delete lock files: atomically on a local folder, best effort elsewhere."""

    def __init__(self, output: DatasetOutput) -> None:
        self.output = output
        self.local = output.local_root()

    def where(self, name: str) -> str:
        return f"{self.local}/{name}" if self.local is not None else f"{self.output}/{name}"

    def create(self, name: str, text: str) -> bool:
        """Write `name` if it does not exist; False when it does."""
        if self.local is None:
            if self.output.exists(name):
                return False
            self.output.fs.pipe_file(self.output.path(name), text.encode())
            return self.read(name) == text  # another writer's pipe landed after ours: theirs
        path = os.path.join(self.local, name)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        return True

    def read(self, name: str) -> str | None:
        if self.local is None:
            return self.output.read_text(name)
        try:
            with open(os.path.join(self.local, name)) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def holder(self, name: str) -> tuple[str | None, dict[str, Any] | None]:
        """The lock's text (None: no lock) and its record (None: unreadable after a second)."""
        for _ in range(_READ_TRIES):
            text = self.read(name)
            if text is None:
                return None, None
            try:
                record = json.loads(text)
                if isinstance(record, dict):
                    return text, record
            except json.JSONDecodeError:
                pass
            time.sleep(0.05)
        return text, None

    def take_over(self, name: str, seen: str) -> None:
        """Delete the stale lock `name` if it still holds `seen` (another writer may have won)."""
        if self.local is None:
            if self.read(name) == seen:
                self.output.remove(name)
            return
        path = os.path.join(self.local, name)
        aside = f"{path}.stale-{os.getpid()}"
        try:
            os.rename(path, aside)  # atomic: of two writers taking over, one moves it
        except FileNotFoundError:
            return
        with open(aside) as f:
            moved = f.read()
        if moved != seen:  # a live lock replaced the stale one before our rename: put it back
            try:
                os.link(aside, path)
            except FileExistsError:
                pass
        os.unlink(aside)

    def remove_if(self, name: str, text: str) -> None:
        """Delete `name` if it is still ours (a user may have deleted it and another writer taken it)."""
        if self.read(name) == text:
            if self.local is None:
                self.output.remove(name)
            else:
                os.unlink(os.path.join(self.local, name))

    def names(self) -> list[str]:
        return sorted(os.listdir(self.local)) if self.local is not None else self.output.names()


def describe(holder: dict[str, Any] | None) -> str:
    if holder is None:
        return "a writer whose lock file cannot be read"
    return (f"pid {holder.get('pid')} on host {holder.get('host')} "
            f"(partition {holder.get('partition', '0/1')}, since {holder.get('started', '?')})")


def _refusal(store: _Store, name: str, holder: dict[str, Any] | None, what: str) -> WriterLockError:
    where = store.where(name)
    return WriterLockError(
        f"{what} is being written by {describe(holder)}, lock file {where}; wait for that writer to finish "
        f"or choose another --out; if no such writer runs any more, delete {where}"
    )


@contextmanager
def writer_lock(output: DatasetOutput, partition: Partition,
                say: Callable[[str], None] | None = None) -> Iterator[str]:
    """Hold the writer lock of `partition` of `output` (yields the lock file's path); `say` gets
    one line when a stale lock is taken over (default: stderr)."""
    say = say or (lambda line: print(line, file=sys.stderr))
    store = _Store(output)
    name = lock_name(partition)
    what = f"{output}" if partition.single else f"partition {partition} of {output}"
    text = json.dumps(holder_record(partition), sort_keys=True) + "\n"
    for _ in range(3):  # a stale lock taken over by a third writer at the same time: try again
        if store.create(name, text):
            break
        seen, holder = store.holder(name)
        if seen is None:
            continue  # released between our create and our read
        if not is_stale(holder):
            raise _refusal(store, name, holder, what)
        say(f"taking over the stale writer lock {store.where(name)}: {describe(holder)} is no longer running")
        store.take_over(name, seen)
    else:
        _, holder = store.holder(name)
        raise _refusal(store, name, holder, what)
    try:
        _refuse_overlapping(store, partition, what)
        yield store.where(name)
    finally:
        store.remove_if(name, text)


def _refuse_overlapping(store: _Store, partition: Partition, what: str) -> None:
    """Refuse when a live writer of a partitioning with other shard names (another count) holds
    its lock. Each writer takes its own lock first and checks the others after, so of two such
    writers starting at once at least one is refused."""
    for other in store.names():
        theirs = lock_partition(other)
        if theirs is None or theirs.count == partition.count:
            continue
        _, holder = store.holder(other)
        if holder is not None and not is_stale(holder):
            raise _refusal(store, other, holder, what)
