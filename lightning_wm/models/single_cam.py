"""`SingleCamWorldModel`: the DreamerV3-style single-camera world model as a LightningModule.

This file holds the training step, the named loss terms, validation (teacher-forced losses and
open-loop PSNR against baselines), the optimiser and the rollout interface; the networks live
in `encoders.py`, `rssm.py`, `decoders.py` and `heads.py`. Frames are float in [0, 1].
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torchmetrics import MeanMetric

from datamodules.batch import Batch
from lightning_wm.models.decoders import ImageDecoder, image_loss
from lightning_wm.models.encoders import ImageEncoder
from lightning_wm.models.heads import EgoMotionHead, HazardHead, ego_loss, hazard_loss
from lightning_wm.models.rollout import open_loop
from lightning_wm.models.rssm import RSSM, RSSMState, kl_loss
from lightning_wm.models.single_cam_config import SingleCamConfig
from lightning_wm.models.sizes import get_size
from sharding.errors import ConfigError

LOSS_NAMES = ("image", "kl_dyn", "kl_rep", "ego", "hazard", "total")
PSNR_KINDS = ("psnr", "psnr_copy_last", "psnr_shuffled_actions")  # logged as val/<kind>/h<k>


def frame_psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per frame of images in [0, 1]: [B, H, V, 3, h, w] x2 -> [B, H]."""
    mse = (pred.float() - target.float()).square().flatten(2).mean(-1)
    return -10 * torch.log10(mse.clamp_min(1e-10))


class SingleCamWorldModel(L.LightningModule):
    """RSSM world model on one camera: `SingleCamWorldModel(config, action_names, image_size)`.

    config:       `SingleCamConfig` or a plain dict of its fields
    action_names: the datamodule's action names, in batch order (e.g. ["speed", "yaw_rate"])
    image_size:   (H, W) of the frames the datamodule yields, e.g. (64, 64)
    Batches are `datamodules.batch.Batch` with V=1 view.
    """

    def __init__(self, config: SingleCamConfig | dict[str, Any], action_names: list[str],
                 image_size: tuple[int, int] | list[int]) -> None:
        super().__init__()
        self.config = config if isinstance(config, SingleCamConfig) else SingleCamConfig.from_dict(dict(config))
        if not action_names:
            raise ConfigError("SingleCamWorldModel needs at least one action name (data.actions is empty)")
        self.action_names = [str(a) for a in action_names]
        self.image_size = (int(image_size[0]), int(image_size[1]))
        # Plain containers only: checkpoints must load with torch.load(weights_only=True).
        self.save_hyperparameters({"config": asdict(self.config), "action_names": self.action_names,
                                   "image_size": list(self.image_size), "model_family": "single_cam"})

        size = get_size(self.config.size)
        self.encoder = ImageEncoder(size.cnn_depth, self.image_size)
        self.rssm = RSSM(self.encoder.embed_dim, len(self.action_names), size.deter, size.stoch, size.classes,
                         size.units, unimix=self.config.unimix)
        self.decoder = ImageDecoder(size.feature_dim, size.cnn_depth, self.image_size)
        self.ego_head = EgoMotionHead(size.feature_dim, size.units, size.mlp_layers)
        self.hazard_head = HazardHead(size.feature_dim, size.units, size.mlp_layers)
        if self.config.channels_last:
            self.encoder.to(memory_format=torch.channels_last)
            self.decoder.to(memory_format=torch.channels_last)
        if self.config.compile:
            # In place, so state_dict keys stay the same with and without compile. The RSSM is
            # left eager: its time loop of small matmuls gains little and recompiles per length.
            for net in (self.encoder, self.decoder, self.ego_head, self.hazard_head):
                net.compile()
        # One metric object per logged PSNR name, so DDP reduces them correctly.
        self.val_psnr = nn.ModuleDict({f"{kind}_h{h}": MeanMetric() for kind in PSNR_KINDS
                                       for h in self.config.psnr_horizons})

    # ---- shared pieces ----------------------------------------------------------------
    def _check_frames(self, frames: torch.Tensor, actions: torch.Tensor) -> None:
        if frames.shape[2] != 1:
            raise ConfigError(f"SingleCamWorldModel reads one camera but the batch has V={frames.shape[2]} views; "
                              "set data.cameras to one camera, e.g. [CAM_FRONT]")
        if tuple(frames.shape[-2:]) != self.image_size:
            raise ConfigError(f"frames are {tuple(frames.shape[-2:])} but the model was built for image_size="
                              f"{self.image_size}; build it with the datamodule's frame size")
        if actions.shape[-1] != len(self.action_names):
            raise ConfigError(f"batch has {actions.shape[-1]} actions but the model was built for "
                              f"{self.action_names}; build it with the datamodule's action_names")

    def _embed(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [B, T, 1, 3, H, W] -> embeddings [B, T, E], the encoder batched over B*T."""
        x = rearrange(frames, "b t 1 c h w -> (b t) c h w")
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return rearrange(self.encoder(x), "(b t) e -> b t e", b=frames.shape[0])

    @staticmethod
    def _prev_actions(actions: torch.Tensor) -> torch.Tensor:
        """[B, T, A] actions taken at each step -> [B, T, A] actions that led into each step.

        Row t becomes actions[:, t-1]; row 0 is zero (the window's start, as DreamerV3's first step).
        """
        return F.pad(actions[:, :-1], (0, 0, 1, 0))

    def losses(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Teacher-forced world-model loss: batch -> (total, named terms).

        Terms (unscaled): image, kl_dyn, kl_rep, ego, hazard, total (the weighted sum), and
        kl_dyn_raw, kl_rep_raw (before free bits).
        """
        frames, actions, cfg = batch["frames"], batch["actions"], self.config
        self._check_frames(frames, actions)
        post, prior = self.rssm.observe(self._embed(frames), self._prev_actions(actions))
        features = post.feature()  # [B, T, F]
        recon = self.decoder(rearrange(features, "b t f -> (b t) f"))  # [B*T, 3, H, W]
        kl, terms = kl_loss(post.logits, prior.logits, cfg.free_bits, cfg.kl_dyn_scale, cfg.kl_rep_scale)
        terms["image"] = image_loss(recon, rearrange(frames, "b t 1 c h w -> (b t) c h w"))
        terms["ego"] = ego_loss(self.ego_head(features), batch["ego"])
        terms["hazard"] = hazard_loss(self.hazard_head(features), batch["hazard"])
        total = (cfg.image_scale * terms["image"] + kl + cfg.ego_scale * terms["ego"]
                 + cfg.hazard_scale * terms["hazard"])
        terms["total"] = total
        return total, terms

    # ---- Lightning hooks --------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        total, terms = self.losses(batch)
        size = batch["frames"].shape[0]
        self.log_dict({f"train/loss/{name}": terms[name] for name in LOSS_NAMES if name != "total"}, batch_size=size)
        self.log("train/loss/total", total, prog_bar=True, batch_size=size)
        self.log_dict({"train/kl/dyn_raw": terms["kl_dyn_raw"], "train/kl/rep_raw": terms["kl_rep_raw"],
                       "train/lr": self.trainer.optimizers[0].param_groups[0]["lr"]}, batch_size=size)
        return total

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Before the trainer clips, so the log shows the raw norm that clipping acts on.
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if grads:
            self.log("train/grad_norm", torch.nn.utils.get_total_norm(grads))

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        _, terms = self.losses(batch)
        frames, actions = batch["frames"], batch["actions"]
        size, steps, context = frames.shape[0], frames.shape[1], self.config.context_steps
        self.log_dict({f"val/loss/{name}": terms[name] for name in LOSS_NAMES}, batch_size=size, sync_dist=True)
        if steps <= context:
            return  # no frames left to predict after the context
        target = frames[:, context:]  # [B, T-C, 1, 3, H, W]
        psnr = {"psnr": frame_psnr(open_loop(self, frames, actions, context)[0], target),
                "psnr_copy_last": frame_psnr(frames[:, context - 1 : context].expand_as(target), target)}
        if size > 1:
            # Every window imagines its future under another window's actions (a derangement).
            future = actions[:, context - 1 : steps - 1].roll(1, dims=0)
            psnr["psnr_shuffled_actions"] = frame_psnr(
                open_loop(self, frames, actions, context, future_actions=future)[0], target)
        for kind, values in psnr.items():  # values: [B, T-C]
            for h in self.config.psnr_horizons:
                if h <= steps - context:
                    metric = self.val_psnr[f"{kind}_h{h}"]
                    metric.update(values[:, h - 1])
                    self.log(f"val/{kind}/h{h}", metric, batch_size=size)

    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.config
        optimizer = torch.optim.AdamW(self.parameters(), lr=cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
        warmup = cfg.warmup_steps
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ---- rollout interface (lightning_wm.models.rollout.RolloutModel) ------------------
    def observe(self, frames: torch.Tensor, actions: torch.Tensor,
                generator: torch.Generator | None = None) -> RSSMState:
        """frames [B, T, 1, 3, H, W], actions [B, T, A] -> posterior state after step T-1 ([B])."""
        self._check_frames(frames, actions)
        post, _ = self.rssm.observe(self._embed(frames), self._prev_actions(actions), generator=generator)
        return post[:, -1]

    def imagine(self, state: RSSMState, actions: torch.Tensor,
                generator: torch.Generator | None = None) -> RSSMState:
        """state [B], actions [B, H, A] (actions[:, 0] taken in `state`'s step) -> states [B, H]."""
        return self.rssm.imagine(state, actions, generator)

    def decode(self, states: RSSMState) -> torch.Tensor:
        """states [B, H] -> frames [B, H, 1, 3, h, w] in [0, 1]."""
        images = self.decoder(rearrange(states.feature(), "b t f -> (b t) f"))  # [B*H, 3, h, w]
        return rearrange(images, "(b t) c h w -> b t 1 c h w", b=states.deter.shape[0]).clamp(0, 1)

    def perturb(self, state: RSSMState, eps: float, generator: torch.Generator | None = None) -> RSSMState:
        """Gaussian noise of std eps on deter; each categorical replaced at random with probability eps."""
        return self.rssm.perturb(state, eps, generator)

    def ego_motion(self, states: RSSMState) -> torch.Tensor:
        """states [B, H] -> [B, H, 3]: [dx m, dy m, dyaw rad] from step h-1 into step h."""
        return self.ego_head(states.feature())

    def hazard_logits(self, states: RSSMState) -> torch.Tensor:
        """states [B, H] -> [B, H] hazard logits."""
        return self.hazard_head(states.feature())
