"""Road geometry in the shard contract: schema versions 1 and 2, road.npy written and verified."""

import io
import json
import tarfile

import numpy as np
import pytest

from sharding import contract
from sharding.errors import ShardError
from sharding.samples import encode_scene
from sharding.verify import verify_dataset
from sharding.writer import sha256_file
from tests.helpers import camera_infos, make_dataset, make_scene

LINES = ["left_edge", "right_edge", "lane_0"]


def manifest_json(tmp_path, **changes) -> str:
    make_dataset(tmp_path, train_scenes=1, val_scenes=1)
    data = json.loads((tmp_path / contract.MANIFEST_NAME).read_text())
    data.update(changes)
    return json.dumps({k: v for k, v in data.items() if v is not None})


def test_version_1_manifest_reads_as_no_road_geometry(tmp_path):
    text = manifest_json(tmp_path, schema_version=1, road_lines=None)  # version 1 had no road_lines field
    assert "road_lines" not in json.loads(text)
    manifest = contract.Manifest.from_json(text, "v1.json")
    assert manifest.road_lines == [] and manifest.schema_version == 1 and manifest.camera_names


def test_version_3_manifest_is_refused_naming_the_version(tmp_path):
    with pytest.raises(ShardError, match=r"v3.json: schema version 3, this lightning-wm reads versions 1, 2; re-shard"):
        contract.Manifest.from_json(manifest_json(tmp_path, schema_version=3), "v3.json")


def test_encode_writes_road_only_when_the_scene_has_it():
    plain = encode_scene(make_scene(0, 8, 16), source="t", split="train", cameras=camera_infos(),
                         chunk_steps=4, jpeg_quality=90)
    assert all(contract.ROAD not in sample for sample in plain)
    with_road = encode_scene(make_scene(0, 8, 16, road_lines=3), source="t", split="train", cameras=camera_infos(),
                             chunk_steps=4, jpeg_quality=90)
    road = contract.decode_npy(with_road[1][contract.ROAD], "road")
    assert road.shape == (4, 3, 5, 2) and road.dtype == np.float32
    assert json.loads(with_road[0][contract.META])["schema_version"] == contract.SCHEMA_VERSION


def test_a_dataset_with_road_lines_verifies_and_one_without_has_none(tmp_path):
    manifest = make_dataset(tmp_path / "road", road_lines=LINES)
    assert manifest.road_lines == LINES and verify_dataset(tmp_path / "road") == []
    manifest = make_dataset(tmp_path / "plain")
    assert manifest.road_lines == [] and verify_dataset(tmp_path / "plain") == []
    on_disk = json.loads((tmp_path / "plain" / contract.MANIFEST_NAME).read_text())
    assert on_disk["road_lines"] == [] and on_disk["schema_version"] == 2


def rewrite_shard(root, name, change) -> None:
    """Rewrite shard `name` with `change(member_name, bytes) -> bytes | None` and fix its manifest entry."""
    path = root / name
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(path, "w") as tar:
        for member, data in members:
            data = change(member.name, data)
            if data is not None:
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
    manifest = json.loads((root / contract.MANIFEST_NAME).read_text())
    entry = next(s for s in manifest["shards"] if s["name"] == name)
    entry.update(bytes=path.stat().st_size, sha256=sha256_file(path))
    (root / contract.MANIFEST_NAME).write_text(json.dumps(manifest))


def test_verify_names_a_road_of_the_wrong_shape_or_dtype(tmp_path):
    make_dataset(tmp_path, road_lines=LINES)
    rewrite_shard(tmp_path, "train-00000.tar", lambda name, data: contract.encode_npy(
        contract.decode_npy(data, name)[:, :2]) if name == "scene-000-000.road.npy" else data)
    rewrite_shard(tmp_path, "train-00001.tar", lambda name, data: contract.encode_npy(
        contract.decode_npy(data, name).astype(np.float64)) if name == "scene-002-000.road.npy" else data)
    problems = verify_dataset(tmp_path)
    assert problems == [
        "train-00000.tar: sample scene-000-000: road.npy has shape [8, 2, 5, 2], expected [8, 3, P, 2]",
        "train-00001.tar: sample scene-002-000: road.npy is float64, expected float32",
    ]


def test_verify_wants_road_exactly_where_the_manifest_names_road_lines(tmp_path):
    make_dataset(tmp_path / "missing", road_lines=LINES)
    drop_road = lambda name, data: None if name.endswith(".road.npy") else data  # noqa: E731
    rewrite_shard(tmp_path / "missing", "val-00000.tar", drop_road)
    problems = verify_dataset(tmp_path / "missing")
    assert problems and all(p.startswith("val-00000.tar:") and "e.g. road.npy" in p for p in problems)

    make_dataset(tmp_path / "unnamed", road_lines=LINES)
    manifest = json.loads((tmp_path / "unnamed" / contract.MANIFEST_NAME).read_text())
    manifest["road_lines"] = []
    (tmp_path / "unnamed" / contract.MANIFEST_NAME).write_text(json.dumps(manifest))
    problems = verify_dataset(tmp_path / "unnamed")
    assert problems and all("has road.npy but the manifest names no road_lines" in p for p in problems)
