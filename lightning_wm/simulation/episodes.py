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

from dataclasses import asdict, dataclass, replace

import numpy as np
import simplejpeg

from sharding.contract import AGENT_FIELDS
from sharding.errors import ConfigError
from sharding.synthetic import ACTION_NAMES, ScriptedDriver, SyntheticWorld
from sharding.synthetic.scene import realised_motion
from sharding.synthetic.source import SyntheticDatasetConfig, scene_seed
from sharding.synthetic.weather import LIGHTINGS, WEATHERS

AGENT_KINDS = ("vehicle", "pedestrian")


@dataclass(frozen=True)
class InjectedAgent:
    """An agent added to an episode's scene (`SyntheticWorld.inject_agent` says how it moves).

    kind: vehicle | pedestrian; ahead_m / lateral_m: along and across the road from the ego when it
    appears (+ left); speed_mps; heading_rad: from the road's direction (+ left); step: the
    context step (0 .. C-1) at which it appears, before that step's frame is rendered.
    """

    kind: str
    ahead_m: float
    lateral_m: float
    speed_mps: float
    heading_rad: float
    step: int


@dataclass(frozen=True)
class SceneEdit:
    """What a stress test changes in a scene before its episode starts: lighting and weather (None:
    the scene's own) and an injected agent. Recording the episode's log re-renders the context with
    the edit, and the reference world branches from the edited scene, so both simulators start
    from it; the road, the ego and the other traffic stay those of the scene."""

    lighting: str | None = None
    weather: str | None = None
    agent: InjectedAgent | None = None


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode of a synthetic scene: the world's seed, the scene's name, where it starts, and an
    optional edit of the scene (stress tests)."""

    scene_id: str  # as in the shards, e.g. synth-0-00064
    seed: int  # SyntheticWorld / ScriptedDriver seed
    start: int  # first context step within the scene
    context: int  # C
    horizon: int  # H
    edit: SceneEdit | None = None

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


def check_edit(spec: EpisodeSpec) -> None:
    """One line naming the field of a scene edit that cannot be applied."""
    edit = spec.edit
    if edit is None:
        return
    if edit.lighting is not None and edit.lighting not in LIGHTINGS:
        raise ConfigError(f"edit.lighting={edit.lighting!r}; choose one of {list(LIGHTINGS)} (or None: the scene's)")
    if edit.weather is not None and edit.weather not in WEATHERS:
        raise ConfigError(f"edit.weather={edit.weather!r}; choose one of {list(WEATHERS)} (or None: the scene's)")
    agent = edit.agent
    if agent is not None:
        if agent.kind not in AGENT_KINDS:
            raise ConfigError(f"edit.agent.kind={agent.kind!r}; choose one of {list(AGENT_KINDS)}")
        if not 0 <= agent.step < spec.context:
            raise ConfigError(f"edit.agent.step={agent.step} is outside the context steps 0..{spec.context - 1}")


def scene_world(spec: EpisodeSpec, dataset: SyntheticDatasetConfig) -> SyntheticWorld:
    """The scene's world at step 0, with the edit's lighting and weather (the rest of the scene's
    atmosphere kept: an edit of only one of them keeps the scene's own other one)."""
    edit = spec.edit
    if edit is None or (edit.lighting is None and edit.weather is None):
        return SyntheticWorld(dataset.world, dataset.rig, spec.seed)
    own = SyntheticWorld(dataset.world, dataset.rig, spec.seed).atmosphere
    world = replace(dataset.world, lighting=edit.lighting or own.lighting, weather=edit.weather or own.weather)
    return SyntheticWorld(world, dataset.rig, spec.seed)


def inject_at(world: SyntheticWorld, spec: EpisodeSpec, t: int) -> None:
    """Spawn the edit's agent when the episode reaches its context step `t`."""
    agent = spec.edit.agent if spec.edit is not None else None
    if agent is not None and agent.step == t:
        world.inject_agent(agent.kind, agent.ahead_m, agent.lateral_m, agent.speed_mps, agent.heading_rad)


def drive_to_branch(spec: EpisodeSpec, dataset: SyntheticDatasetConfig) -> tuple[SyntheticWorld, ScriptedDriver]:
    """The scene's world and driver at the start of its first context step (nothing rendered)."""
    check_edit(spec)
    world = scene_world(spec, dataset)
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
        inject_at(world, spec, t)
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
    info = world.describe() | ({"edit": asdict(spec.edit)} if spec.edit is not None else {})
    return EpisodeLog(spec, jpeg_round_trip(np.stack(frames), dataset.jpeg_quality), actions.astype(np.float32),
                      relative_poses(world_from_ego, world_from_ego[spec.context - 1]), np.stack(road),
                      pad_agents(agents), float(s[-1] - s[spec.context - 1]), info)


def branch_world(spec: EpisodeSpec, dataset: SyntheticDatasetConfig) -> SyntheticWorld:
    """The world at the last context step (the scripted driver drove the context), ready for a policy;
    an edit's agent is spawned at the same step as in `record_log`."""
    world, driver = drive_to_branch(spec, dataset)
    for t in range(spec.context - 1):
        inject_at(world, spec, t)
        world.step(*driver.act(world))
    inject_at(world, spec, spec.context - 1)
    return world

