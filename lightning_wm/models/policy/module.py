"""`BehaviourCloningPolicy`: current camera frames + the ego's speed and yaw rate -> the next action.

Trained on the shards' logged driving (`lwm fit model=policy`): for every step t of a window, the
frames of step t and the motion into it (the logged speed and yaw rate of step t-1) predict the
logged action of step t, the motion from t to t+1. Speed and yaw rate are predicted as changes
from the motion into the step (measured: predicted outright, the network told a training scene's
speed by its look and ignored the ego state, 3.9 m/s error on held-out scenes against 0.005 in
training). The loss is the squared error of each action in units of its typical size
(`action_scales`); validation logs the mean absolute error of each action in its own unit
(`val/policy/mae_<action>`). `lightning_wm.policies.bc` drives with it.
Frames are float in [0, 1], `[B, T, V, 3, H, W]`; one encoder is shared by the views.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import lightning as L
import torch
from einops import rearrange
from torch import nn
from torchmetrics import MeanMetric

from datamodules.batch import Batch
from lightning_wm.models.cameras import check_rig
from lightning_wm.models.nn.encoders import ImageEncoder
from lightning_wm.models.nn.layers import MLP, symlog
from lightning_wm.models.policy.config import POLICY_SIZES, PolicyConfig
from lightning_wm.models.schedules import adamw_warmup_cosine
from sharding.errors import ConfigError

EGO_STATE = ("speed", "yaw_rate")  # what the policy is told of the ego besides the frames


class BehaviourCloningPolicy(L.LightningModule):
    """`BehaviourCloningPolicy(config, action_names, image_size, rig, fps)` (as every family is built).

    action_names must hold `speed` and `yaw_rate` (the ego state the policy reads); rig: the
    cameras it looks through, in batch order.
    """

    family = "policy"

    def __init__(self, config: PolicyConfig | dict[str, Any], action_names: list[str],
                 image_size: tuple[int, int] | list[int], rig: list[dict[str, Any]], fps: float | None = None) -> None:
        super().__init__()
        self.config = config if isinstance(config, PolicyConfig) else PolicyConfig.from_dict(dict(config))
        self.action_names = [str(a) for a in action_names]
        missing = [name for name in EGO_STATE if name not in self.action_names]
        if missing:
            raise ConfigError(f"the behaviour-cloning policy reads the ego's {list(EGO_STATE)} but data.actions is "
                              f"{self.action_names}; add {missing} to data.actions")
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.rig, self.fps = check_rig(rig, "BehaviourCloningPolicy"), float(fps) if fps else None
        self.camera_names = [c["name"] for c in self.rig]
        self.save_hyperparameters({"config": asdict(self.config), "action_names": self.action_names,
                                   "image_size": list(self.image_size), "rig": self.rig, "fps": self.fps,
                                   "model_family": self.family})
        size = POLICY_SIZES[self.config.size]
        self.encoder = ImageEncoder(size.cnn_depth, self.image_size)
        self.head = MLP(len(self.rig) * self.encoder.embed_dim + len(EGO_STATE), len(self.action_names), size.units,
                        size.mlp_layers)
        scales = [self.config.action_scales.get(name, 1.0) for name in self.action_names]
        self.register_buffer("action_scale", torch.tensor(scales), persistent=False)
        self.ego_index = [self.action_names.index(name) for name in EGO_STATE]
        self.val_mae = nn.ModuleDict({name: MeanMetric() for name in self.action_names})

    def forward(self, frames: torch.Tensor, speed: torch.Tensor, yaw_rate: torch.Tensor) -> torch.Tensor:
        """frames [N, V, 3, H, W], speed [N] m/s, yaw_rate [N] rad/s -> actions [N, A] (action_names order)."""
        if frames.shape[1] != len(self.rig) or tuple(frames.shape[-2:]) != self.image_size:
            raise ConfigError(f"the policy looks through {self.camera_names} at {self.image_size}; it got frames "
                              f"{list(frames.shape)} ([N, V, 3, H, W])")
        embeds = self.encoder(rearrange(frames, "n v c h w -> (n v) c h w"))
        embeds = rearrange(embeds, "(n v) e -> n (v e)", v=frames.shape[1])
        state = torch.stack([speed, yaw_rate], -1)  # [N, 2]
        actions = self.head(torch.cat([embeds, symlog(state / self.action_scale[self.ego_index])], -1)) * self.action_scale
        return actions.index_add(1, torch.tensor(self.ego_index, device=actions.device), state.to(actions.dtype))

    def _pairs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted, logged) actions [B*(T-1), A] of steps 1..T-1 of every window."""
        frames, actions = batch["frames"], batch["actions"]
        if actions.shape[-1] != len(self.action_names):
            raise ConfigError(f"batch has {actions.shape[-1]} actions, the policy was built for {self.action_names}")
        previous = actions[:, :-1].flatten(0, 1)  # [B*(T-1), A]: the motion into each step
        predicted = self(frames[:, 1:].flatten(0, 1), previous[:, self.ego_index[0]], previous[:, self.ego_index[1]])
        return predicted, actions[:, 1:].flatten(0, 1)

    def losses(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Squared error in units of `action_scales`, per action and summed: (total, terms)."""
        predicted, logged = self._pairs(batch)
        error = ((predicted - logged) / self.action_scale).square().mean(0)  # [A]
        terms = {name: error[i] for i, name in enumerate(self.action_names)}
        return error.sum(), {**terms, "total": error.sum()}

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        total, terms = self.losses(batch)
        size = batch["frames"].shape[0]
        self.log_dict({f"train/loss/{k}": v for k, v in terms.items() if k != "total"}, batch_size=size)
        self.log("train/loss/total", total, prog_bar=True, batch_size=size)
        return total

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        total, terms = self.losses(batch)
        size = batch["frames"].shape[0]
        self.log_dict({f"val/loss/{k}": v for k, v in terms.items()}, batch_size=size, sync_dist=True)
        predicted, logged = self._pairs(batch)
        for i, name in enumerate(self.action_names):
            self.val_mae[name].update((predicted[:, i] - logged[:, i]).abs())
            self.log(f"val/policy/mae_{name}", self.val_mae[name], batch_size=size)

    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.config
        return adamw_warmup_cosine(self, cfg.lr, cfg.weight_decay, cfg.warmup_steps, 0.1)
