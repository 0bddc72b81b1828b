"""The synthetic driving world: determinism, record layout, camera geometry, rendering, safety labels."""

import copy
import json
import math

import numpy as np
import pytest

from sharding.errors import ConfigError
from sharding.safety import hazard_labels
from sharding.synthetic import (
    ACTION_NAMES,
    AGENT_FIELDS,
    CameraConfig,
    RigConfig,
    ScriptedDriver,
    SyntheticWorld,
    WorldConfig,
    simulate_scene,
)
from sharding.synthetic.scene import realised_motion

SHORT = WorldConfig(steps=12)
RIG = RigConfig()


def straight_world(seed: int = 0, speed: float = 10.0, **overrides) -> SyntheticWorld:
    """A straight road in clear daylight with no traffic: nothing moves but the ego."""
    config = WorldConfig(max_curvature=0.0, max_vehicles=0, max_pedestrians=0, lighting="day", weather="clear",
                         **overrides)
    world = SyntheticWorld(config, RIG, seed)
    world.ego.speed = speed
    return world


@pytest.fixture(scope="module")
def scene():
    return simulate_scene(7, SHORT, RIG)


def test_same_seed_gives_identical_records_and_other_seeds_differ(scene):
    again = simulate_scene(7, SHORT, RIG)
    for name in ("images", "timestamps_us", "world_from_ego", "actions", "agents", "hazard", "collision"):
        assert np.array_equal(getattr(scene, name), getattr(again, name)), name
    assert np.array_equal(scene.road, again.road, equal_nan=True)  # NaN rows: lanes the road lacks
    assert scene.info == again.info
    other = simulate_scene(8, SHORT, RIG)
    assert np.abs(other.images.astype(int) - scene.images.astype(int)).mean() > 10
    assert not np.allclose(other.world_from_ego, scene.world_from_ego)
    assert scene.timestamps_us[0] != other.timestamps_us[0]
    roads = {json.dumps({k: simulate_scene(s, WorldConfig(steps=2), RIG).info[k] for k in ("lanes", "max_abs_curvature",
                         "vehicles")}) for s in range(6)}
    assert len(roads) > 3  # road layout and traffic vary with the seed


def test_record_shapes_dtypes_and_padding(scene):
    steps, views = SHORT.steps, RIG.num_views
    assert scene.images.shape == (steps, views, RIG.height, RIG.width, 3) and scene.images.dtype == np.uint8
    assert scene.timestamps_us.dtype == np.int64 and np.all(np.diff(scene.timestamps_us) == 100_000)
    assert scene.world_from_ego.shape == (steps, 4, 4) and scene.world_from_ego.dtype == np.float64
    assert np.allclose(scene.world_from_ego[:, 3], [0, 0, 0, 1])
    assert scene.actions.shape == (steps, len(ACTION_NAMES)) and scene.actions.dtype == np.float32
    assert scene.agents.dtype == np.float32 and scene.agents.shape[::2] == (steps, len(AGENT_FIELDS))
    assert scene.agents.shape[1] == scene.info["vehicles"] + scene.info["pedestrians"]
    assert scene.hazard.shape == scene.collision.shape == (steps,)
    assert scene.hazard.dtype == scene.collision.dtype == np.uint8
    assert set(np.unique(scene.agents[..., 1])) <= {0.0, 1.0}
    json.dumps(scene.info)  # plain JSON types only


def test_agents_added_mid_scene_pad_earlier_rows():
    world = straight_world()
    before = world.agent_boxes()
    world.spawn_vehicle(30.0, speed=5.0)
    rows = world.agent_boxes()
    assert before.shape == (0, len(AGENT_FIELDS)) and rows.shape == (1, len(AGENT_FIELDS))
    track, cls, x, y = rows[0, :4]
    assert track == 0 and cls == 0 and 29.0 < x < 31.0 and abs(y) < 0.1  # ego frame: straight ahead


def test_actions_match_pose_differences(scene):
    poses, dt = scene.world_from_ego, 1.0 / SHORT.fps
    step = np.linalg.norm(np.diff(poses[:, :2, 3], axis=0), axis=1) / dt
    yaw = np.unwrap(np.arctan2(poses[:, 1, 0], poses[:, 0, 0]))
    np.testing.assert_allclose(scene.actions[:-1, 0], step, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(scene.actions[:-1, 1], np.diff(yaw) / dt, atol=1e-4)
    np.testing.assert_array_equal(scene.actions[-1], scene.actions[-2])
    assert 0 < scene.actions[:, 0].mean() < 40
    assert np.all((scene.actions[:, 3:] >= 0) & (scene.actions[:, 3:] <= 1))


def test_realised_motion_follows_the_bicycle_model():
    world = straight_world(speed=8.0)
    poses = [world.ego_pose()]
    for _ in range(5):
        world.step(0.2, 0.0, 0.0)
        poses.append(world.ego_pose())
    speed, yaw_rate = realised_motion(np.stack(poses), world.dt)
    # kinematic bicycle: yaw rate = v tan(steer) / wheelbase (v slows a little from drag)
    np.testing.assert_allclose(yaw_rate, speed * math.tan(0.2) / 2.7, rtol=0.02)


def _horizontal_shift(before: np.ndarray, after: np.ndarray, max_shift: int = 24) -> int:
    """Integer x shift s minimising |after[:, x + s] - before[:, x]| over the overlap (grey images)."""
    errors = {}
    width = before.shape[1]
    for s in range(-max_shift, max_shift + 1):
        lo, hi = max(0, -s), min(width, width - s)
        errors[s] = np.abs(after[:, lo + s : hi + s] - before[:, lo:hi]).mean()
    return min(errors, key=errors.get)


def test_steering_left_and_right_mirror_the_image_motion():
    start = straight_world(seed=3)
    left, right = copy.deepcopy(start), copy.deepcopy(start)
    first = start.render()[0].mean(-1)  # front camera, grey [H, W]
    for _ in range(3):
        left.step(0.3, 0.3, 0.0)
        right.step(-0.3, 0.3, 0.0)
    horizon = int(RIG.intrinsics()[0, 1, 2])  # background above the horizon moves by rotation only
    band = slice(0, horizon + 4)
    shift_left = _horizontal_shift(first[band], left.render()[0].mean(-1)[band])
    shift_right = _horizontal_shift(first[band], right.render()[0].mean(-1)[band])
    assert shift_left > 3 and shift_right < -3, (shift_left, shift_right)  # turning left moves the view right
    assert abs(abs(shift_left) - abs(shift_right)) <= 0.3 * max(abs(shift_left), abs(shift_right))
    # the image shift matches the yaw turned: u = f * tan(yaw)
    focal = RIG.intrinsics()[0, 0, 0]
    assert shift_left == pytest.approx(focal * math.tan(left.ego.yaw - start.ego.yaw), abs=2.5)


def test_rendering_is_free_of_side_effects():
    world = SyntheticWorld(WorldConfig(weather="rain"), RIG, 4)  # rain streaks are random per frame
    twin = copy.deepcopy(world)
    world.render()
    world.render()
    for _ in range(3):
        world.step(0.0, 0.2, 0.0)
        twin.step(0.0, 0.2, 0.0)
    assert np.array_equal(world.render(), twin.render())


def test_deepcopy_branches_replay_identically():
    world = SyntheticWorld(WorldConfig(), RIG, 11)
    driver = ScriptedDriver(11)
    for _ in range(5):
        world.step(*driver.act(world))
    twin, twin_driver = copy.deepcopy(world), copy.deepcopy(driver)
    for _ in range(5):
        world.step(*driver.act(world))
        twin.step(*twin_driver.act(twin))
    assert np.array_equal(world.render(), twin.render())
    assert np.array_equal(world.agent_boxes(), twin.agent_boxes())


def test_rig_calibration_is_consistent():
    k, ego_from_camera = RIG.intrinsics(), RIG.ego_from_camera()
    assert k.shape == (3, 3, 3) and ego_from_camera.shape == (3, 4, 4) and RIG.camera_names[0] == "front"
    rotations = ego_from_camera[:, :3, :3]
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), np.tile(np.eye(3), (3, 1, 1)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0)
    np.testing.assert_allclose(rotations[0, :, 0], [0, -1, 0], atol=1e-12)  # front camera x = ego right
    np.testing.assert_allclose(RIG.camera_from_ego() @ ego_from_camera, np.tile(np.eye(4), (3, 1, 1)), atol=1e-12)

    def at_yaw(deg: float, far: float = 1e4) -> np.ndarray:  # a far point at that heading, level with the cameras
        yaw = math.radians(deg)
        return RIG.mount_point()[None] + far * np.array([[math.cos(yaw), math.sin(yaw), 0.0]])

    centre_u = (RIG.width - 1) / 2
    pixels, depth = RIG.project(at_yaw(0.0))
    assert pixels[0, 0, 0] == pytest.approx(centre_u, abs=1e-3) and depth[0, 0] > 0
    pixels, depth = RIG.project(at_yaw(55.0))
    assert pixels[1, 0, 0] == pytest.approx(centre_u, abs=1e-3) and depth[1, 0] > 0
    pixels, depth = RIG.project(at_yaw(27.5))  # halfway between the front and front_left axes
    for view in (0, 1):
        assert depth[view, 0] > 0 and -0.5 <= pixels[view, 0, 0] <= RIG.width - 0.5
    assert pixels[0, 0, 0] < centre_u < pixels[1, 0, 0]  # left part of front, right part of front_left


def test_renderer_draws_a_car_where_the_calibration_projects_it():
    empty = straight_world(seed=1)
    with_car = copy.deepcopy(empty)
    with_car.spawn_vehicle(15.0, speed=0.0)
    changed = np.abs(with_car.render().astype(int) - empty.render().astype(int)).sum(-1) > 30  # [V, H, W]
    assert changed[0].sum() > 20 and not changed[2].any()
    x, y, z = with_car.agent_boxes()[0, 2:5]
    (u, v), = RIG.project(np.array([[x, y, z]]))[0][0:1, 0]
    rows, cols = np.nonzero(changed[0])
    assert cols.mean() == pytest.approx(u, abs=1.5) and rows.min() < v < rows.max()


def test_collision_and_hazard_fire_before_impact_and_not_on_an_empty_road():
    world = straight_world(seed=2)
    world.spawn_vehicle(25.0, speed=0.0)  # a stopped car in the ego's lane
    danger, crash = [], []
    for _ in range(40):
        world.step(0.0, 1.0, 0.0)
        danger.append(world.near_collision())
        crash.append(world.collided())
    assert any(crash), "driving into a stopped car must collide"
    impact, first_danger = crash.index(True), danger.index(True)
    assert first_danger < impact and all(danger[first_danger : impact + 1])
    hazard = hazard_labels(np.array(danger), horizon_steps=20)
    assert hazard[max(0, impact - 20) : impact + 1].all()
    assert world.ego.speed == 0.0  # a crash stops the ego

    empty = straight_world(seed=2)
    for _ in range(40):
        empty.step(0.0, 1.0, 0.0)
        assert not empty.collided() and not empty.near_collision()


def test_hazard_labels_look_ahead_over_the_horizon():
    events = np.zeros(10, bool)
    events[6] = True
    np.testing.assert_array_equal(hazard_labels(events, 2), [0, 0, 0, 0, 1, 1, 1, 0, 0, 0])


def test_scripted_scenes_contain_hazards_but_not_everywhere():
    """The hazard head needs positives: some scenes, not most, hold a (near-)collision."""
    config = WorldConfig(steps=40)
    flagged = 0
    for seed in range(24):
        world, driver = SyntheticWorld(config, RIG, seed), ScriptedDriver(seed)
        for _ in range(config.steps):
            world.step(*driver.act(world))
            if world.near_collision():
                flagged += 1
                break
    assert 2 <= flagged <= 10, flagged  # 6 with the current settings


@pytest.mark.parametrize(
    ("make", "key"),
    [
        (lambda: RigConfig(cameras=[CameraConfig("front", 0.0, fov_deg=200.0)]), "fov_deg=200"),
        (lambda: RigConfig(cameras=[CameraConfig("front"), CameraConfig("front", 30.0)]), "name='front'"),
        (lambda: RigConfig(cameras=[CameraConfig("front.left")]), "name='front.left'"),
        (lambda: RigConfig(cameras=[]), "rig.cameras"),
        (lambda: RigConfig(width=0), "rig.width=0"),
        (lambda: WorldConfig(lanes_min=3, lanes_max=2), "lanes_max=2"),
        (lambda: WorldConfig(weather="snow"), "weather='snow'"),
    ],
)
def test_bad_settings_raise_config_error_naming_the_key(make, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("[", r"\[")) as error:
        make()
    assert "\n" not in str(error.value)
