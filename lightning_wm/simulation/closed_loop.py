"""What both simulators' closed loops share: the batch of episodes they start from, the checks of
a policy's actions, and what a run of B episodes returns.

Shapes: B episodes, C context steps, H closed-loop steps, V cameras, A actions; frames uint8
`[..., h, w, 3]` for videos, float `[B, V, 3, h, w]` in [0, 1] for policies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lightning_wm.policies.base import EpisodeInfo
from lightning_wm.simulation.episodes import EpisodeLog
from lightning_wm.simulation.scoring import Outcome
from sharding.errors import ConfigError
from sharding.synthetic import ACTION_NAMES
from sharding.synthetic.road_lines import ROAD_LINES


@dataclass
class EpisodeBatch:
    """B episodes as both simulators see them at the start (from logs or from shard windows).

    names:          episode names
    frames:         uint8 [B, C, V, h, w, 3] the context frames
    actions:        float32 [B, C + H, A] the log's actions in the world model's action space
    history:        float64 [B, C, 3] the log's context poses (frame of the last context step)
    log_poses:      float64 [B, H + 1, 3] the log's closed-loop poses, row 0 = the last context step
    log_progress_m: float64 [B] how far the log advanced along the road over the horizon
    road:           float32 [B, K, P, 2] the road at the last context step (ego frame), or None
    road_lines:     names of road's rows
    logs:           the synthetic episode logs (reference simulator), or None for shard windows
    """

    names: list[str]
    frames: np.ndarray
    actions: np.ndarray
    history: np.ndarray
    log_poses: np.ndarray
    log_progress_m: np.ndarray
    road: np.ndarray | None
    road_lines: list[str]
    logs: list[EpisodeLog] | None = None

    @property
    def context(self) -> int:
        return self.frames.shape[1]

    @property
    def horizon(self) -> int:
        return self.log_poses.shape[1] - 1

    def info(self, simulator: str, action_names: list[str], camera_names: list[str], fps: float) -> EpisodeInfo:
        actions = torch.from_numpy(self.actions)
        return EpisodeInfo(simulator, list(self.names), list(action_names), list(camera_names), fps, self.horizon,
                           actions[:, : self.context], actions[:, self.context - 1 : self.context - 1 + self.horizon],
                           None if self.road is None else torch.from_numpy(self.road), list(self.road_lines))


def batch_from_logs(logs: list[EpisodeLog], action_names: list[str], views: list[int] | None = None) -> EpisodeBatch:
    """The EpisodeBatch of synthetic episode logs: actions picked by name from ACTION_NAMES, and the
    cameras `views` (indices into the world's rig; default all) in that order."""
    missing = [a for a in action_names if a not in ACTION_NAMES]
    if missing:
        raise ConfigError(f"actions {missing} are not actions of the synthetic world {list(ACTION_NAMES)}")
    columns = [ACTION_NAMES.index(a) for a in action_names]
    context = logs[0].spec.context
    return EpisodeBatch(
        names=[log.spec.name for log in logs],
        frames=np.stack([log.frames if views is None else log.frames[:, views] for log in logs]),
        actions=np.stack([log.actions[:, columns] for log in logs]),
        history=np.stack([log.poses[:context] for log in logs]),
        log_poses=np.stack([log.poses[context - 1 :] for log in logs]),
        log_progress_m=np.array([log.progress_m for log in logs]),
        road=np.stack([log.road[context - 1] for log in logs]),
        road_lines=list(ROAD_LINES),
        logs=logs,
    )


def batch_from_windows(windows: dict[str, torch.Tensor], names: list[str], context: int,
                       road_lines: list[str] | None = None) -> EpisodeBatch:
    """The EpisodeBatch of shard windows of C + H steps (a `datamodules.batch.Batch` straight from the
    loader, uint8 frames): the log is what the data recorded; no road (DAC unscored, no reference)."""
    frames = windows["frames"][:, :context].permute(0, 1, 2, 4, 5, 3).numpy()  # [B, C, V, h, w, 3]
    first_from_ego = windows["ego"].double()
    origin = first_from_ego[:, context - 1 : context]
    relative = torch.linalg.solve(origin, first_from_ego)  # each pose in the last context step's frame
    poses = torch.stack([relative[..., 0, 3], relative[..., 1, 3], torch.atan2(relative[..., 1, 0],
                                                                             relative[..., 0, 0])], -1).numpy()
    log = poses[:, context - 1 :]
    progress = np.linalg.norm(np.diff(log[..., :2], axis=1), axis=-1).sum(1)
    return EpisodeBatch(list(names), frames, windows["actions"].numpy().astype(np.float32), poses[:, :context], log,
                        progress, None, list(road_lines or []))


@dataclass
class SimRollout:
    """B episodes run by one simulator with one policy.

    outcome:  what the scorer reads (`scoring.Outcome`)
    actions:  float32 [B, H, A] the policy's actions
    frames:   uint8 [B, H, V, h, w, 3] what the policy saw at each step (videos), or None
    extras:   simulator-specific figures per episode ({name: [B]}, e.g. the controller's tracking error)
    """

    outcome: Outcome
    actions: torch.Tensor
    frames: np.ndarray | None
    extras: dict[str, Any]


def check_actions(actions: Any, batch: int, names: list[str], policy: str, step: int) -> torch.Tensor:
    """A policy's actions as float32 [B, A]; one line naming the policy and the step otherwise."""
    if not isinstance(actions, torch.Tensor):
        raise ConfigError(f"policy {policy} returned {type(actions).__name__} at step {step}; act() must return a "
                          f"tensor [B={batch}, A={len(names)}] of actions {names}")
    if tuple(actions.shape) != (batch, len(names)):
        raise ConfigError(f"policy {policy} returned actions of shape {list(actions.shape)} at step {step}; expected "
                          f"[{batch}, {len(names)}] ({names})")
    if not bool(torch.isfinite(actions).all()):
        bad = sorted({names[i] for i in torch.nonzero(~torch.isfinite(actions))[:, 1].tolist()})
        raise ConfigError(f"policy {policy} returned NaN or infinite {bad} at step {step}; the episode stops here")
    return actions.float()


def frames_for_policy(frames: np.ndarray) -> torch.Tensor:
    """uint8 [B, V, h, w, 3] -> float [B, V, 3, h, w] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 1, 4, 2, 3).float() / 255
