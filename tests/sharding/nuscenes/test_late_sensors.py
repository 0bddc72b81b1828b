"""Data from the wild: cameras that start late, stop early, skip sweeps or repeat a timestamp.

One export of five scenes in the nuScenes layout (three cameras and a lidar, 16x16, 4 s each):
the first sample of scene-9000 holds the lidar keyframe only (the cameras start one sample
later, CAM_FRONT_LEFT later still), CAM_BACK stops early in scene-9001, CAM_FRONT_LEFT misses
four sweeps mid-scene-9002 (and CAM_FRONT three later), CAM_BACK writes a sweep twice in scene-9003, scene-9004 is clean.
Each scene is cut to where every camera exists; the steps left out are counted by reason.
"""

import json
import math
import tarfile

import numpy as np
import pytest

from lightning_wm.cli import main
from sharding import contract
from sharding.fixtures.nuscenes import CameraDefects, NuScenesExportConfig, export_nuscenes, nuscenes_rig_cameras
from sharding.verify import verify_dataset

VERSION = "fleet-v1"
CAMERAS = [c for c in nuscenes_rig_cameras() if c.name in ("CAM_FRONT", "CAM_FRONT_LEFT", "CAM_BACK")]
NAMES = ["scene-9000", "scene-9001", "scene-9002", "scene-9003", "scene-9004"]
DEFECTS = {
    "scene-9000": {"CAM_FRONT": CameraDefects(missing=list(range(6))),
                   "CAM_BACK": CameraDefects(missing=list(range(6))),
                   "CAM_FRONT_LEFT": CameraDefects(missing=list(range(9)))},
    "scene-9001": {"CAM_BACK": CameraDefects(missing=list(range(36, 48)))},
    "scene-9002": {"CAM_FRONT_LEFT": CameraDefects(missing=[20, 21, 22, 23]),
                   "CAM_FRONT": CameraDefects(missing=[37, 38, 39])},  # the reference camera too
    "scene-9003": {"CAM_BACK": CameraDefects(duplicated=[13])},
}
STEP_US = 100_000  # 10 Hz


def export(root, names, defects, cameras=CAMERAS):
    export_nuscenes(root, NuScenesExportConfig(version=VERSION, train_scenes=len(names), val_scenes=0,
                                               samples_per_scene=8, cameras=cameras, width=16, height=16,
                                               can_bus=False, scene_names=names, defects=defects))
    return root


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    base = tmp_path_factory.mktemp("nuscenes-late")
    raw, out = export(base / "raw", NAMES, DEFECTS), base / "out"
    assert shard(raw, out) == 0
    return raw, out


def shard(raw, out, *extra):
    return main(["shard", "nuscenes", "--dataroot", str(raw), "--version", VERSION, "--out", str(out),
                 *extra, "--workers", "1", "--width", "16", "--height", "16", "source.chunk_steps=8",
                 "progress=false"])


def tables(raw):
    """(sample_data rows by channel in time order, sample rows by scene in time order)."""
    read = lambda name: json.loads((raw / VERSION / f"{name}.json").read_text())  # noqa: E731
    channel_of = {r["token"]: r["channel"] for r in read("sensor")}
    sensor_of = {r["token"]: channel_of[r["sensor_token"]] for r in read("calibrated_sensor")}
    scene_of = {r["token"]: r["name"] for r in read("scene")}
    samples = {}
    for row in sorted(read("sample"), key=lambda r: r["timestamp"]):
        samples.setdefault(scene_of[row["scene_token"]], []).append(row)
    sample_scene = {s["token"]: name for name, rows in samples.items() for s in rows}
    frames = {}
    for row in sorted(read("sample_data"), key=lambda r: r["timestamp"]):
        key = (sample_scene[row["sample_token"]], sensor_of[row["calibrated_sensor_token"]])
        frames.setdefault(key, []).append(row)
    return frames, samples


def span(frames, samples, scene):
    """First and last time of the scene: its samples and its camera frames."""
    times = [samples[scene][0]["timestamp"], samples[scene][-1]["timestamp"]]
    times += [rows[i]["timestamp"] for (name, channel), rows in frames.items()
              if name == scene and channel != "LIDAR_TOP" for i in (0, -1)]
    return min(times), max(times)


def chunks(out):
    """meta.json of every sample, by scene, in time order."""
    metas = {}
    for path in sorted(out.glob("*.tar")):
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                if member.name.endswith("meta.json"):
                    meta = json.loads(tar.extractfile(member).read())
                    metas.setdefault(meta["scene_id"], []).append(meta)
    return {scene: sorted(rows, key=lambda m: m["timestamps_us"][0]) for scene, rows in metas.items()}


def sync_of(out):
    return contract.Manifest.from_json((out / contract.MANIFEST_NAME).read_text(), "manifest").source_config["sync"]


def test_a_first_sample_without_camera_keyframes_shards_from_where_every_camera_exists(sharded):
    raw, out = sharded
    frames, samples = tables(raw)
    first_sample = samples["scene-9000"][0]["token"]
    keyframes = {ch for (scene, ch), rows in frames.items() for r in rows
                 if scene == "scene-9000" and r["sample_token"] == first_sample and r["is_key_frame"]}
    assert keyframes == {"LIDAR_TOP"}  # the layout of the issue: cameras start one sample later
    assert verify_dataset(out) == []
    scene = sync_of(out)["scenes"]["scene-9000"]
    start = frames[("scene-9000", "CAM_FRONT")][3]["timestamp"]  # CAM_FRONT's frame 9: CAM_FRONT_LEFT's first
    assert scene["first_step_us"] == start
    assert chunks(out)["scene-9000"][0]["timestamps_us"][0] == start
    lo, _ = span(frames, samples, "scene-9000")
    assert scene["dropped"] == {"before_start": math.floor((start - lo) / STEP_US)}  # 9 frames of 83 ms: 7 steps
    assert scene["dropped"]["before_start"] == 7
    assert chunks(out)["scene-9000"][0]["info"]["dropped"]["before_start"] == 7


def test_a_camera_that_stops_early_ends_the_scene_and_the_rest_is_counted(sharded):
    raw, out = sharded
    frames, samples = tables(raw)
    scene = sync_of(out)["scenes"]["scene-9001"]
    end = frames[("scene-9001", "CAM_FRONT")][35]["timestamp"]  # CAM_BACK's last frame is 35
    assert end - STEP_US < scene["last_step_us"] <= end  # the last 10 Hz step up to that frame
    _, hi = span(frames, samples, "scene-9001")
    assert scene["dropped"] == {"after_end": math.floor((hi - end) / STEP_US)} and scene["dropped"]["after_end"] >= 9
    assert chunks(out)["scene-9001"][-1]["timestamps_us"][-1] <= end


def test_a_gap_of_missing_sweeps_drops_its_steps_and_the_scene_goes_on_after_it(sharded):
    raw, out = sharded
    sync = sync_of(out)
    assert sync["gap_rule"] == "drop_steps"
    scene = sync["scenes"]["scene-9002"]
    assert set(scene["dropped"]) == {"gap"}
    runs = scene["dropped_runs_us"]
    assert len(runs) == 2 and all(2 <= (last - first) / STEP_US + 1 <= 4 for first, last in runs)  # ~250 ms each
    assert scene["dropped"]["gap"] == sum((last - first) // STEP_US + 1 for first, last in runs)
    metas = chunks(out)["scene-9002"]
    for meta in metas:  # no sample spans a gap; samples before and after it keep the scene id
        times = np.array(meta["timestamps_us"])
        assert (np.diff(times) == STEP_US).all()
        assert not any(((times >= first) & (times <= last)).any() for first, last in runs)
    assert metas[0]["timestamps_us"][-1] < runs[0][0] and metas[-1]["timestamps_us"][0] > runs[0][1]


def test_a_duplicated_timestamp_drops_the_step_that_needs_that_frame(sharded):
    raw, out = sharded
    frames, _ = tables(raw)
    rows = frames[("scene-9003", "CAM_BACK")]
    twins = [r for r in rows if sum(o["timestamp"] == r["timestamp"] for o in rows) == 2]
    assert len(twins) == 2 and twins[0]["filename"] != twins[1]["filename"]
    scene = sync_of(out)["scenes"]["scene-9003"]
    assert scene["dropped"] == {"duplicate_timestamp": 1}  # 12 Hz frame 13 is the nearest to one 10 Hz step
    [(first, last)] = scene["dropped_runs_us"]
    assert first == last and abs(first - twins[0]["timestamp"]) < 50_000


def test_manifest_totals_add_up_over_scenes(sharded):
    _, out = sharded
    sync = sync_of(out)
    assert "scene-9004" not in sync["scenes"]  # the clean scene loses nothing
    for reason, total in sync["dropped"].items():
        assert total == sum(s["dropped"].get(reason, 0) for s in sync["scenes"].values()), reason
    inside = sum(sync["dropped"][r] for r in ("gap", "unsynced", "duplicate_timestamp"))
    assert sync["steps_unsynced"] == inside == sync["dropped"]["gap"] + 1
    assert sorted(chunks(out)) == NAMES


def test_a_camera_that_never_exists_in_the_only_scene_is_one_clear_line(tmp_path, capsys):
    raw = export(tmp_path / "raw", ["scene-9100"], {"scene-9100": {"CAM_BACK": CameraDefects(missing=list(range(48)))}})
    assert shard(raw, tmp_path / "out") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lwm shard: error: "), err
    assert "no scene can be sharded (scene scene-9100: no CAM_BACK keyframe in any of its 8 samples" in err
    assert "--cameras" in err
    assert shard(raw, tmp_path / "two", "--cameras", "CAM_FRONT", "CAM_FRONT_LEFT") == 0  # the way out works
