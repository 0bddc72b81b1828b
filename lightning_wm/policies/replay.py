"""Two baselines that need no eyes: replay the log, or keep doing what the ego did last.

`LogReplay` returns, at step h, the logged driver's action of that step: in the reference
simulator (with a tracking controller) it re-drives the log, so it scores like the logged driver;
in the learned simulator it is what `lwm evaluate` rolls out. `ConstantVelocity` repeats the last
context action (speed and yaw rate held): the standard kinematic baseline of motion planning.
"""

from __future__ import annotations

import torch

from lightning_wm.policies.base import EpisodeInfo, Observation


class LogReplay:
    """The recorded actions of the episode's scene, step by step."""

    def reset(self, info: EpisodeInfo) -> None:
        self.actions = info.log_actions  # [B, H, A]

    def act(self, observation: Observation) -> torch.Tensor:
        return self.actions[:, observation.step].to(observation.speed.device)


class ConstantVelocity:
    """The last context action, held for the whole episode."""

    def reset(self, info: EpisodeInfo) -> None:
        self.action = info.context_actions[:, -2]  # [B, A]: the motion into the last context step

    def act(self, observation: Observation) -> torch.Tensor:
        return self.action.to(observation.speed.device)
