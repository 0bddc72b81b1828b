"""Episodes: a scene and a start step, C real context steps, then H closed-loop steps.

A synthetic episode names a scene of the synthetic world by its seed, so both simulators start
from exactly the same observations: `record_log` drives the scene's scripted driver through the
context (rendering its frames, JPEG-coded like the shards) and on through the horizon (the log the
policies are compared with), and `branch_world` rebuilds the world at the last context step for
the reference simulator to continue in closed loop. Held-out episodes use the dataset's val
scenes first, then scenes no split holds (seeds nobody trained on).
Poses are (x, y, yaw) in the ego frame of the last context step unless said otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simplejpeg

from sharding.contract import AGENT_FIELDS
from sharding.errors import ConfigError
from sharding.synthetic import ACTION_NAMES, ScriptedDriver, SyntheticWorld
from sharding.synthetic.scene import realised_motion
from sharding.synthetic.source import SyntheticDatasetConfig, scene_seed


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode of a synthetic scene: the world's seed, the scene's name, where it starts."""

    scene_id: str  # as in the shards, e.g. synth-0-00064
    seed: int  # SyntheticWorld / ScriptedDriver seed
    start: int  # first context step within the scene
    context: int  # C
    horizon: int  # H

    @property
    def name(self) -> str:
        return f"{self.scene_id}@{self.start}"


def heldout_episodes(count: int, dataset: SyntheticDatasetConfig, context: int, horizon: int,
                     seed: int = 0) -> list[EpisodeSpec]:
    """`count` episodes of scenes no training split holds: the val scenes, then fresh ones, one
    episode per scene, start steps drawn from `seed` among those that fit the scene's length."""
    latest = dataset.world.steps - context - horizon
    if latest < 0:
        raise ConfigError(f"context={context} + horizon={horizon} steps do not fit the synthetic scenes of "
                          f"{dataset.world.steps} steps (data.synthetic.world.steps); shorten the episode")
    rng = np.random.default_rng(seed)
    first = dataset.train_scenes
    return [EpisodeSpec(f"synth-{dataset.seed}-{index:05d}", scene_seed(dataset.seed, index),
                        int(rng.integers(0, latest + 1)), context, horizon)
            for index in range(first, first + count)]


@dataclass
class EpisodeLog:
    """What the scene's scripted driver did in an episode, steps start .. start+C+H-1 (C+H steps).

    frames:     uint8 [C, V, h, w, 3] the context steps' camera frames, JPEG-coded as in the shards
    actions:    float32 [C+H, 5] named ACTION_NAMES (row t: the motion from step t to t+1; the last
                row repeats the one before)
    poses:      float64 [C+H, 3] (x, y, yaw), ego frame of the last context step
    road:       float32 [C+H, K, P, 2] road polylines in each step's ego frame, ROAD_LINES
    agents:     float32 [C+H, N, F] the agents' boxes (AGENT_FIELDS) in each step's ego frame
    progress_m: arc length the log advanced along the road over the H closed-loop steps
    info:       the scene summary (lighting, weather, events...)
    """

    spec: EpisodeSpec
    frames: np.ndarray
    actions: np.ndarray
    poses: np.ndarray
    road: np.ndarray
    agents: np.ndarray
    progress_m: float
    info: dict


def jpeg_round_trip(images: np.ndarray, quality: int) -> np.ndarray:
    """uint8 [..., h, w, 3] -> the same images after JPEG coding at `quality`, as the shards hold them."""
    flat = images.reshape(-1, *images.shape[-3:])
    coded = [simplejpeg.decode_jpeg(simplejpeg.encode_jpeg(np.ascontiguousarray(i), quality=quality,
                                                           colorspace="RGB"), colorspace="RGB") for i in flat]
    return np.stack(coded).reshape(images.shape)


def relative_poses(world_from_ego: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """float64 [T, 4, 4] world poses -> [T, 3] (x, y, yaw) in the frame of `origin` [4, 4]."""
    relative = np.linalg.solve(origin, world_from_ego)
    return np.stack([relative[:, 0, 3], relative[:, 1, 3], np.arctan2(relative[:, 1, 0], relative[:, 0, 0])], -1)


def pad_agents(rows: list[np.ndarray]) -> np.ndarray:
    """Per-step agent rows [N_t, F] (agents appended mid-episode) -> [T, max N, F], padding track_id -1."""
    count = max(len(r) for r in rows)
    out = np.zeros((len(rows), count, len(AGENT_FIELDS)), np.float32)
    out[..., 0] = -1.0
    for t, r in enumerate(rows):
        out[t, : len(r)] = r
    return out


def drive_to_branch(spec: EpisodeSpec, dataset: SyntheticDatasetConfig) -> tuple[SyntheticWorld, ScriptedDriver]:
    """The scene's world and driver at the start of its first context step (nothing rendered)."""
    world = SyntheticWorld(dataset.world, dataset.rig, spec.seed)
    driver = ScriptedDriver(spec.seed)
    for _ in range(spec.start):
        world.step(*driver.act(world))
    return world, driver


def record_log(spec: EpisodeSpec, dataset: SyntheticDatasetConfig) -> EpisodeLog:
    """Drive the scripted driver through the episode, recording what both simulators need."""
    world, driver = drive_to_branch(spec, dataset)
    steps = spec.context + spec.horizon
    frames, poses, road, agents, controls, s = [], [], [], [], [], []
    for t in range(steps):
        if t < spec.context:
            frames.append(world.render())
        poses.append(world.ego_pose())
        road.append(world.road_polylines())
        agents.append(world.agent_boxes())
        s.append(world.ego_frenet()[0])
        if t < steps - 1:
            controls.append(driver.act(world))
            world.step(*controls[-1])
    controls.append(controls[-1])
    world_from_ego = np.stack(poses)
    speed, yaw_rate = realised_motion(world_from_ego, world.dt)
    actions = np.column_stack([np.append(speed, speed[-1]), np.append(yaw_rate, yaw_rate[-1]), np.array(controls)])
    assert actions.shape[1] == len(ACTION_NAMES), actions.shape
    return EpisodeLog(spec, jpeg_round_trip(np.stack(frames), dataset.jpeg_quality), actions.astype(np.float32),
                      relative_poses(world_from_ego, world_from_ego[spec.context - 1]), np.stack(road),
                      pad_agents(agents), float(s[-1] - s[spec.context - 1]), world.describe())


def branch_world(spec: EpisodeSpec, dataset: SyntheticDatasetConfig) -> SyntheticWorld:
    """The world at the last context step (the scripted driver drove the context), ready for a policy."""
    world, driver = drive_to_branch(spec, dataset)
    for _ in range(spec.context - 1):
        world.step(*driver.act(world))
    return world

