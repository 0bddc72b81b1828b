"""`lwm shard waymo` round trip: synthetic world -> Waymo v2 parquet layout -> shards vs ground truth.

The fixture is written by sharding.fixtures.waymo with the real v2 column names; the reader is
the real pyarrow path of sharding.waymo.source (no TensorFlow, no mocks).
"""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import simplejpeg

from lightning_wm.cli import main
from sharding import contract
from sharding.fixtures.waymo import WaymoExportConfig, export_waymo
from sharding.synthetic import RigConfig
from sharding.verify import _group_members, verify_dataset
from sharding.waymo import schema as ws

STEPS, WIDTH, HEIGHT, CHUNK = 24, 48, 32, 8
EXPORT = WaymoExportConfig(train_segments=2, val_segments=1, steps=STEPS, width=WIDTH, height=HEIGHT)


@pytest.fixture(scope="module")
def waymo(tmp_path_factory):
    """Three exported segments (2 training, 1 validation) and the shards `lwm shard waymo` made of them."""
    root = tmp_path_factory.mktemp("waymo")
    segments = export_waymo(root / "raw", EXPORT)
    out = root / "shards"
    assert main(["shard", "waymo", "--root", str(root / "raw"), "--out", str(out), "--width", str(WIDTH),
                 "--height", str(HEIGHT), "--workers", "1", f"source.chunk_steps={CHUNK}", "progress=false"]) == 0
    return root, segments, out


def samples_by_scene(out: Path) -> dict[str, list[dict[str, bytes]]]:
    manifest = contract.Manifest.from_json((out / contract.MANIFEST_NAME).read_text(), "manifest")
    scenes: dict[str, list] = {}
    for shard in manifest.shards:
        for members in _group_members(out / shard.name).values():
            scenes.setdefault(json.loads(members[contract.META])["scene_id"], []).append(members)
    return scenes


def stacked(members: list[dict[str, bytes]], name: str) -> np.ndarray:
    return np.concatenate([contract.decode_npy(m[name], name) for m in members])


def test_round_trip_matches_the_synthetic_ground_truth(waymo):
    _, segments, out = waymo
    assert verify_dataset(out) == []
    manifest = contract.Manifest.from_json((out / contract.MANIFEST_NAME).read_text(), "manifest")
    assert manifest.source == "waymo" and manifest.camera_names == list(ws.CAMERAS)
    assert manifest.action_names == ["speed", "yaw_rate", "acceleration", "curvature"]
    assert manifest.road_lines == []  # maps are not read: no road.npy (verify checks its absence)
    splits = manifest.splits()
    assert splits["train"]["scenes"] == sorted(s.name for s in segments if s.split == "training")
    assert splits["val"]["scenes"] == [s.name for s in segments if s.split == "validation"]
    # calibration: the Waymo camera frame (x forward, y left, z up) came back as OpenCV
    rig = RigConfig(cameras=EXPORT.cameras, width=WIDTH, height=HEIGHT)
    np.testing.assert_allclose([c.ego_from_camera for c in manifest.cameras], rig.ego_from_camera(), atol=1e-9)
    np.testing.assert_allclose([c.intrinsics for c in manifest.cameras], rig.intrinsics(), atol=1e-9)

    scenes = samples_by_scene(out)
    for segment in segments:
        members, truth = scenes[segment.name], segment.record
        ego = stacked(members, contract.EGO)
        steps = len(ego)
        assert steps == STEPS // CHUNK * CHUNK
        np.testing.assert_allclose(ego, truth.world_from_ego[:steps], atol=1e-9)
        actions = stacked(members, contract.ACTION)
        assert np.median(np.abs(actions[:, 0] - truth.actions[:steps, 0])) < 0.2  # speed, m/s
        assert np.median(np.abs(actions[:, 1] - truth.actions[:steps, 1])) < 0.05  # yaw rate, rad/s
        meta = json.loads(members[0][contract.META])
        assert meta["timestamps_us"] == truth.timestamps_us[:CHUNK].tolist()
        track_ids = meta["info"]["track_ids"]
        agents = stacked(members, contract.AGENTS)  # [T, N, F] ego frame
        for t in range(steps):
            live = truth.agents[t][truth.agents[t, :, 0] >= 0]
            assert (agents[t, :, 0] >= 0).sum() == len(live), f"step {t}: agent count"
            for row in live:
                got = agents[t, track_ids.index(f"obj-{int(row[0]):05d}")]
                np.testing.assert_allclose(got[1:9], row[1:9], atol=1e-3)  # class, x, y, z, l, w, h, yaw
        assert stacked(members, contract.HAZARD).dtype == np.uint8
        # every camera's frame is that camera's view (order and conversion kept), JPEG noise only
        for view, camera in enumerate(manifest.camera_names):
            image = simplejpeg.decode_jpeg(members[0][contract.image_member(camera, 3)])
            errors = [np.abs(image.astype(int) - truth.images[3, v]).mean() for v in range(len(ws.CAMERAS))]
            assert errors[view] < 6 and int(np.argmin(errors)) == view


def test_camera_subset_size_and_split_options(waymo, tmp_path):
    root, segments, _ = waymo
    out = tmp_path / "subset"
    assert main(["shard", "waymo", "--root", str(root / "raw"), "--out", str(out), "--split", "training",
                 "--cameras", "SIDE_LEFT,FRONT", "--width", "24", "--height", "16", "--workers", "1",
                 f"source.chunk_steps={CHUNK}", "progress=false"]) == 0
    manifest = contract.Manifest.from_json((out / contract.MANIFEST_NAME).read_text(), "manifest")
    assert manifest.camera_names == ["SIDE_LEFT", "FRONT"] and not manifest.split_shards("val")
    rig = RigConfig(cameras=EXPORT.cameras, width=WIDTH, height=HEIGHT)
    front_k = np.array(manifest.cameras[1].intrinsics)
    assert front_k[0, 0] == pytest.approx(rig.intrinsics()[0][0, 0] / 2)  # resized to half: focal halves
    assert front_k[0, 2] == pytest.approx((24 - 1) / 2)  # the principal point stays the image centre
    members = next(iter(samples_by_scene(out).values()))[0]
    assert simplejpeg.decode_jpeg(members[contract.image_member("FRONT", 0)]).shape == (16, 24, 3)
    assert verify_dataset(out) == []


def rewrite(path: Path, edit) -> None:
    """Replace the parquet file at `path` by edit(table)."""
    pq.write_table(edit(pq.read_table(path)), path)


def first_segment(root: Path, split: str = "training") -> str:
    return sorted(p.stem for p in (root / split / ws.CAMERA_IMAGE).glob("*.parquet"))[0]


@pytest.mark.parametrize(
    "component, edit, expected",
    [
        (ws.CAMERA_CALIBRATION, lambda t: t.drop_columns([ws.INTRINSIC[0], ws.EXTRINSIC]),
         r"missing column\(s\) \[CameraCalibrationComponent\]\.intrinsic\.f_u, "
         r"\[CameraCalibrationComponent\]\.extrinsic\.transform"),
        (ws.VEHICLE_POSE, lambda t: t.set_column(1, ws.TIMESTAMP, pc.cast(t.column(ws.TIMESTAMP), pa.float64())),
         r"key\.frame_timestamp_micros is double, expected integer microseconds"),
        (ws.CAMERA_IMAGE, lambda t: t.filter(pc.invert(pc.and_(pc.equal(t.column(ws.CAMERA), ws.CAMERAS["SIDE_RIGHT"]),
                                                             pc.equal(t.column(ws.TIMESTAMP), t.column(ws.TIMESTAMP)[15])))),
         r"frame key\.frame_timestamp_micros=\d+ has no image of SIDE_RIGHT"),
    ],
    ids=["missing-columns", "float-timestamps", "frame-without-a-camera"],
)
def test_bad_waymo_files_exit_nonzero_naming_the_file(waymo, tmp_path, capsys, component, edit, expected):
    root = tmp_path / "raw"
    shutil.copytree(waymo[0] / "raw", root)
    segment = first_segment(root)
    path = root / "training" / component / f"{segment}.parquet"
    rewrite(path, edit)
    out = tmp_path / "out"
    assert main(["shard", "waymo", "--root", str(root), "--out", str(out), "--width", "24", "--height", "16",
                 "--workers", "1", f"source.chunk_steps={CHUNK}", "progress=false"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lwm shard: error: ")
    assert str(path) in err
    assert re.search(expected, err), err
    assert not list(out.glob("*.tar")) and not (out / contract.MANIFEST_NAME).exists()  # nothing written


def test_skip_bad_leaves_out_an_unreadable_segment_and_lists_it(waymo, tmp_path):
    root = tmp_path / "raw"
    shutil.copytree(waymo[0] / "raw", root)
    bad = first_segment(root)
    rewrite(root / "training" / ws.CAMERA_IMAGE / f"{bad}.parquet",
            lambda t: t.filter(pc.not_equal(t.column(ws.CAMERA), ws.CAMERAS["FRONT_LEFT"])))
    out = tmp_path / "out"
    assert main(["shard", "waymo", "--root", str(root), "--out", str(out), "--width", "24", "--height", "16",
                 "--workers", "1", "--skip-bad", f"source.chunk_steps={CHUNK}", "progress=false"]) == 0
    manifest = contract.Manifest.from_json((out / contract.MANIFEST_NAME).read_text(), "manifest")
    assert [s["scene"] for s in manifest.skipped_scenes] == [bad]
    assert "has no image of FRONT_LEFT" in manifest.skipped_scenes[0]["reason"]
    assert bad not in manifest.splits()["train"]["scenes"] and len(manifest.splits()["train"]["scenes"]) == 1
    assert verify_dataset(out) == []


def test_the_datamodule_streams_waymo_shards_with_data_waymo(waymo):
    from datamodules.shard_datamodule import ShardDataModule
    from lightning_wm.config import compose_config, to_object

    fit = to_object(compose_config("fit", ["data=waymo", f"data.path={waymo[2]}", "data.window=4",
                                           "data.batch_size=2", "data.num_workers=0"]), "fit")
    assert fit.default_camera == "FRONT"
    dm = ShardDataModule(fit.data)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (2, 4, 5, 3, HEIGHT, WIDTH)
    assert dm.camera_names == list(ws.CAMERAS) and batch["actions"].shape == (2, 4, 2)
