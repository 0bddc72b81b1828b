"""Road geometry of the synthetic world (`road.npy`): edge and lane lines where the road is, in the ego frame."""

import json
import tarfile

import numpy as np
import pytest

from sharding import contract
from sharding.synthetic import RigConfig, ScriptedDriver, SyntheticWorld, WorldConfig, simulate_scene
from sharding.synthetic.road import MAX_LANES
from sharding.synthetic.road_lines import ROAD_LINES, ROAD_POINTS, road_polylines
from sharding.synthetic.source import SyntheticDatasetConfig, shard_synthetic
from sharding.verify import verify_dataset

RIG = RigConfig(width=32, height=24)
EMPTY = dict(max_vehicles=0, max_pedestrians=0, lighting="day", weather="clear")
EGO_ROW = 10  # the sample at the ego's own arc length: 20 m behind / 2 m spacing


def world(seed: int, lanes: int, curvature: float) -> SyntheticWorld:
    config = WorldConfig(max_curvature=curvature, lanes_min=lanes, lanes_max=lanes, **EMPTY)
    return SyntheticWorld(config, RIG, seed)


def densify(line: np.ndarray, per_segment: int = 20) -> np.ndarray:
    """Points every 1/per_segment of each 2 m segment of a polyline [P, 2]."""
    return np.concatenate([np.linspace(a, b, per_segment, endpoint=False) for a, b in zip(line[:-1], line[1:])])


def distance_to(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Distance of points [N, 2] to the polyline line [P, 2] -> [N]."""
    return np.linalg.norm(points[:, None] - densify(line)[None], axis=-1).min(axis=1)


def test_names_and_sampling_follow_the_contract():
    assert ROAD_LINES == ("left_edge", "right_edge", "lane_0", "lane_1", "lane_2", "lane_3", "lane_4", "lane_5")
    assert len(ROAD_LINES) == 2 + MAX_LANES and ROAD_POINTS == 41


def test_straight_road_lines_are_the_lanes_and_edges_in_the_ego_frame():
    sim = world(seed=0, lanes=3, curvature=0.0)
    lines = sim.road_polylines()
    assert lines.shape == (len(ROAD_LINES), ROAD_POINTS, 2) and lines.dtype == np.float32
    assert np.isnan(lines[2 + 3:]).all() and np.isfinite(lines[: 2 + 3]).all()  # lanes 3..5 do not exist
    ego_lane = int(sim.road.layout.lane_at(sim.ego_frenet()[1]))
    own = lines[2 + ego_lane]
    assert np.allclose(own[EGO_ROW], [0.0, 0.0], atol=1e-4)  # the ego starts on its lane's centre line
    assert np.allclose(own[:, 0], np.arange(-20.0, 61.0, 2.0), atol=1e-4) and np.allclose(own[:, 1], 0.0, atol=1e-4)
    width = sim.config.lane_width_m
    assert np.allclose(lines[0, :, 1] - lines[1, :, 1], 3 * width, atol=1e-4)  # left edge minus right edge
    centres = lines[2:5, EGO_ROW, 1]
    assert np.allclose(np.diff(centres), width, atol=1e-4)  # lane 0 rightmost, one lane width apart
    assert np.isclose(lines[1, EGO_ROW, 1], centres[0] - width / 2, atol=1e-4)  # right edge beside lane 0


def test_curved_road_lines_bend_with_the_road_the_ego_then_drives():
    sim = world(seed=2, lanes=3, curvature=0.02)
    lines = sim.road_polylines()
    pose = sim.ego_pose()
    ego_lane = int(sim.road.layout.lane_at(sim.ego_frenet()[1]))
    own = lines[2 + ego_lane]
    assert np.allclose(own[EGO_ROW], [0.0, 0.0], atol=1e-3)
    assert abs(own[-1, 1]) > 5.0  # the road bends within 60 m: not a straight line
    # the carriageway keeps its width around the bend: every left-edge point is 3 lanes from the right edge
    assert np.allclose(distance_to(lines[0], lines[1]), 3 * sim.config.lane_width_m, atol=0.05)
    # the lane-keeping driver's later positions, seen from the first step, lie on its lane's line
    driver, path = ScriptedDriver(2), []
    for _ in range(40):
        sim.step(*driver.act(sim))
        path.append(sim.ego_pose()[:2, 3])
    seen_from_start = (np.array(path) - pose[:2, 3]) @ pose[:2, :2]  # [40, 2] in the first ego frame
    assert seen_from_start[-1, 0] > 30.0 and distance_to(seen_from_start, own).max() < 0.3


def test_lines_are_redrawn_in_the_moving_ego_frame():
    sim = world(seed=0, lanes=2, curvature=0.0)
    before = sim.road_polylines()
    for _ in range(10):
        sim.step(0.0, 0.3, 0.0)
    after = sim.road_polylines()
    # the same arc-length window moved with the ego: the lines' lateral positions stay, x stays -20..60
    assert np.allclose(after[:, :, 0], before[:, :, 0], atol=0.05, equal_nan=True)
    assert np.allclose(after[:, :, 1], before[:, :, 1], atol=0.05, equal_nan=True)


def test_samples_beyond_the_end_of_the_road_clamp_to_it():
    sim = world(seed=0, lanes=2, curvature=0.0)
    pose = sim.ego_pose().copy()
    lines = road_polylines(sim.road, sim.road.length - 10.0, pose)  # 50 m of the window lie past the end
    past_end = lines[:4, EGO_ROW + 5 :]  # samples at s_ego + 10 m and beyond
    assert np.allclose(past_end, past_end[:, :1], atol=1e-4)
    assert not np.allclose(lines[:4, EGO_ROW + 4], lines[:4, EGO_ROW + 5], atol=1e-2)


def test_scene_record_holds_the_lines_of_every_step():
    record = simulate_scene(5, WorldConfig(steps=6, lanes_min=2, lanes_max=2), RIG)
    assert record.road.shape == (6, len(ROAD_LINES), ROAD_POINTS, 2) and record.road.dtype == np.float32
    assert np.isnan(record.road[:, 4:]).all() and np.isfinite(record.road[:, :4]).all()
    again = simulate_scene(5, WorldConfig(steps=6, lanes_min=2, lanes_max=2), RIG)
    assert np.array_equal(record.road, again.road, equal_nan=True)
    directions = record.info["lane_directions"]
    assert len(directions) == record.info["lanes"] == 2
    assert directions.count(-1) == record.info["oncoming_lanes"] and directions[0] == 1  # lane 0 is forward


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic-road")
    config = SyntheticDatasetConfig(train_scenes=2, val_scenes=1, chunk_steps=8, scenes_per_shard=2,
                                    world=WorldConfig(steps=16), rig=RigConfig(width=32, height=24))
    return out, shard_synthetic(config, out, workers=1, progress=False)


def test_a_synthetic_dataset_stores_road_lines_and_verifies(dataset):
    out, manifest = dataset
    assert manifest.schema_version == contract.SCHEMA_VERSION == 2
    on_disk = contract.Manifest.from_json((out / contract.MANIFEST_NAME).read_text(), "manifest")
    assert on_disk.road_lines == list(ROAD_LINES)
    assert verify_dataset(out) == []
    with tarfile.open(out / manifest.shards[0].name) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    keys = {name.split(".")[0] for name in members}
    for key in keys:
        road = contract.decode_npy(members[f"{key}.{contract.ROAD}"], key)
        assert road.shape == (8, len(ROAD_LINES), ROAD_POINTS, 2) and road.dtype == np.float32
        info = json.loads(members[f"{key}.{contract.META}"])["info"]
        assert np.isnan(road[:, 2 + info["lanes"] :]).all() and np.isfinite(road[:, : 2 + info["lanes"]]).all()
        assert len(info["lane_directions"]) == info["lanes"]
