"""Write scenes into WebDataset shards plus `manifest.json`, in parallel and resumably.

Any source hands over a list of `SceneTask`s and a picklable `encode(task) -> samples`
function; scenes are encoded in a process pool and written in order, one shard at a time.
A shard appears under its final name only when complete (temporary name, fsync, rename);
a `.progress.json` lists finished shards so a re-run skips them; `manifest.json` is
written last, so its presence means the dataset is complete.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import webdataset as wds
from tqdm import tqdm

from sharding import contract
from sharding.errors import ShardError

PROGRESS_NAME = ".progress.json"
_TMP_MARK = ".tmp-"


@dataclass(frozen=True)
class SceneTask:
    """One scene to encode: its id, its split, and a source-specific handle (seed, token...)."""

    scene_id: str
    split: str
    handle: Any


@dataclass
class ShardPlan:
    name: str
    split: str
    tasks: list[SceneTask]


def plan_shards(tasks: list[SceneTask], scenes_per_shard: int) -> list[ShardPlan]:
    """Group scenes into shards, per split, in the given order: a shard never mixes splits."""
    plans: list[ShardPlan] = []
    for split in contract.SPLITS:
        split_tasks = [t for t in tasks if t.split == split]
        for index, start in enumerate(range(0, len(split_tasks), scenes_per_shard)):
            chunk = split_tasks[start : start + scenes_per_shard]
            plans.append(ShardPlan(f"{split}-{index:05d}.tar", split, chunk))
    return plans


def fingerprint(settings: dict[str, Any]) -> str:
    """Short hash of everything that determines the bytes of the dataset."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}{_TMP_MARK}{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_shard(out: Path, plan: ShardPlan, samples: list[dict[str, Any]]) -> contract.ShardInfo:
    """Write one shard atomically and describe it for the manifest."""
    final = out / plan.name
    tmp = out / f".{plan.name}{_TMP_MARK}{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            # mtime/user/group fixed so the same settings give byte-identical shards.
            with wds.TarWriter(f, mtime=0, user="lwm", group="lwm") as tar:
                for sample in samples:
                    tar.write(sample)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return contract.ShardInfo(
        name=plan.name,
        split=plan.split,
        samples=len(samples),
        bytes=final.stat().st_size,
        sha256=sha256_file(final),
        scenes=[t.scene_id for t in plan.tasks],
    )


def _load_progress(out: Path, expected: str) -> dict[str, contract.ShardInfo]:
    """Shards finished by an earlier run with the same settings (others are rewritten)."""
    manifest_path = out / contract.MANIFEST_NAME
    progress_path = out / PROGRESS_NAME
    for path in (manifest_path, progress_path):
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        found = data.get("fingerprint")
        if found != expected:
            raise ShardError(
                f"{out} already holds shards made with other settings (fingerprint {found}, "
                f"these settings give {expected}); choose another --out or delete {out}"
            )
        done = {s["name"]: contract.ShardInfo(**s) for s in data["shards"]}
        return {
            name: info
            for name, info in done.items()
            if (out / name).exists() and (out / name).stat().st_size == info.bytes
        }
    return {}


def _encode_in_order(
    encode: Callable[[SceneTask], list[dict[str, Any]]], tasks: list[SceneTask], workers: int
) -> Iterator[list[dict[str, Any]]]:
    """Yield each task's samples in task order, encoding up to `workers` scenes at once."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(encode, tasks)
        return
    # spawn, not fork: the parent may hold torch/OpenMP threads that fork would copy broken.
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        yield from pool.imap(encode, tasks, chunksize=1)


def write_dataset(
    out: Path,
    plans: list[ShardPlan],
    encode: Callable[[SceneTask], list[dict[str, Any]]],
    manifest_fields: dict[str, Any],
    workers: int = 2,
    progress: bool = True,
) -> contract.Manifest:
    """Encode every planned scene and write the shards and the manifest under `out`.

    `manifest_fields` holds the Manifest fields other than `shards` (source, fps, rig...),
    including `fingerprint`. Returns the manifest written.
    """
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f".*{_TMP_MARK}*"):  # left by a run that was killed mid-write
        stale.unlink()
    done = _load_progress(out, manifest_fields["fingerprint"])
    todo = [p for p in plans if p.name not in done]
    tasks = [t for p in todo for t in p.tasks]
    frames_per_scene = 0
    bar = tqdm(total=len(tasks), unit="scene", disable=not progress, desc=f"shards -> {out}")
    encoded = _encode_in_order(encode, tasks, workers)
    try:
        for plan in todo:
            samples = []
            for _ in plan.tasks:
                scene_samples = next(encoded)
                samples.extend(scene_samples)
                frames_per_scene = sum(k.endswith(".jpg") for s in scene_samples for k in s)
                bar.update(1)
                bar.set_postfix(frames_per_scene=frames_per_scene, refresh=False)
            done[plan.name] = _write_shard(out, plan, samples)
            partial = {"fingerprint": manifest_fields["fingerprint"], "shards": [asdict(s) for s in done.values()]}
            _write_json_atomic(out / PROGRESS_NAME, json.dumps(partial, indent=1))
    finally:
        encoded.close()
        bar.close()
    manifest = contract.Manifest(shards=[done[p.name] for p in plans], **manifest_fields)
    _write_json_atomic(out / contract.MANIFEST_NAME, manifest.to_json())
    (out / PROGRESS_NAME).unlink(missing_ok=True)
    return manifest
