"""`lwm shard nuscenes` refuses broken nuScenes-layout data with one line naming file, row and expectation.

One small export per module (1 scene, 2 cameras, 16x16, CAN bus); each test breaks a copy in one
way and checks the exit code, the message, and that no shard or manifest was left behind.
"""

import json
import shutil

import pytest

from lightning_wm.cli import main
from sharding import contract
from sharding.fixtures.nuscenes import NuScenesExportConfig, export_nuscenes, nuscenes_rig_cameras

VERSION = "v1.0-mini"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("nuscenes-bad") / "raw"
    cameras = [c for c in nuscenes_rig_cameras() if c.name in ("CAM_FRONT", "CAM_FRONT_LEFT")]
    export_nuscenes(root, NuScenesExportConfig(train_scenes=1, val_scenes=0, samples_per_scene=4, width=16, height=16,
                                               cameras=cameras))
    return root


@pytest.fixture
def raw(pristine, tmp_path):
    copy = tmp_path / "raw"
    shutil.copytree(pristine, copy)
    return copy


def table(raw, name):
    return json.loads((raw / VERSION / f"{name}.json").read_text())


def save(raw, name, rows):
    (raw / VERSION / f"{name}.json").write_text(json.dumps(rows))


def front_frames(raw):
    """CAM_FRONT sample_data rows in time order."""
    sensor = next(r["token"] for r in table(raw, "sensor") if r["channel"] == "CAM_FRONT")
    calibrations = {r["token"] for r in table(raw, "calibrated_sensor") if r["sensor_token"] == sensor}
    rows = [r for r in table(raw, "sample_data") if r["calibrated_sensor_token"] in calibrations]
    return sorted(rows, key=lambda r: r["timestamp"])


def shard_fails(raw, tmp_path, capsys, *extra):
    """Run the command; return its one error line after checking nothing was written."""
    out = tmp_path / "out"
    code = main(["shard", "nuscenes", "--dataroot", str(raw), "--version", VERSION, "--out", str(out),
                 "--width", "16", "--height", "16", "--workers", "1", "source.chunk_steps=8", "progress=false", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert len(err.splitlines()) == 1 and err.startswith("lwm shard: error: "), err
    if out.exists():  # scene-level errors come from the writer, after it made the folder
        assert not (out / contract.MANIFEST_NAME).exists() and not list(out.glob("*.tar"))
    return err


def test_the_pristine_copy_shards(raw, tmp_path):
    """The baseline every other test breaks: it must work, or the refusals below prove nothing."""
    assert main(["shard", "nuscenes", "--dataroot", str(raw), "--version", VERSION, "--out", str(tmp_path / "ok"),
                 "--width", "16", "--height", "16", "--workers", "1", "--can-bus", str(raw),
                 "source.chunk_steps=8", "progress=false"]) == 0
    assert (tmp_path / "ok" / contract.MANIFEST_NAME).exists()


def test_missing_version_folder(raw, tmp_path, capsys):
    err = shard_fails(raw, tmp_path, capsys, "--version", "v1.0-trainval")
    assert "v1.0-trainval: no such version folder" in err and "found: v1.0-mini" in err


def test_missing_table(raw, tmp_path, capsys):
    (raw / VERSION / "sample_data.json").unlink()
    err = shard_fails(raw, tmp_path, capsys)
    assert f"{VERSION}/sample_data.json: table missing" in err


def test_table_that_is_not_json(raw, tmp_path, capsys):
    (raw / VERSION / "sample.json").write_text('[{"token": "a", ')
    assert "sample.json: not valid JSON" in shard_fails(raw, tmp_path, capsys)


def test_empty_ego_pose_table(raw, tmp_path, capsys):
    save(raw, "ego_pose", [])
    err = shard_fails(raw, tmp_path, capsys)
    assert "ego_pose.json: the table is empty; expected one ego pose per sample_data row" in err


def test_calibration_rotation_not_a_unit_quaternion(raw, tmp_path, capsys):
    rows = table(raw, "calibrated_sensor")
    sensor = next(r["token"] for r in table(raw, "sensor") if r["channel"] == "CAM_FRONT")
    bad = next(r for r in rows if r["sensor_token"] == sensor)
    bad["rotation"] = [2 * q for q in bad["rotation"]]
    save(raw, "calibrated_sensor", rows)
    err = shard_fails(raw, tmp_path, capsys)
    assert f"calibrated_sensor.json row {bad['token']} (CAM_FRONT)" in err
    assert "is not a unit quaternion (norm 2)" in err and "expected [w, x, y, z] with norm 1" in err


def test_timestamp_not_an_integer(raw, tmp_path, capsys):
    rows = table(raw, "sample_data")
    bad = front_frames(raw)[3]
    next(r for r in rows if r["token"] == bad["token"])["timestamp"] = bad["timestamp"] + 0.5
    save(raw, "sample_data", rows)
    err = shard_fails(raw, tmp_path, capsys)
    assert f"sample_data.json row {bad['token']} (CAM_FRONT, scene-0061)" in err
    assert "is not an integer; expected integer microseconds" in err


def test_timestamps_not_in_microseconds(raw, tmp_path, capsys):
    rows = table(raw, "sample_data")
    for row in rows:
        row["timestamp"] //= 1000  # milliseconds
    save(raw, "sample_data", rows)
    err = shard_fails(raw, tmp_path, capsys)
    assert "frames are a median 83 timestamp units apart; expected microseconds" in err


def test_timestamps_going_backwards(raw, tmp_path, capsys):
    rows = table(raw, "sample_data")
    frames = front_frames(raw)
    by_token = {r["token"]: r for r in rows}
    by_token[frames[5]["token"]]["timestamp"] = frames[3]["timestamp"]  # frame 5 now before frame 4
    save(raw, "sample_data", rows)
    err = shard_fails(raw, tmp_path, capsys)
    assert f"sample_data.json row {frames[5]['token']} (CAM_FRONT, scene-0061)" in err
    assert f"is not after the previous frame's {frames[4]['timestamp']}" in err
    assert "must increase along prev/next" in err


def test_image_listed_but_missing(raw, tmp_path, capsys):
    missing = front_frames(raw)[7]["filename"]
    (raw / missing).unlink()
    err = shard_fails(raw, tmp_path, capsys)
    assert f"{missing}: listed in sample_data (CAM_FRONT, scene-0061) but missing on disk" in err
    assert "scene scene-0061" in err and "--skip-bad" in err  # the writer names the scene and the way out


def test_unknown_camera(raw, tmp_path, capsys):
    err = shard_fails(raw, tmp_path, capsys, "--cameras", "CAM_FRONT", "CAM_BACK")
    assert "--cameras CAM_BACK: no camera of that name in sensor.json; the cameras are CAM_FRONT, CAM_FRONT_LEFT" in err


def test_dangling_token_names_the_row(raw, tmp_path, capsys):
    """The devkit would die with a bare KeyError: the message names table, row and field instead."""
    rows = table(raw, "sample_data")
    rows[4]["calibrated_sensor_token"] = "0" * 32
    save(raw, "sample_data", rows)
    err = shard_fails(raw, tmp_path, capsys)
    assert f"sample_data.json row {rows[4]['token']}: calibrated_sensor_token '{'0' * 32}' is not a token of " \
           "calibrated_sensor.json" in err


def test_can_bus_folder_and_files(raw, tmp_path, capsys):
    err = shard_fails(raw, tmp_path, capsys, "--can-bus", str(raw / "samples"))
    assert "samples: no can_bus/ folder there" in err
    (raw / "can_bus" / "scene-0061_zoe_veh_info.json").unlink()
    err = shard_fails(raw, tmp_path, capsys, "--can-bus", str(raw))
    assert "can_bus/scene-0061_zoe_veh_info.json: missing" in err
