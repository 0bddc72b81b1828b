"""`lwm shard verify DIR`: check a dataset against its manifest and the shard contract.

Every problem is reported as one line naming the shard (and sample) and the fix; the
checks are: manifest schema and field types, tars the manifest does not list, each shard's
presence, size, sha256, sample count, and each sample's members and array dtypes and shapes
(road.npy exactly where the manifest names road lines); `deep` also decodes every JPEG.
"""

from __future__ import annotations

import json
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import simplejpeg

from sharding import contract
from sharding.errors import ShardError
from sharding.writable import permission_denied
from sharding.writer import PROGRESS_NAME, sha256_file


def load_local_manifest(root: Path) -> contract.Manifest:
    """Read `root/manifest.json`, refusing a missing folder, an unfinished run or another schema."""
    if root.is_file():
        raise ShardError(f"{root}: is a file, not a dataset folder; give its folder: {root.parent}")
    if not root.is_dir():
        raise ShardError(f"{root}: no such dataset folder; make one with `lwm shard synthetic --out {root}`")
    path = root / contract.MANIFEST_NAME
    if not path.exists():
        if (root / PROGRESS_NAME).exists():
            raise ShardError(f"{root}: sharding did not finish (no {contract.MANIFEST_NAME}); "
                             "re-run the same `lwm shard` command to complete it")
        raise ShardError(f"{root}: no {contract.MANIFEST_NAME}, so not a lightning-wm dataset; "
                         f"make one with `lwm shard synthetic --out {root}`")
    try:
        text = path.read_text()
    except PermissionError:
        raise permission_denied(path, "reading the manifest") from None
    return contract.Manifest.from_json(text, str(path))


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


def _check_sample(key: str, members: dict[str, bytes], manifest: contract.Manifest, spec: contract.SampleSpec,
                  deep: bool) -> list[str]:
    """Problems of one sample: missing members, meta.json, every array's dtype and shape; with
    `deep` also every JPEG decoded (and its size checked) and meta.json's cameras and timestamps."""
    steps = manifest.chunk_steps
    images = {contract.image_member(c, t): c for c in manifest.camera_names for t in range(steps)}
    expected = {contract.META, *spec.arrays, *images}
    problems = []
    missing = sorted(expected - members.keys())
    if missing:
        problems.append(f"sample {key}: missing {len(missing)} member(s), e.g. {missing[0]}")
    if contract.ROAD in members and not manifest.road_lines:
        problems.append(f"sample {key}: has {contract.ROAD} but the manifest names no road_lines")
    if contract.META in members:
        problems.extend(_check_meta(key, members[contract.META], manifest, deep))
    for name in spec.arrays:
        if name not in members:
            continue
        try:
            array = contract.decode_npy(members[name], f"sample {key}: {name}")
        except ShardError as error:
            problems.append(str(error))
            continue
        problem = spec.array_problem(name, array)
        if problem is None and name == contract.AGENTS and not np.isfinite(array).all():
            problem = "holds NaN or inf"
        if problem is not None:
            problems.append(f"sample {key}: {name} {problem}")
    if deep:
        for name, camera in sorted(images.items()):
            if name not in members:
                continue
            try:
                image = simplejpeg.decode_jpeg(members[name], colorspace="RGB")
            except Exception as error:  # simplejpeg raises several kinds on bad bytes
                problems.append(f"sample {key}: {name} does not decode as a JPEG ({error})")
                continue
            problem = spec.image_problem(camera, image)
            if problem is not None:
                problems.append(f"sample {key}: {name} {problem}")
    return problems


def _check_meta(key: str, data: bytes, manifest: contract.Manifest, deep: bool) -> list[str]:
    where = f"sample {key}: {contract.META}"
    try:
        meta = json.loads(data)
    except ValueError as error:
        return [f"{where} is not valid JSON ({error})"]
    if not isinstance(meta, dict):
        return [f"{where} is not a JSON object"]
    problems = []
    if meta.get("schema_version") != manifest.schema_version:
        problems.append(f"{where} has schema_version {meta.get('schema_version')!r}, "
                        f"the manifest's is {manifest.schema_version}")
    if deep:
        if meta.get("cameras") != manifest.camera_names:
            problems.append(f"{where} lists cameras {meta.get('cameras')!r}, the manifest's are {manifest.camera_names}")
        timestamps = meta.get("timestamps_us")
        if not isinstance(timestamps, list) or len(timestamps) != manifest.chunk_steps:
            problems.append(f"{where} has no list of {manifest.chunk_steps} timestamps_us")
        for name, shape in (("intrinsics", (3, 3)), ("ego_from_camera", (4, 4))):
            try:
                array = np.asarray(meta.get(name), np.float64)
            except (TypeError, ValueError):
                array = np.zeros(0)
            if array.shape != (len(manifest.cameras), *shape):
                problems.append(f"{where} has {name} of shape {list(array.shape)}, expected "
                                f"[{len(manifest.cameras)}, {shape[0]}, {shape[1]}]")
    return problems


def verify_dataset(root: Path, deep: bool = False) -> list[str]:
    """Return one line per problem found in the dataset under `root` (empty: all good).

    `deep` also decodes every JPEG member and checks meta.json against the manifest (slower:
    the image decode is most of a shard's reading time)."""
    manifest = load_local_manifest(root)
    spec = contract.SampleSpec.from_manifest(manifest)
    problems = []
    if not manifest.shards:
        problems.append(f"{contract.MANIFEST_NAME}: lists no shards; re-create the dataset")
    listed = {s.name for s in manifest.shards}
    for extra in sorted(p.name for p in root.glob("*.tar") if p.name not in listed):
        problems.append(f"{extra}: not listed in {contract.MANIFEST_NAME} (stale or foreign data: a reader of this "
                        "folder could mix it in); move it out of the dataset folder or re-shard into an empty one")
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
        try:
            digest = sha256_file(path)
        except PermissionError:
            problems.append(str(permission_denied(path, "reading the shard")))
            continue
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
            problems.extend(f"{shard.name}: {p}" for p in _check_sample(key, members, manifest, spec, deep))
    return problems
