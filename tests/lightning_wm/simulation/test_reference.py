"""The reference simulator on the synthetic world: episodes are the shards' scenes, log replay
re-drives the log through the controller, lane keeping keeps the lane, the logged driver's scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules.bev import BevGrid, rasterize
from lightning_wm.policies.lane_keeping import LaneKeeping
from lightning_wm.policies.replay import ConstantVelocity, LogReplay
from lightning_wm.simulation.closed_loop import batch_from_logs
from lightning_wm.simulation.controller import control, tracking_error
from lightning_wm.simulation.episodes import heldout_episodes, record_log
from lightning_wm.simulation.reference import ReferenceSimulator
from lightning_wm.simulation.scoring import Outcome, score
from sharding.contract import AGENT_FIELDS
from sharding.synthetic import RigConfig, WorldConfig, simulate_scene
from sharding.synthetic.road_lines import ROAD_LINES
from sharding.synthetic.source import SyntheticDatasetConfig
from sharding.synthetic.vehicle import EgoVehicle

DATASET = SyntheticDatasetConfig(train_scenes=4, val_scenes=2, rig=RigConfig(width=32, height=32))
ACTIONS = ["speed", "yaw_rate"]
GRID = BevGrid()


@pytest.fixture(scope="module")
def logs():
    return [record_log(spec, DATASET) for spec in heldout_episodes(4, DATASET, context=8, horizon=30, seed=3)]


def test_an_episode_is_the_scene_the_shards_hold(logs):
    spec = logs[0].spec
    scene = simulate_scene(spec.seed, DATASET.world, DATASET.rig)
    steps = slice(spec.start, spec.start + spec.context + spec.horizon)
    np.testing.assert_allclose(logs[0].actions[:-1], scene.actions[steps][:-1], atol=1e-5)
    np.testing.assert_allclose(logs[0].road, scene.road[steps], atol=1e-4)  # NaN rows (absent lanes) alike
    assert logs[0].frames.shape == (8, 3, 32, 32, 3)  # the context steps' frames, every camera


def test_log_replay_reproduces_the_logged_trajectory_and_scores_like_the_logged_driver(logs):
    episodes = batch_from_logs(logs, ACTIONS)
    result = ReferenceSimulator(DATASET, GRID).run(episodes, LogReplay(), ACTIONS, ["front"], "log_replay")
    scores = score(result.outcome, torch.from_numpy(episodes.log_poses), torch.from_numpy(episodes.log_progress_m),
                   GRID, 10.0)
    assert scores["l2_3s"].max() < 0.3  # the bar; measured ~1e-6 m
    assert result.extras["tracking_speed_mps"].max() < 0.01
    # the log's own poses, agents and road scored the same way: the same scores
    occupancy = torch.stack([torch.from_numpy(rasterize(GRID, log.agents[8:], list(AGENT_FIELDS), log.road[8:],
                                                        list(ROAD_LINES))[0]) for log in logs]).bool()
    logged = Outcome(torch.from_numpy(episodes.log_poses), torch.from_numpy(episodes.history), occupancy,
                     torch.ones(len(logs), dtype=torch.bool), torch.from_numpy(episodes.log_progress_m))
    expected = score(logged, torch.from_numpy(episodes.log_poses), torch.from_numpy(episodes.log_progress_m), GRID,
                     10.0)
    for key in ("pdms", "nc", "dac", "ttc", "comfort"):
        assert torch.allclose(scores[key], expected[key]), key


def test_lane_keeping_follows_its_lane_and_constant_velocity_holds_its_command(logs):
    episodes = batch_from_logs(logs, ACTIONS)
    simulator = ReferenceSimulator(DATASET, GRID)
    kept = simulator.run(episodes, LaneKeeping(), ACTIONS, ["front"], "lane_keeping")
    scores = score(kept.outcome, torch.from_numpy(episodes.log_poses), torch.from_numpy(episodes.log_progress_m),
                   GRID, 10.0)
    assert (scores["dac"] == 1).all()  # never leaves the carriageway
    assert scores["l2_3s"].mean() < 1.5  # close to the logged driver, who keeps lanes too (bar lane changes)
    steady = simulator.run(episodes, ConstantVelocity(), ACTIONS, ["front"], "constant_velocity")
    commanded = torch.from_numpy(episodes.actions[:, 6])  # the motion into the last context step
    assert torch.allclose(steady.actions, commanded[:, None].expand_as(steady.actions).float())


def test_the_controller_tracks_feasible_commands_and_saturates_others():
    car = EgoVehicle(0.0, 0.0, 0.0, 10.0)
    for speed, yaw_rate in ((10.1, 0.05), (9.6, -0.1), (10.0, 0.3)):  # within the car's limits
        controls = control(car, speed, yaw_rate, 0.1)
        distance_error, turn_error = tracking_error(car, controls, speed, yaw_rate, 0.1)
        assert distance_error < 1e-4 and turn_error < 1e-6
    harsh = control(car, 30.0, 0.0, 0.1)  # 400 m/s^2 wanted: full throttle, and what is left is measured
    assert harsh.throttle == 1.0 and tracking_error(car, harsh, 30.0, 0.0, 0.1)[0] > 1.0
    parked = control(EgoVehicle(0.0, 0.0, 0.0, 0.0), 0.0, 0.0, 0.1)  # standing still, told to: stays, wheel straight
    assert abs(parked.steer) < 1e-6 and parked.throttle < 1e-6


def test_the_world_config_of_the_episodes_is_the_datasets():
    assert DATASET.world == WorldConfig()
