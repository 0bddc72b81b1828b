"""`BehaviourCloning`: drives with a policy trained by `lwm fit model=policy` (frames + ego state).

It looks through the cameras it was trained on (the simulator must show them, by name) and speaks
the actions it was trained on; the simulator's action vector is filled from those by name, so a
policy trained on [speed, yaw_rate] drives a world model of the same actions in any order.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lightning_wm.policies.base import EpisodeInfo, Observation
from sharding.errors import ConfigError


class BehaviourCloning:
    """`policy=bc policy.ckpt=PATH`: the checkpoint of a `lwm fit model=policy` run."""

    wants_latent = False
    needs_frames = True

    def __init__(self, ckpt: str | None = None, device: str = "cpu") -> None:
        from lightning_wm.models.loading import load_model  # the model families, only when used

        if not ckpt:
            raise ConfigError("policy=bc needs policy.ckpt=PATH: the last.ckpt of `lwm fit model=policy`")
        self.model, _ = load_model(Path(ckpt), "policy.ckpt", family="policy")
        self.model.to(device)
        self.ckpt = ckpt

    def reset(self, info: EpisodeInfo) -> None:
        model = self.model
        missing = [c for c in model.camera_names if c not in info.camera_names]
        if missing:
            raise ConfigError(f"policy.ckpt={self.ckpt} looks through cameras {model.camera_names}; the simulator "
                              f"shows {info.camera_names}: simulate with a world model of those cameras")
        unknown = [a for a in info.action_names if a not in model.action_names]
        if unknown:
            raise ConfigError(f"policy.ckpt={self.ckpt} predicts actions {model.action_names}, the world model's "
                              f"actions are {info.action_names}; train the policy with data.actions={info.action_names}")
        self.views = [info.camera_names.index(c) for c in model.camera_names]
        self.order = [model.action_names.index(a) for a in info.action_names]

    @torch.no_grad()
    def act(self, observation: Observation) -> torch.Tensor:
        device = next(self.model.parameters()).device
        frames = observation.frames[:, self.views].to(device)
        actions = self.model(frames, observation.speed.to(device).float(), observation.yaw_rate.to(device).float())
        return actions[:, self.order].to(observation.speed.device)
