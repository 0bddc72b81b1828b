"""The Policy protocol: what a driving policy sees at each closed-loop step and what it returns.

Policies are batched over episodes and speak the data's action space (the world model's
`action_names`, canonically `[speed m/s, yaw_rate rad/s]`, the motion from this step to the next).
Both simulators call `reset(info)` once per batch of episodes, then `act(observation)` once per
step; a policy never knows which simulator it drives in except through what it is shown
(`Observation.road` exists only in the reference simulator, where it is ground truth).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from sharding.errors import ConfigError


@dataclass
class EpisodeInfo:
    """What a policy may know about a batch of B episodes before they start.

    simulator:       "learned" or "reference"
    episode_ids:     one name per episode (scene and start step)
    action_names:    names of the action vector (the world model's data), e.g. ["speed", "yaw_rate"]
    camera_names:    the cameras of `Observation.frames`, in order
    fps:             steps per second
    horizon:         closed-loop steps H
    context_actions: [B, C, A] the logged actions of the context steps
    log_actions:     [B, H, A] the logged actions of the closed-loop steps (what the logged driver
                     did; log replay uses them, the others may read the speed the log drove at)
    context_road:    [B, K, P, 2] road polylines in the ego frame of the last context step, named
                     by `road_lines` (privileged, from the log or the reference world), or None
    """

    simulator: str
    episode_ids: list[str]
    action_names: list[str]
    camera_names: list[str]
    fps: float
    horizon: int
    context_actions: torch.Tensor
    log_actions: torch.Tensor
    context_road: torch.Tensor | None = None
    road_lines: list[str] = field(default_factory=list)

    @property
    def batch(self) -> int:
        return len(self.episode_ids)


@dataclass
class Observation:
    """One closed-loop step of B episodes, as the policy sees it.

    frames:   [B, V, 3, H, W] float in [0, 1]: the current frame of every camera (rendered by the
              reference world, or decoded from the imagined state by the learned simulator)
    speed:    [B] m/s and yaw_rate [B] rad/s: the ego's motion into the current step (the world
              model's ego-motion head in the learned simulator; the true motion in the reference)
    step:     index of the closed-loop step, 0 .. H-1 (step 0 is the last context frame)
    latent:   the world model's state (learned simulator, for policies with `wants_latent`), else None
    road:     [B, K, P, 2] road polylines in the current ego frame, reference simulator only (ground
              truth: privileged), else None
    """

    frames: torch.Tensor
    speed: torch.Tensor
    yaw_rate: torch.Tensor
    step: int
    latent: Any = None
    road: torch.Tensor | None = None


@runtime_checkable
class Policy(Protocol):
    """A driving policy. Optional attributes a simulator reads: `wants_latent` (default False: pass
    the world model's state in `Observation.latent`) and `needs_frames` (default True; False lets
    the reference simulator skip rendering for a policy that does not look)."""

    def reset(self, info: EpisodeInfo) -> None:
        """Called once before a batch of episodes starts."""
        ...

    def act(self, observation: Observation) -> torch.Tensor:
        """-> actions [B, A] in `info.action_names` order, for the motion from this step to the next."""
        ...


def action_index(names: list[str], wanted: str, policy: str) -> int:
    """Where `wanted` is in the action vector; a policy that needs it refuses other action spaces."""
    if wanted not in names:
        raise ConfigError(f"policy {policy} commands `{wanted}`, but the world model's actions are {names}; "
                          "train it with data.actions including it or pick another policy")
    return names.index(wanted)
