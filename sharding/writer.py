"""Write scenes into WebDataset shards plus a manifest, in parallel, resumably, at fleet scale.

Any source hands over a list of `SceneTask`s and a picklable `encode(task) -> samples`
function; scenes are encoded in a process pool and written in order, one shard at a time.
A shard appears under its final name only when complete (sharding.output: local rename or
fsspec upload-then-move); a progress file lists finished shards so a re-run skips them; the
manifest is written last, so its presence means the dataset (or this machine's part) is complete.

Fleet options: `partition=(i, k)` writes every k-th planned shard and a part manifest
(joined by `lwm shard merge`, sharding.merge); `skip_bad=True` leaves out scenes whose
encode raised `SourceError` and lists them in `Manifest.skipped_scenes`; without it the run
stops before writing the shard that holds such a scene.

One writer per output at a time: the run holds a lock file for its partition (sharding.lock)
from before it looks at the folder until the manifest is written, so a second `lwm shard` into
the same `--out` is refused instead of replacing the first one's shards.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sharding import contract
from sharding.errors import ShardError, SourceError
from sharding.lock import writer_lock
from sharding.output import DatasetOutput, scratch_dir
from sharding.partition import Partition, as_partition

PROGRESS_NAME = Partition().progress_name  # `.progress.json` of a single-machine run


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


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class SceneFailure:
    """A scene whose encode raised SourceError, returned as data so the pool keeps going."""

    scene_id: str
    reason: str


class CatchSourceErrors:
    """Picklable wrapper run in the workers: `SourceError` -> `SceneFailure`; other errors are bugs
    and still propagate (they stop the run, complete shards stay)."""

    def __init__(self, encode: Callable[[SceneTask], list[dict[str, Any]]]) -> None:
        self.encode = encode

    def __call__(self, task: SceneTask) -> list[dict[str, Any]] | SceneFailure:
        try:
            return self.encode(task)
        except SourceError as error:
            lines = str(error).strip().splitlines()
            return SceneFailure(task.scene_id, lines[0] if lines else type(error).__name__)


def _encode_in_order(
    encode: Callable[[SceneTask], Any], tasks: list[SceneTask], workers: int
) -> Iterator[Any]:
    """Yield each task's result in task order, encoding up to `workers` scenes at once."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(encode, tasks)
        return
    # spawn, not fork: the parent may hold torch/OpenMP threads that fork would copy broken.
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_leave_interrupts_to_the_parent) as pool:
        yield from pool.imap(encode, tasks, chunksize=1)


def _leave_interrupts_to_the_parent() -> None:
    """Ctrl-C reaches every process of the terminal's group: an encoder ignores it (no traceback per
    worker); the parent stops, and leaving the `with Pool` block terminates the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _write_shard(output: DatasetOutput, scratch: str, plan: ShardPlan, scenes: list[str],
                 samples: list[dict[str, Any]]) -> contract.ShardInfo:
    """Write one shard to a local file, then commit it under its final name; describe it."""
    import webdataset as wds  # here, not at the top: it imports torch (2 s), which spawned encoders never need

    local = output.local_temp(plan.name, scratch)
    try:
        with open(local, "wb") as f:
            # mtime/user/group fixed so the same settings give byte-identical shards.
            with wds.TarWriter(f, mtime=0, user="lwm", group="lwm") as tar:
                for sample in samples:
                    tar.write(sample)
            f.flush()
            os.fsync(f.fileno())
        size, digest = Path(local).stat().st_size, sha256_file(local)
        output.commit_file(local, plan.name)
    finally:
        Path(local).unlink(missing_ok=True)
    return contract.ShardInfo(name=plan.name, split=plan.split, samples=len(samples), bytes=size,
                              sha256=digest, scenes=scenes)


@dataclass
class _State:
    """What is finished: shards by name, and the scenes skipped (each naming its shard)."""

    shards: dict[str, contract.ShardInfo]
    skipped: list[dict[str, str]]

    def is_done(self, plan: ShardPlan) -> bool:
        """Written, or every scene of it was skipped (an empty shard is not written)."""
        if plan.name in self.shards:
            return True
        skipped = {s["scene"] for s in self.skipped if s.get("shard") == plan.name}
        return bool(plan.tasks) and all(t.scene_id in skipped for t in plan.tasks)

    def progress_json(self, fingerprint_: str) -> str:
        return json.dumps({"fingerprint": fingerprint_, "shards": [asdict(s) for s in self.shards.values()],
                           "skipped": self.skipped}, indent=1)


def _load_state(output: DatasetOutput, partition: Partition, expected: str, plans: list[ShardPlan]) -> _State:
    """Shards of `plans` finished by an earlier run with the same settings (others are rewritten)."""
    state = _State({}, [])
    for name in dict.fromkeys([contract.MANIFEST_NAME, partition.manifest_name, partition.progress_name]):
        text = output.read_text(name)
        if text is None:
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            continue  # an unreadable progress file only costs a rewrite
        found = data.get("fingerprint")
        if found != expected:
            raise ShardError(
                f"{output} already holds shards made with other settings ({name}: fingerprint {found}, "
                f"these settings give {expected}); choose another --out or delete {output}"
            )
        for shard in data.get("shards", []):
            state.shards[shard["name"]] = contract.ShardInfo(**shard)
        for entry in data.get("skipped", data.get("skipped_scenes", [])):
            if entry not in state.skipped:
                state.skipped.append(entry)
    planned = {p.name for p in plans}
    state.shards = {n: s for n, s in state.shards.items() if n in planned and output.size(n) == s.bytes}
    done = {p.name for p in plans if state.is_done(p)}  # written, or all of its scenes skipped
    state.skipped = [s for s in state.skipped if s.get("shard") in done]  # a shard redone re-reports its scenes
    return state


def _ordered(plans: list[ShardPlan], state: _State) -> tuple[list[contract.ShardInfo], list[dict[str, str]]]:
    """Shards and skipped scenes in plan order, so every run (and every merge) lists them alike."""
    shards = [state.shards[p.name] for p in plans if p.name in state.shards]
    skipped = []
    for plan in plans:
        by_scene = {s["scene"]: s for s in state.skipped if s.get("shard") == plan.name}
        skipped.extend(by_scene[t.scene_id] for t in plan.tasks if t.scene_id in by_scene)
    return shards, skipped


class _Progress:
    """tqdm bar over scenes (scenes/s) with frames/s from the images encoded so far."""

    def __init__(self, total: int, enabled: bool, where: str) -> None:
        self.bar = tqdm(total=total, unit="scene", disable=not enabled, desc=f"shards -> {where}")
        self.frames = 0
        self.start = time.perf_counter()

    def scene_done(self, samples: list[dict[str, Any]]) -> None:
        self.frames += sum(k.endswith(".jpg") for s in samples for k in s)
        rate = self.frames / max(time.perf_counter() - self.start, 1e-9)
        self.bar.update(1)
        self.bar.set_postfix_str(f"{rate:.0f} frames/s", refresh=False)

    def say(self, line: str) -> None:
        tqdm.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def write_dataset(
    out: str | Path,
    plans: list[ShardPlan],
    encode: Callable[[SceneTask], list[dict[str, Any]]],
    manifest_fields: dict[str, Any],
    workers: int = 2,
    progress: bool = True,
    skip_bad: bool = False,
    partition: Partition | tuple[int, int] | str | None = None,
) -> contract.Manifest:
    """Encode the planned scenes of this partition and write shards and a manifest under `out`.

    `out` is a local folder or an fsspec URL. `plans` is the global plan (all machines); with
    `partition=(i, k)`, k > 1, only `plans[i::k]` are written, plus
    `manifest.part-<i>-of-<k>.json`; otherwise `manifest.json`. `manifest_fields` holds the
    Manifest fields other than `shards` and `skipped_scenes` (source, fps, rig...), including
    `fingerprint`. Returns the manifest (or part manifest) written.
    """
    partition = as_partition(partition)
    output = DatasetOutput(out)
    output.make_root()
    with writer_lock(output, partition):  # before anything is read or removed: the folder may be another run's
        return _write_locked(output, plans, encode, manifest_fields, workers, progress, skip_bad, partition)


def _write_locked(output: DatasetOutput, plans: list[ShardPlan], encode: Callable[[SceneTask], list[dict[str, Any]]],
                  manifest_fields: dict[str, Any], workers: int, progress: bool, skip_bad: bool,
                  partition: Partition) -> contract.Manifest:
    """write_dataset's work, done while this process holds the output's writer lock."""
    mine = partition.select(plans)
    output.remove_stale_temps({p.name for p in mine} | {contract.MANIFEST_NAME, partition.manifest_name,
                                                        partition.progress_name})
    key = manifest_fields["fingerprint"]
    state = _load_state(output, partition, key, mine)
    todo = [p for p in mine if not state.is_done(p)]
    tasks = [t for p in todo for t in p.tasks]
    bar = _Progress(len(tasks), progress, str(output))
    scratch, remove_scratch = scratch_dir(output)
    encoded = _encode_in_order(CatchSourceErrors(encode), tasks, workers)
    try:
        for plan in todo:
            samples, scenes, failures = [], [], []
            for task in plan.tasks:
                result = next(encoded)
                if isinstance(result, SceneFailure):
                    failures.append({"scene": result.scene_id, "reason": result.reason,
                                     "split": plan.split, "shard": plan.name})
                    result = []
                else:
                    scenes.append(task.scene_id)
                    samples.extend(result)
                bar.scene_done(result)
            if failures and not skip_bad:
                first = failures[0]
                raise SourceError(
                    f"scene {first['scene']}: {first['reason']} (nothing written for {plan.name}; "
                    "fix the source, or re-run with --skip-bad to leave the scene out and list it in the manifest)"
                )
            for failure in failures:
                bar.say(f"skipped scene {failure['scene']} ({plan.name}): {failure['reason']}")
            state.skipped.extend(failures)
            if scenes:
                state.shards[plan.name] = _write_shard(output, scratch, plan, scenes, samples)
            output.write_text(partition.progress_name, state.progress_json(key))
    finally:
        encoded.close()
        bar.close()
        remove_scratch()
    shards, skipped = _ordered(mine, state)
    manifest = contract.Manifest(shards=shards, skipped_scenes=skipped, **manifest_fields)
    text = manifest.to_json()
    if not partition.single:
        data = json.loads(text)
        data["partition"] = {"index": partition.index, "count": partition.count,
                             "planned_shards": [p.name for p in plans]}
        text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    output.write_text(partition.manifest_name, text)
    output.remove(partition.progress_name)
    return manifest
