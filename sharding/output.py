"""Where a dataset is written: a local folder or any fsspec URL (`file://`, `memory://`, `s3://`).

Every file appears under its final name only when complete. Locally that is a temporary name,
fsync and rename; on fsspec targets the bytes are uploaded to a temporary key and then moved
(object stores copy then delete, so a reader never sees a half-uploaded shard under its
final name). Shards are always written to a local file first, so the tar writer, the size and
the sha256 never depend on the remote filesystem. One writer per output (per partition) at a
time: sharding.lock (atomic on local folders and `file://`, best effort on other filesystems).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import fsspec

TMP_MARK = ".tmp-"


def is_url(out: str | Path) -> bool:
    return "://" in str(out)


class DatasetOutput:
    """The root of one dataset; file names are relative to it (`train-00000.tar`, `manifest.json`)."""

    def __init__(self, out: str | Path) -> None:
        self.url = str(out).rstrip("/")
        self.remote = is_url(out)
        if self.remote:
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
            self.root = self.root.rstrip("/")
        else:
            self.fs, self.root = None, self.url

    def __str__(self) -> str:
        return self.url

    def local_root(self) -> str | None:
        """The folder on this machine's filesystem (a plain path or `file://`), else None."""
        if not self.remote:
            return self.root
        protocol = self.fs.protocol
        return self.root if {"file", "local"} & set([protocol] if isinstance(protocol, str) else protocol) else None

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def temp_name(self, name: str) -> str:
        """Hidden temporary name of `name`; unique per process so parallel machines never collide."""
        return f".{name}{TMP_MARK}{os.getpid()}"

    def make_root(self) -> None:
        if self.remote:
            self.fs.makedirs(self.root, exist_ok=True)
        else:
            os.makedirs(self.root, exist_ok=True)

    def exists(self, name: str) -> bool:
        return self.fs.exists(self.path(name)) if self.remote else os.path.exists(self.path(name))

    def size(self, name: str) -> int | None:
        """Bytes of `name`, or None when it does not exist."""
        try:
            return self.fs.size(self.path(name)) if self.remote else os.path.getsize(self.path(name))
        except FileNotFoundError:
            return None

    def read_text(self, name: str) -> str | None:
        """Contents of `name`, or None when it does not exist."""
        try:
            if self.remote:
                return self.fs.cat_file(self.path(name)).decode()
            return Path(self.path(name)).read_text()
        except FileNotFoundError:
            return None

    def names(self) -> list[str]:
        """File names directly under the root (hidden ones included)."""
        if self.remote:
            if not self.fs.exists(self.root):
                return []
            return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False))
        return sorted(os.listdir(self.root)) if os.path.isdir(self.root) else []

    def remove(self, name: str) -> None:
        if self.remote:
            if self.fs.exists(self.path(name)):
                self.fs.rm_file(self.path(name))
        else:
            Path(self.path(name)).unlink(missing_ok=True)

    def write_text(self, name: str, text: str) -> None:
        """Replace `name` with `text` atomically."""
        tmp = self.temp_name(name)
        if self.remote:
            self.fs.pipe_file(self.path(tmp), text.encode())
            self._commit(tmp, name)
            return
        with open(self.path(tmp), "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(self.path(tmp), self.path(name))

    def local_temp(self, name: str, scratch: str) -> str:
        """Local file to write `name` into before `commit_file`: in the dataset folder when local
        (so the commit is a rename on one filesystem), else in the `scratch` folder."""
        return self.path(self.temp_name(name)) if not self.remote else os.path.join(scratch, name)

    def commit_file(self, local: str, name: str) -> None:
        """Move the complete local file `local` (from `local_temp`) to its final `name`."""
        if not self.remote:
            os.replace(local, self.path(name))
            return
        tmp = self.temp_name(name)
        try:
            self.fs.put_file(local, self.path(tmp))
            self._commit(tmp, name)
        finally:
            if self.fs.exists(self.path(tmp)):
                self.fs.rm_file(self.path(tmp))
            os.unlink(local)

    def _commit(self, tmp: str, name: str) -> None:
        if self.fs.exists(self.path(name)):
            self.fs.rm_file(self.path(name))  # some filesystems refuse to move onto a file
        self.fs.mv(self.path(tmp), self.path(name))

    def remove_stale_temps(self, names: set[str]) -> list[str]:
        """Delete temporaries of `names` left by a killed run; others' (another machine's part) stay."""
        stale = [n for n in self.names() if TMP_MARK in n and n.startswith(".")
                 and n[1:].split(TMP_MARK)[0] in names]
        for name in stale:
            self.remove(name)
        return stale


def scratch_dir(output: DatasetOutput) -> tuple[str, Callable[[], None]]:
    """A local scratch folder for remote outputs and the function that removes it."""
    if not output.remote:
        return output.root, lambda: None
    folder = tempfile.mkdtemp(prefix="lwm-shard-")
    return folder, lambda: shutil.rmtree(folder, ignore_errors=True)
