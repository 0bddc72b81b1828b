"""The shards of a dataset: open one (local folder, http(s) URL, brace pattern, any fsspec URL)
and stream the samples of each shard, checked against the manifest.

Step 1 of the batch path (tar -> `ShardSet` samples -> `windows.decode_window` -> `WindowStream`
batches -> `ShardDataModule.on_after_batch_transfer`). A sample is a dict of member bytes
({"__key__", "<suffix>": bytes}, parsed by `tar_stream`); nothing is decoded here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import braceexpand
import fsspec

from datamodules import tar_stream
from sharding import contract
from sharding.errors import ShardError
from sharding.writable import permission_denied


@dataclass
class ShardSet:
    """A dataset's manifest and the URL of each of its shards that this run reads."""

    root: str
    manifest: contract.Manifest
    urls: dict[str, str]  # shard name -> URL or local path


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def open_shard_set(path: str) -> ShardSet:
    """Read the manifest of the dataset at `path` and resolve its shard URLs.

    `path` is a folder or URL holding `manifest.json`, or a brace pattern of shard names in
    such a folder (`http://host/ds/train-{00000..00003}.tar`): then only those shards are used.
    """
    selected = None
    root = path.rstrip("/")
    if "{" in path or path.endswith(".tar"):
        names = list(braceexpand.braceexpand(path))
        root = os.path.dirname(names[0]) if _is_local(path) else names[0].rsplit("/", 1)[0]
        selected = {n.rsplit("/", 1)[-1] for n in names}
    manifest_url = f"{root}/{contract.MANIFEST_NAME}"
    if _is_local(root):
        local_root = root.removeprefix("file://")
        if os.path.isfile(local_root):
            raise ShardError(f"{local_root}: is a file, not a dataset folder; set data.path={os.path.dirname(local_root)}")
        if not os.path.isdir(local_root):
            raise ShardError(f"{local_root}: no such dataset folder; make one with "
                             f"`lwm shard synthetic|nuscenes|waymo --out {local_root}` or fix data.path")
        if not os.listdir(local_root):
            raise ShardError(f"{local_root}: the dataset folder is empty; make one with "
                             f"`lwm shard synthetic|nuscenes|waymo --out {local_root}`")
    try:
        with fsspec.open(manifest_url, "rt") as f:
            text = f.read()
    except PermissionError:
        raise permission_denied(manifest_url, "reading the manifest") from None
    except (FileNotFoundError, OSError) as error:
        raise ShardError(f"{manifest_url}: cannot read the manifest ({type(error).__name__}: {error}); "
                         "point data.path at a folder made by `lwm shard`") from error
    manifest = contract.Manifest.from_json(text, manifest_url)
    names = [s.name for s in manifest.shards]
    if selected is not None:
        unknown = sorted(selected - set(names))
        if unknown:
            raise ShardError(f"{path}: shard {unknown[0]} is not in {manifest_url}; listed: {', '.join(names)}")
        names = [n for n in names if n in selected]
    urls = {n: f"{root}/{n}" for n in names}
    if _is_local(root):
        _check_local_sizes(manifest, urls)
    return ShardSet(root, manifest, urls)


def _check_local_sizes(manifest: contract.Manifest, urls: dict[str, str]) -> None:
    """Cheap check before training: every local shard exists, is readable, with the size the manifest says."""
    for shard in manifest.shards:
        if shard.name not in urls:
            continue
        local = urls[shard.name].removeprefix("file://")
        if not os.path.exists(local):
            raise ShardError(f"{local}: shard listed in the manifest is missing; "
                             "re-run the `lwm shard` command that made the dataset")
        try:
            open(local, "rb").close()  # unreadable: say so now, not from a DataLoader worker mid-training
        except PermissionError:
            raise permission_denied(local, "reading the shard") from None
        size = os.path.getsize(local)
        if size != shard.bytes:
            raise ShardError(f"{local}: {size} bytes, the manifest says {shard.bytes} (truncated or changed); "
                             f"check with `lwm shard verify {os.path.dirname(local)}`")


def iter_samples(url: str, expected: int) -> Iterator[dict]:
    """Samples of one shard as {"__key__", suffix: bytes}.

    A corrupt or truncated tar raises ShardError, and so does one with fewer samples than the
    manifest says.
    """
    fix = "check the dataset with `lwm shard verify` and re-shard"
    count = 0
    try:
        with fsspec.open(url, "rb") as stream:
            for sample in tar_stream.iter_samples(stream):
                sample["__url__"] = url
                count += 1
                yield sample
    except PermissionError:
        raise permission_denied(url, "reading the shard") from None
    except (OSError, ValueError) as error:
        raise ShardError(f"{url}: truncated or corrupt shard ({type(error).__name__}: {error.args[0]}); {fix}") from error
    if count != expected:
        raise ShardError(f"{url}: {count} samples, the manifest says {expected} (corrupt shard); {fix}")
