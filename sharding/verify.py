"""`lwm shard verify DIR`: check a dataset against its manifest and the shard contract.

Every problem is reported as one line naming the shard (and sample) and the fix; the
checks are: manifest schema, each shard's presence, size, sha256, sample count, and each
sample's members and array shapes (road.npy exactly where the manifest names road lines).
"""

from __future__ import annotations

import json
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from sharding import contract
from sharding.errors import ShardError
from sharding.writer import PROGRESS_NAME, sha256_file


def load_local_manifest(root: Path) -> contract.Manifest:
    """Read `root/manifest.json`, refusing a missing folder, an unfinished run or another schema."""
    if not root.is_dir():
        raise ShardError(f"{root}: no such dataset folder; make one with `lwm shard synthetic --out {root}`")
    path = root / contract.MANIFEST_NAME
    if not path.exists():
        if (root / PROGRESS_NAME).exists():
            raise ShardError(f"{root}: sharding did not finish (no {contract.MANIFEST_NAME}); "
                             "re-run the same `lwm shard` command to complete it")
        raise ShardError(f"{root}: no {contract.MANIFEST_NAME}, so not a lightning-wm dataset; "
                         f"make one with `lwm shard synthetic --out {root}`")
    return contract.Manifest.from_json(path.read_text(), str(path))


def _group_members(path: Path) -> dict[str, dict[str, bytes]]:
    """All samples of a tar as {key: {suffix: bytes}}, in file order."""
    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    with tarfile.open(path, "r|") as tar:
        for member in tar:
            if not member.isreg():
                continue
            key, _, suffix = member.name.partition(".")
            samples[key][suffix] = tar.extractfile(member).read()
    return samples


def _check_sample(key: str, members: dict[str, bytes], manifest: contract.Manifest) -> list[str]:
    steps = manifest.chunk_steps
    expected = {contract.META, *contract.ARRAY_MEMBERS}
    expected |= {contract.image_member(c, t) for c in manifest.camera_names for t in range(steps)}
    if manifest.road_lines:
        expected.add(contract.ROAD)
    missing = sorted(expected - members.keys())
    if missing:
        return [f"sample {key}: missing {len(missing)} member(s), e.g. {missing[0]}"]
    problems = []
    meta = json.loads(members[contract.META])
    if meta.get("schema_version") != manifest.schema_version:
        problems.append(f"sample {key}: meta.json schema_version {meta.get('schema_version')!r}, "
                        f"the manifest's is {manifest.schema_version}")
    shapes = {
        contract.EGO: (steps, 4, 4),
        contract.ACTION: (steps, len(manifest.action_names)),
        contract.HAZARD: (steps,),
    }
    for name, shape in shapes.items():
        array = contract.decode_npy(members[name], f"sample {key} {name}")
        if array.shape != shape:
            problems.append(f"sample {key}: {name} has shape {list(array.shape)}, expected {list(shape)}")
    agents = contract.decode_npy(members[contract.AGENTS], f"sample {key} agents.npy")
    if agents.ndim != 3 or agents.shape[0] != steps or agents.shape[2] != len(manifest.agent_fields):
        problems.append(f"sample {key}: agents.npy has shape {list(agents.shape)}, expected "
                        f"[{steps}, N, {len(manifest.agent_fields)}]")
    elif not np.isfinite(agents).all():
        problems.append(f"sample {key}: agents.npy holds NaN or inf")
    problems.extend(_check_road(key, members, manifest))
    return problems


def _check_road(key: str, members: dict[str, bytes], manifest: contract.Manifest) -> list[str]:
    """road.npy: float32 [T, len(road_lines), P, 2] where the manifest names road lines, else absent."""
    if not manifest.road_lines:
        if contract.ROAD in members:
            return [f"sample {key}: has {contract.ROAD} but the manifest names no road_lines"]
        return []
    road = contract.decode_npy(members[contract.ROAD], f"sample {key} {contract.ROAD}")
    lines = len(manifest.road_lines)
    if road.ndim != 4 or road.shape[:2] != (manifest.chunk_steps, lines) or road.shape[3] != 2:
        return [f"sample {key}: {contract.ROAD} has shape {list(road.shape)}, expected "
                f"[{manifest.chunk_steps}, {lines}, P, 2]"]
    if road.dtype != np.float32:
        return [f"sample {key}: {contract.ROAD} is {road.dtype}, expected float32"]
    return []


def verify_dataset(root: Path) -> list[str]:
    """Return one line per problem found in the dataset under `root` (empty: all good)."""
    manifest = load_local_manifest(root)
    problems = []
    if not manifest.shards:
        problems.append(f"{contract.MANIFEST_NAME}: lists no shards; re-create the dataset")
    fix = "delete it and re-run the `lwm shard` command that made the dataset (complete shards are kept)"
    for shard in manifest.shards:
        path = root / shard.name
        if not path.exists():
            problems.append(f"{shard.name}: missing; re-run the `lwm shard` command that made the dataset")
            continue
        size = path.stat().st_size
        if size != shard.bytes:
            problems.append(f"{shard.name}: {size} bytes, manifest says {shard.bytes} (truncated?); {fix}")
            continue
        digest = sha256_file(path)
        if digest != shard.sha256:
            problems.append(f"{shard.name}: sha256 {digest[:12]}... differs from the manifest's "
                            f"{shard.sha256[:12]}... (the file changed after writing); {fix}")
            continue
        try:
            samples = _group_members(path)
        except (tarfile.TarError, EOFError) as error:
            problems.append(f"{shard.name}: not a readable tar ({error}); {fix}")
            continue
        if len(samples) != shard.samples:
            problems.append(f"{shard.name}: {len(samples)} samples, manifest says {shard.samples}; {fix}")
        for key, members in samples.items():
            problems.extend(f"{shard.name}: {p}" for p in _check_sample(key, members, manifest))
    return problems
