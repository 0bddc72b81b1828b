"""Annotated boxes -> `agents.npy` at the shard's steps (ego frame), and hazard labels from them.

Shared by the real-log sources (nuScenes, Waymo): both hand over world-frame boxes as
`Annotations`. Logs annotate sparsely (nuScenes keyframes at 2 Hz), so a track's box is
interpolated linearly between its annotations (yaw along the shorter arc) and held for half a
shard step beyond its first and last one; elsewhere its row is padding (track_id -1, zeros), as
the contract says. An agent's velocity is its displacement between the annotations around the step.
Hazard at t: within `horizon_s`, the ego's body comes within `near_collision_m` of an agent's,
or both keeping their velocity (the ego straight ahead) would overlap within `ttc_threshold_s`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sharding.contract import AGENT_FIELDS, CLASS_OBJECT, CLASS_PEDESTRIAN, CLASS_VEHICLE
from sharding.safety import hazard_labels, rectangle_corners, rectangle_distance, rectangles_overlap


def class_of(category: str) -> int:
    """nuScenes category name -> class_id: vehicle.* vehicles, human.* and animal walkers, the rest objects."""
    if category.startswith("vehicle."):
        return CLASS_VEHICLE
    if category.startswith(("human.", "animal")):
        return CLASS_PEDESTRIAN
    return CLASS_OBJECT


@dataclass
class Annotations:
    """One scene's boxes in the world frame, M annotations of I tracks.

    track int64 [M] (index into classes), time_us int64 [M], center float64 [M, 3],
    size float64 [M, 3] (width, length, height as nuScenes stores it), yaw float64 [M] (world), classes int64 [I].
    """

    track: np.ndarray
    time_us: np.ndarray
    center: np.ndarray
    size: np.ndarray
    yaw: np.ndarray
    classes: np.ndarray


@dataclass
class HazardConfig:
    """Ego body and near-collision thresholds (ego origin: rear axle, as in nuScenes)."""

    ego_length_m: float
    ego_width_m: float
    ego_rear_overhang_m: float
    near_collision_m: float
    ttc_threshold_s: float
    horizon_s: float


def agents_on_grid(ann: Annotations, grid_us: np.ndarray, world_from_ego: np.ndarray,
                   hold_us: float) -> tuple[np.ndarray, np.ndarray]:
    """agents float32 [T, I, len(AGENT_FIELDS)] in the ego frame, and ego-frame velocities float64 [T, I, 2]."""
    steps, tracks = len(grid_us), len(ann.classes)
    agents = np.zeros((steps, tracks, len(AGENT_FIELDS)), np.float32)
    agents[..., 0] = -1.0
    velocity = np.zeros((steps, tracks, 2))
    rotation_t = world_from_ego[:, :3, :3].transpose(0, 2, 1)  # ego_from_world rotation [T, 3, 3]
    ego_yaw = np.arctan2(world_from_ego[:, 1, 0], world_from_ego[:, 0, 0])
    grid = grid_us.astype(np.float64)
    for track in range(tracks):
        rows = np.flatnonzero(ann.track == track)
        rows = rows[np.argsort(ann.time_us[rows], kind="stable")]
        rows = rows[np.concatenate([[True], np.diff(ann.time_us[rows]) > 0])]  # a repeated stamp: keep the first box
        t = ann.time_us[rows].astype(np.float64)
        present = (grid >= t[0] - hold_us) & (grid <= t[-1] + hold_us)
        if not present.any():
            continue
        g = grid[present]
        center = np.column_stack([np.interp(g, t, ann.center[rows, i]) for i in range(3)])
        size = np.column_stack([np.interp(g, t, ann.size[rows, i]) for i in range(3)])
        yaw = np.interp(g, t, np.unwrap(ann.yaw[rows]))
        if len(rows) > 1:
            segment = np.clip(np.searchsorted(t, g, side="right") - 1, 0, len(t) - 2)
            rate = np.diff(ann.center[rows, :2], axis=0) / (np.diff(t)[:, None] / 1e6)  # [M-1, 2] m/s
            world_velocity = rate[segment]
        else:
            world_velocity = np.zeros((len(g), 2))
        index = np.flatnonzero(present)
        rel = np.einsum("tij,tj->ti", rotation_t[index], center - world_from_ego[index, :3, 3])
        velocity[index, track] = np.einsum("tij,tj->ti", rotation_t[index, :2, :2], world_velocity)
        relative_yaw = np.arctan2(np.sin(yaw - ego_yaw[index]), np.cos(yaw - ego_yaw[index]))
        agents[index, track] = np.column_stack([
            np.full(len(g), track), np.full(len(g), ann.classes[track]), rel,
            size[:, 1], size[:, 0], size[:, 2], relative_yaw, np.linalg.norm(world_velocity, axis=1),
        ])
    return agents, velocity


def hazard_from_agents(agents: np.ndarray, velocity: np.ndarray, ego_speed: np.ndarray, fps: float,
                       config: HazardConfig) -> tuple[np.ndarray, np.ndarray]:
    """hazard uint8 [T] and per-step near-collision events bool [T] (see the module docstring)."""
    steps = len(agents)
    events = np.zeros(steps, bool)
    ego_half = np.array([config.ego_length_m / 2, config.ego_width_m / 2])
    center_offset = config.ego_length_m / 2 - config.ego_rear_overhang_m
    times = np.arange(1, int(round(config.ttc_threshold_s / 0.1)) + 1) * 0.1  # [K] s
    for t in range(steps):
        live = agents[t, :, 0] >= 0
        if not live.any():
            continue
        rows = agents[t, live]
        center, yaw, half = rows[:, 2:4].astype(np.float64), rows[:, 8].astype(np.float64), rows[:, 5:7] / 2.0
        ego = rectangle_corners(np.array([center_offset, 0.0]), np.array(0.0), ego_half)
        gap = rectangle_distance(ego, rectangle_corners(center, yaw, half)).min()
        hit = False
        if times.size:
            ego_path = np.column_stack([center_offset + ego_speed[t] * times, np.zeros_like(times)])  # [K, 2]
            ego_future = rectangle_corners(ego_path, np.zeros_like(times), ego_half)[:, None]  # [K, 1, 4, 2]
            future = center[None] + velocity[t, live][None] * times[:, None, None]  # [K, N, 2]
            hit = bool(rectangles_overlap(ego_future, rectangle_corners(future, yaw[None], half[None])).any())
        events[t] = gap < config.near_collision_m or hit
    return hazard_labels(events, int(round(config.horizon_s * fps))), events
