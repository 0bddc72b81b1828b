"""A policy that is wrong on purpose: the canary a regression gate must catch.

`SpeedUp` starts from the motion into the last context step and adds `gain` m/s every second
while holding the yaw rate at `yaw_rate` (0: straight on, whatever the road does). In the
reference world it runs into leaders and off curved roads within a few seconds, so
`lwm regress candidate=speed_up baseline=log_replay` must exit 1; a gate that lets it pass is
broken. It needs no eyes (`needs_frames = False`).
"""

from __future__ import annotations

import torch

from lightning_wm.policies.base import EpisodeInfo, Observation
from sharding.errors import ConfigError


class SpeedUp:
    """speed(step) = last context speed + gain * (step + 1) / fps; yaw rate held at `yaw_rate`."""

    needs_frames = False

    def __init__(self, gain: float = 1.0, yaw_rate: float = 0.0) -> None:
        self.gain, self.yaw_rate = float(gain), float(yaw_rate)

    def reset(self, info: EpisodeInfo) -> None:
        for name in ("speed", "yaw_rate"):
            if name not in info.action_names:
                raise ConfigError(f"speed_up commands speed and yaw_rate; the action space {info.action_names} lacks "
                                  f"{name}")
        self.start = info.context_actions[:, -2].clone()  # [B, A]: the motion into the last context step
        self.speed_at, self.yaw_at = info.action_names.index("speed"), info.action_names.index("yaw_rate")
        self.fps = info.fps

    def act(self, observation: Observation) -> torch.Tensor:
        actions = self.start.clone()
        actions[:, self.speed_at] += self.gain * (observation.step + 1) / self.fps
        actions[:, self.yaw_at] = self.yaw_rate
        return actions.to(observation.speed.device)
