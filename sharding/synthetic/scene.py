"""One recorded scene of the synthetic world: the scripted driver in closed loop, every frame.

`simulate_scene(seed, world, rig)` is what `lwm shard synthetic` calls per scene; its
`SceneRecord` maps one to one onto the shard members (images, ego.npy, action.npy, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sharding.contract import AGENT_FIELDS
from sharding.safety import hazard_labels
from sharding.synthetic.camera import RigConfig
from sharding.synthetic.driver import ScriptedDriver
from sharding.synthetic.road_lines import ROAD_LINES, ROAD_POINTS
from sharding.synthetic.world import SyntheticWorld, WorldConfig

ACTION_NAMES = ("speed", "yaw_rate", "steer", "throttle", "brake")
_EPOCH_US = 1_600_000_000_000_000  # 2020-09-13: timestamps look like real logs


@dataclass
class SceneRecord:
    """A scene of T steps, V cameras, N agents (N = every agent that existed in the scene).

    images:         uint8 [T, V, H, W, 3] RGB
    timestamps_us:  int64 [T], a seed-dependent start plus 1e6 / fps per step
    world_from_ego: float64 [T, 4, 4]
    actions:        float32 [T, 5] named ACTION_NAMES; row t is the motion from step t to t + 1
                    (speed m/s and yaw_rate rad/s as realised by the poses; steer rad, throttle
                    and brake in [0, 1] as applied at t); the last row repeats the one before
    agents:         float32 [T, N, len(AGENT_FIELDS)] in the ego frame; padding rows have
                    track_id -1 and zeros elsewhere
    hazard:         uint8 [T], 1 if a collision or near-collision happens within the horizon
    collision:      uint8 [T], 1 where the ego's body overlaps an agent
    road:           float32 [T, len(ROAD_LINES), ROAD_POINTS, 2] edge and lane centre lines in the
                    ego frame at each step (road_lines.py); NaN rows for lanes the road lacks
    info:           plain-JSON scene summary (road, weather, driver behaviour, events)
    """

    images: np.ndarray
    timestamps_us: np.ndarray
    world_from_ego: np.ndarray
    actions: np.ndarray
    agents: np.ndarray
    hazard: np.ndarray
    collision: np.ndarray
    road: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def realised_motion(world_from_ego: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Speed (m/s) and yaw rate (rad/s) between consecutive poses [T, 4, 4] -> two float64 [T - 1]."""
    step = np.linalg.norm(np.diff(world_from_ego[:, :2, 3], axis=0), axis=1)
    yaw = np.arctan2(world_from_ego[:, 1, 0], world_from_ego[:, 0, 0])
    turn = np.diff(yaw)
    turn = np.arctan2(np.sin(turn), np.cos(turn))  # across the +-pi seam
    return step / dt, turn / dt


def simulate_scene(seed: int, world: WorldConfig, rig: RigConfig) -> SceneRecord:
    """Drive the scripted driver through the scene of `seed` and record every step."""
    sim = SyntheticWorld(world, rig, seed)
    driver = ScriptedDriver(seed)
    steps = world.steps
    images = np.empty((steps, rig.num_views, rig.height, rig.width, 3), np.uint8)
    poses = np.empty((steps, 4, 4))
    controls = np.zeros((steps, 3), np.float32)
    road = np.empty((steps, len(ROAD_LINES), ROAD_POINTS, 2), np.float32)
    boxes, collision, danger = [], np.zeros(steps, bool), np.zeros(steps, bool)
    for t in range(steps):
        images[t] = sim.render()
        poses[t] = sim.ego_pose()
        road[t] = sim.road_polylines()
        boxes.append(sim.agent_boxes())
        collision[t] = sim.collided()
        danger[t] = sim.near_collision()
        if t < steps - 1:
            controls[t] = driver.act(sim)
            sim.step(*controls[t])
    controls[-1] = controls[-2]

    speed, yaw_rate = realised_motion(poses, sim.dt)
    actions = np.column_stack([np.append(speed, speed[-1]), np.append(yaw_rate, yaw_rate[-1]), controls])
    agents = np.zeros((steps, sim.num_agents, len(AGENT_FIELDS)), np.float32)
    agents[..., 0] = -1.0
    for t, rows in enumerate(boxes):  # agents added mid-scene leave padding rows before they appear
        agents[t, : len(rows)] = rows
    hazard = hazard_labels(danger, int(round(world.hazard_horizon_s * world.fps)))
    base = _EPOCH_US + int(np.random.default_rng([seed, 2]).integers(0, 10**12))
    timestamps = base + np.round(np.arange(steps) * (1e6 / world.fps)).astype(np.int64)
    info = {**sim.describe(), "driver": driver.summary(), "hazard_steps": int(hazard.sum()),
            "collision_steps": int(collision.sum()), "mean_speed": round(float(speed.mean()), 3),
            "distance_m": round(float(speed.sum() * sim.dt), 2)}
    return SceneRecord(images, timestamps.astype(np.int64), poses, actions.astype(np.float32), agents, hazard,
                       collision.astype(np.uint8), road, info)
