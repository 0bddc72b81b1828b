"""Open a dataset (local folder, http(s) URL, brace pattern, any fsspec URL), stream the
samples of its shards, and decode one window of one sample into arrays.

Decoding is lazy: only the frames of the chosen cameras inside the chosen window are
decoded. The JPEG decoder is simplejpeg (about 3x Pillow on 64x64 frames here, see
benchmarks/bench_data.py); Pillow is the fallback.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import braceexpand
import fsspec
import numpy as np

from datamodules import tar_stream
from sharding import contract
from sharding.errors import ShardError

try:
    import simplejpeg
except ImportError:  # pragma: no cover - simplejpeg is a dependency; Pillow keeps it working
    simplejpeg = None


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG bytes -> uint8 [H, W, 3] RGB."""
    if simplejpeg is not None:
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@dataclass
class Dataset:
    """A manifest and the URL of each of its shards that this run reads."""

    root: str
    manifest: contract.Manifest
    urls: dict[str, str]  # shard name -> URL or local path


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def open_dataset(path: str) -> Dataset:
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
        if not os.path.isdir(local_root):
            raise ShardError(f"{local_root}: no such dataset folder; make one with "
                             f"`lwm shard synthetic|nuscenes|waymo --out {local_root}` or fix data.path")
        if not os.listdir(local_root):
            raise ShardError(f"{local_root}: the dataset folder is empty; make one with "
                             f"`lwm shard synthetic|nuscenes|waymo --out {local_root}`")
    try:
        with fsspec.open(manifest_url, "rt") as f:
            text = f.read()
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
    return Dataset(root, manifest, urls)


def _check_local_sizes(manifest: contract.Manifest, urls: dict[str, str]) -> None:
    """Cheap check before training: every local shard exists with the size the manifest says."""
    for shard in manifest.shards:
        if shard.name not in urls:
            continue
        local = urls[shard.name].removeprefix("file://")
        if not os.path.exists(local):
            raise ShardError(f"{local}: shard listed in the manifest is missing; "
                             "re-run the `lwm shard` command that made the dataset")
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
    except (OSError, ValueError) as error:
        raise ShardError(f"{url}: truncated or corrupt shard ({type(error).__name__}: {error.args[0]}); {fix}") from error
    if count != expected:
        raise ShardError(f"{url}: {count} samples, the manifest says {expected} (corrupt shard); {fix}")


def decode_window(
    sample: dict, start: int, steps: int, cameras: list[str], action_index: list[int]
) -> dict[str, np.ndarray]:
    """One window of `steps` steps from `start` of a sample, as arrays (see datamodules.batch).

    frames uint8 [T, V, 3, H, W]; actions float32 [T, A]; ego float32 [T, 4, 4] relative to the
    window's first step; hazard float32 [T]; intrinsics [V, 3, 3]; ego_from_camera [V, 4, 4];
    timestamps int64 [T].
    """
    key = f"{sample.get('__url__')} sample {sample['__key__']}"
    try:
        meta = json.loads(sample[contract.META])
        camera_index = [meta["cameras"].index(c) for c in cameras]
        window = range(start, start + steps)
        frames = np.stack([
            np.stack([decode_jpeg(sample[contract.image_member(c, t)]) for c in cameras]) for t in window
        ])  # [T, V, H, W, 3]
        world_from_ego = contract.decode_npy(sample[contract.EGO], key)[start : start + steps]
    except KeyError as error:
        raise ShardError(f"{key}: lacks member {error}; re-shard it") from error
    first_from_world = np.linalg.inv(world_from_ego[0])
    actions = contract.decode_npy(sample[contract.ACTION], key)[start : start + steps]
    hazard = contract.decode_npy(sample[contract.HAZARD], key)[start : start + steps]
    return {
        "frames": np.ascontiguousarray(frames.transpose(0, 1, 4, 2, 3)),
        "actions": actions[:, action_index].astype(np.float32),
        "ego": (first_from_world @ world_from_ego).astype(np.float32),
        "hazard": hazard.astype(np.float32),
        "intrinsics": np.asarray(meta["intrinsics"], np.float32)[camera_index],
        "ego_from_camera": np.asarray(meta["ego_from_camera"], np.float32)[camera_index],
        "timestamps": np.asarray(meta["timestamps_us"][start : start + steps], np.int64),
    }
