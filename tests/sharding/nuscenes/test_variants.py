"""Datasets in the nuScenes layout made by other people: other rigs, sizes, splits, holes, broken scenes.

Two small exports per module: the standard six-camera mini layout, and a custom one (version
`v2.0-fleet`, two cameras with other names, 48x27 images, no map/attribute/visibility tables, a
lidarseg table without label files, scene names in no official split).
"""

import json
import shutil
import tarfile

import numpy as np
import pytest

from lightning_wm.cli import main
from sharding import contract
from sharding.fixtures.nuscenes import NuScenesExportConfig, export_nuscenes
from sharding.logs.images import scaled_intrinsics
from sharding.synthetic import CameraConfig, RigConfig
from sharding.verify import verify_dataset

CUSTOM_CAMERAS = [CameraConfig("front_wide", 0.0, 100.0), CameraConfig("rear", 180.0, 100.0)]
CUSTOM_NAMES = ["scene-9000", "scene-9001", "scene-9002"]


@pytest.fixture(scope="module")
def standard(tmp_path_factory):
    root = tmp_path_factory.mktemp("nuscenes-standard") / "raw"
    export_nuscenes(root, NuScenesExportConfig(train_scenes=2, val_scenes=1, samples_per_scene=6, width=16, height=16,
                                               can_bus=False))
    return root


@pytest.fixture(scope="module")
def custom(tmp_path_factory):
    root = tmp_path_factory.mktemp("nuscenes-custom") / "raw"
    export_nuscenes(root, NuScenesExportConfig(version="v2.0-fleet", train_scenes=3, val_scenes=0, samples_per_scene=6,
                                               cameras=CUSTOM_CAMERAS, width=48, height=27, can_bus=False, lidar=False,
                                               omit_tables=["map", "attribute", "visibility"], lidarseg_table=True))
    return root


def copy(root, tmp_path):
    target = tmp_path / "raw"
    shutil.copytree(root, target)
    return target


def shard(raw, out, version, *extra):
    """Options first, then Hydra overrides (argparse takes the positional overrides in one run)."""
    options = [a for a in extra if "=" not in a]
    overrides = [a for a in extra if "=" in a]
    return main(["shard", "nuscenes", "--dataroot", str(raw), "--version", version, "--out", str(out), "--workers", "1",
                 *options, "source.chunk_steps=8", "progress=false", *overrides])


def manifest_of(out):
    return contract.Manifest.from_json((out / contract.MANIFEST_NAME).read_text(), "manifest")


def test_custom_rig_sizes_and_missing_optional_tables(custom, tmp_path):
    from nuscenes.nuscenes import NuScenes

    with pytest.raises((FileNotFoundError, AssertionError)):  # the devkit alone cannot open this dataset
        NuScenes(version="v2.0-fleet", dataroot=str(custom), verbose=False)
    out = tmp_path / "out"
    assert shard(custom, out, "v2.0-fleet", "--width", "32", "--height", "16") == 0
    assert verify_dataset(out) == []
    manifest = manifest_of(out)
    assert manifest.camera_names == ["front_wide", "rear"]
    assert manifest.source_config["reference_camera"] == "front_wide"  # no CAM_FRONT: the first camera
    source_k = RigConfig(cameras=CUSTOM_CAMERAS, width=48, height=27).intrinsics()
    for camera, k in zip(manifest.cameras, source_k):
        assert (camera.width, camera.height) == (32, 16)
        assert np.allclose(camera.intrinsics, scaled_intrinsics(k, (48, 27), (32, 16)))
        assert np.isclose(camera.intrinsics[0][0], k[0, 0] * 32 / 48)
    # no name is in an official list: `hash` splits them by name, the same on every run
    assert manifest.source_config["splits"]["unlisted_scenes"] == CUSTOM_NAMES
    splits = manifest.splits()
    assert sorted(splits["train"]["scenes"] + splits["val"]["scenes"]) == CUSTOM_NAMES
    again = tmp_path / "again"
    assert shard(custom, again, "v2.0-fleet", "--width", "32", "--height", "16") == 0
    assert manifest_of(again).splits() == splits


def test_splits_json_and_unlisted_rules(custom, tmp_path, capsys):
    raw = copy(custom, tmp_path)
    assert shard(raw, tmp_path / "err", "v2.0-fleet", "source.unlisted_scenes=error") == 1
    assert "scene scene-9000 is in no split list of v2.0-fleet; add" in capsys.readouterr().err
    (raw / "v2.0-fleet" / "splits.json").write_text(json.dumps({"train": ["scene-9002"], "val": ["scene-9000"]}))
    out = tmp_path / "out"
    assert shard(raw, out, "v2.0-fleet", "source.unlisted_scenes=skip") == 0
    splits = manifest_of(out).splits()
    assert splits["train"]["scenes"] == ["scene-9002"] and splits["val"]["scenes"] == ["scene-9000"]


def test_camera_subset_in_order_at_12_hz(standard, tmp_path):
    out = tmp_path / "out"
    assert shard(standard, out, "v1.0-mini", "--cameras", "CAM_BACK", "CAM_FRONT", "--fps", "12",
                 "--width", "16", "--height", "16") == 0
    manifest = manifest_of(out)
    assert manifest.camera_names == ["CAM_BACK", "CAM_FRONT"] and manifest.fps == 12.0
    assert manifest.source_config["reference_camera"] == "CAM_FRONT"
    sync = manifest.source_config["sync"]
    assert sync["steps_unsynced"] == 0 and sync["steps"] >= 3 * 35  # 36 frames per scene at 12 Hz: each one a step
    assert verify_dataset(out) == []


def test_dropped_frames_are_counted_and_no_chunk_spans_them(standard, tmp_path):
    """Four CAM_BACK frames missing from scene-0553: the steps needing them are dropped and counted."""
    raw = copy(standard, tmp_path)
    rows = json.loads((raw / "v1.0-mini" / "sample_data.json").read_text())
    back = sorted((r for r in rows if "__CAM_BACK__" in r["filename"] and "scene-0553" in r["filename"]),
                  key=lambda r: r["timestamp"])
    gone = back[13:17]  # sweeps (keyframes are 0, 6, 12, 18, ...)
    assert not any(r["is_key_frame"] for r in gone)
    back[12]["next"], back[17]["prev"] = back[17]["token"], back[12]["token"]
    rows = [r for r in rows if r["token"] not in {g["token"] for g in gone}]
    (raw / "v1.0-mini" / "sample_data.json").write_text(json.dumps(rows))
    out = tmp_path / "out"
    assert shard(raw, out, "v1.0-mini", "--width", "16", "--height", "16") == 0
    sync = manifest_of(out).source_config["sync"]
    assert 3 <= sync["steps_unsynced"] <= 5  # 4 frames x 83 ms = 333 ms of 10 Hz steps lack a CAM_BACK partner
    assert sync["steps_kept"] < sync["steps"] - sync["steps_unsynced"] + 1
    for shard_file in out.glob("*.tar"):
        with tarfile.open(shard_file) as tar:
            for member in tar.getmembers():
                if member.name.endswith("meta.json"):
                    meta = json.loads(tar.extractfile(member).read())
                    steps = np.diff(meta["timestamps_us"])
                    assert (steps == 100_000).all(), meta["scene_id"]  # evenly spaced inside every chunk
                    if meta["scene_id"] == "scene-0553":
                        assert meta["info"]["steps_unsynced"] == sync["steps_unsynced"]


def test_skip_bad_leaves_out_a_broken_scene_and_lists_it(standard, tmp_path):
    raw = copy(standard, tmp_path)
    broken = next((raw / "sweeps" / "CAM_BACK_LEFT").glob("*scene-0553*"))
    broken.unlink()
    out = tmp_path / "out"
    assert shard(raw, out, "v1.0-mini", "--width", "16", "--height", "16", "--skip-bad") == 0
    manifest = manifest_of(out)
    assert [s["scene"] for s in manifest.skipped_scenes] == ["scene-0553"]
    assert broken.name in manifest.skipped_scenes[0]["reason"]
    splits = manifest.splits()
    assert splits["train"]["scenes"] == ["scene-0061"] and splits["val"]["scenes"] == ["scene-0103"]
    assert verify_dataset(out) == []


def test_partitions_merge_into_the_single_machine_dataset(standard, tmp_path):
    """Two machines (--partition 0/2, 1/2) plus `lwm shard merge` give the same shards as one machine."""
    single, fleet = tmp_path / "single", tmp_path / "fleet"
    assert shard(standard, single, "v1.0-mini", "--width", "16", "--height", "16", "source.scenes_per_shard=1") == 0
    for part in ("0/2", "1/2"):
        assert shard(standard, fleet, "v1.0-mini", "--width", "16", "--height", "16", "source.scenes_per_shard=1",
                     "--partition", part) == 0
    assert main(["shard", "merge", str(fleet)]) == 0
    assert verify_dataset(fleet) == []
    assert manifest_of(fleet).splits() == manifest_of(single).splits()
    for name in [s.name for s in manifest_of(single).shards]:
        assert (fleet / name).read_bytes() == (single / name).read_bytes()  # deterministic bytes
