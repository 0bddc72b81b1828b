"""`SingleCamWorldModel`: the DreamerV3-style single-camera world model as a LightningModule.

This file holds the training step, the named loss terms, validation (teacher-forced losses and
open-loop PSNR against baselines), the optimiser and the rollout interface; the networks live
in `encoders.py`, `rssm.py`, `warp_decoder.py` and `heads.py`. Frames are float in [0, 1].

Two choices differ from DreamerV3, both for video prediction rather than control:
- the image decoder renders a frame by warping a *reference* frame (the last observed one when
  imagining) instead of painting it from the latent alone (see `warp_decoder.py`); in
  teacher-forced training the reference is a random 1..`max_reference_age` steps back. Given the
  camera's calibration (`camera`, read from the manifest by `lwm fit`), the warp starts from the
  rotation homography of the ego's turn since the reference (`model.turn_prior`; the true poses
  in teacher forcing; in rollouts the integrated `yaw_rate` action when the actions have one, else
  the ego-motion head's yaw), so imagined video turns the way it is steered;
- besides DreamerV3's teacher-forced losses, an *open-loop* term imagines the last
  `T - context_steps` steps of each window from the posterior at `context_steps - 1` with the
  true actions and scores the decoded frames (and ego motion) against the real ones, so the
  dynamics are trained on the task the model is evaluated on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torchmetrics import MeanMetric

from datamodules.batch import Batch
from lightning_wm.models.decoders import image_loss
from lightning_wm.models.ego_flow import commanded_turn, pose_heading, rotation_flow
from lightning_wm.models.encoders import ImageEncoder
from lightning_wm.models.heads import EgoMotionHead, HazardHead, ego_loss, hazard_loss, pose_deltas
from lightning_wm.models.idm import camera_rig
from lightning_wm.models.rollout import open_loop
from lightning_wm.models.rssm import RSSM, RSSMState, kl_loss
from lightning_wm.models.schedules import adamw_warmup_cosine
from lightning_wm.models.single_cam_config import SingleCamConfig
from lightning_wm.models.sizes import get_size
from lightning_wm.models.training_hooks import LOSS_NAMES, WorldModelTrainingHooks
from lightning_wm.models.warp_decoder import WarpDecoder
from sharding.errors import ConfigError

PSNR_KINDS = ("psnr", "psnr_copy_last", "psnr_shuffled_actions")  # logged as val/<kind>/h<k>


def camera_from_manifest(manifest: Any, camera_names: list[str]) -> dict[str, Any]:
    """`ModelFamily.manifest_args`: the calibration of the one camera the model reads, and the fps."""
    return {"camera": camera_rig(manifest.cameras[manifest.camera_names.index(camera_names[0])]),
            "fps": float(manifest.fps)}


def frame_psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per frame of images in [0, 1]: [B, H, V, 3, h, w] x2 -> [B, H]."""
    mse = (pred.float() - target.float()).square().flatten(2).mean(-1)
    return -10 * torch.log10(mse.clamp_min(1e-10))


@dataclass
class SingleCamState:
    """Rollout state: the latent plus the reference frame the decoder warps.

    latent:         `RSSMState`, leading dims [B] (one step) or [B, H] (imagined steps)
    reference:      [B, 3, H, W] the last observed frame, in [0, 1]
    reference_maps: the encoder's stage outputs of `reference` (see `ImageEncoder.forward_maps`)
    age:            [B] or [B, H] int64, steps between the reference and each state
    yaw:            [B] or [B, H] the ego's heading at each state relative to the reference's, rad
    """

    latent: RSSMState
    reference: torch.Tensor
    reference_maps: list[torch.Tensor]
    age: torch.Tensor
    yaw: torch.Tensor


class SingleCamWorldModel(WorldModelTrainingHooks, L.LightningModule):
    """RSSM world model on one camera: `SingleCamWorldModel(config, action_names, image_size)`.

    config:       `SingleCamConfig` or a plain dict of its fields
    action_names: the datamodule's action names, in batch order (e.g. ["speed", "yaw_rate"])
    image_size:   (H, W) of the frames the datamodule yields, e.g. (64, 64)
    camera:       the camera's calibration {name, width, height, intrinsics [3][3], ego_from_camera
                  [4][4]} (`camera_from_manifest`); without it there is no turn prior
    fps:          the data's frame rate, to integrate a `yaw_rate` action (rad/s) into the turn
    Batches are `datamodules.batch.Batch` with V=1 view.
    """

    def __init__(self, config: SingleCamConfig | dict[str, Any], action_names: list[str],
                 image_size: tuple[int, int] | list[int], camera: dict[str, Any] | None = None,
                 fps: float | None = None) -> None:
        super().__init__()
        self.config = config if isinstance(config, SingleCamConfig) else SingleCamConfig.from_dict(dict(config))
        if not action_names:
            raise ConfigError("SingleCamWorldModel needs at least one action name (data.actions is empty)")
        self.action_names = [str(a) for a in action_names]
        self.image_size = (int(image_size[0]), int(image_size[1]))
        # Plain containers only: checkpoints must load with torch.load(weights_only=True).
        self.camera = dict(camera) if camera else None
        self.fps = float(fps) if fps else None
        self.save_hyperparameters({"config": asdict(self.config), "action_names": self.action_names,
                                   "image_size": list(self.image_size), "camera": self.camera, "fps": self.fps,
                                   "model_family": "single_cam"})

        size = get_size(self.config.size)
        self.encoder = ImageEncoder(size.cnn_depth, self.image_size)
        self.rssm = RSSM(self.encoder.embed_dim, len(self.action_names), size.deter, size.stoch, size.classes,
                         size.units, unimix=self.config.unimix)
        self.decoder = WarpDecoder(size.feature_dim, size.cnn_depth, self.image_size)
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
        self.turn_prior = self.config.turn_prior and self.camera is not None
        if self.turn_prior:  # calibration at the model's image size; not weights (persistent=False)
            self.register_buffer("intrinsics", torch.tensor(self.camera["intrinsics"]), persistent=False)
            self.register_buffer("ego_from_camera", torch.tensor(self.camera["ego_from_camera"]), persistent=False)
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

    def _embed(self, frames: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """frames [B, T, 1, 3, H, W] -> (embeddings [B, T, E], per-stage maps [B*T, C_i, h_i, w_i])."""
        x = rearrange(frames, "b t 1 c h w -> (b t) c h w")
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        embeds, maps = self.encoder.forward_maps(x)
        return rearrange(embeds, "(b t) e -> b t e", b=frames.shape[0]), maps

    def _render(self, features: torch.Tensor, images: torch.Tensor, maps: list[torch.Tensor],
                reference_index: torch.Tensor, age: torch.Tensor, yaw: torch.Tensor) -> torch.Tensor:
        """Decode features [N, F] against references picked from a flat image stack.

        images [M, 3, H, W] and maps (per stage [M, ...]) hold candidate references;
        reference_index [N] picks one per feature; age [N] and yaw [N] (the ego's turn since the
        reference, rad) -> frames [N, 3, H, W].
        """
        return self.decoder(features, images[reference_index], [m[reference_index] for m in maps], age,
                            self._turn_flow(yaw))

    def _imagined_turn(self, actions: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Heading change into each imagined step, [B, H] rad: the `yaw_rate` action (the vehicle's
        measured yaw rate) times the step time when there is one, else the ego-motion head's yaw.

        actions [B, H, A] (row h leads into imagined step h); features [B, H, F] of the imagined states.
        """
        turn = commanded_turn(actions, self.action_names, self.fps)
        return turn if turn is not None else self.ego_head(features)[..., 2].detach()

    def _turn_flow(self, yaw: torch.Tensor) -> torch.Tensor | None:
        """yaw [N] rad -> [N, 2, H, W]: the flow of the camera turning by `yaw` (None: no prior)."""
        if not self.turn_prior:
            return None
        return rotation_flow(self.intrinsics, self.ego_from_camera, yaw.detach(), self.image_size)

    @staticmethod
    def _prev_actions(actions: torch.Tensor) -> torch.Tensor:
        """[B, T, A] actions taken at each step -> [B, T, A] actions that led into each step.

        Row t becomes actions[:, t-1]; row 0 is zero (the window's start, as DreamerV3's first step).
        """
        return F.pad(actions[:, :-1], (0, 0, 1, 0))

    def losses(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """World-model loss: batch -> (total, named terms).

        Teacher-forced terms (DreamerV3): image, kl_dyn, kl_rep, ego, hazard. Open-loop terms:
        open_loop_image, open_loop_ego (imagined from step context_steps - 1 with the true
        actions; zero when the window is not longer than the context). Also total (the weighted
        sum) and kl_dyn_raw, kl_rep_raw (before free bits).
        """
        frames, actions, cfg = batch["frames"], batch["actions"], self.config
        self._check_frames(frames, actions)
        batch_size, steps = frames.shape[:2]
        images = rearrange(frames, "b t 1 c h w -> (b t) c h w")
        embeds, maps = self._embed(frames)
        post, prior = self.rssm.observe(embeds, self._prev_actions(actions))
        features = post.feature()  # [B, T, F]

        # Teacher forcing: frame t is rendered from a reference 1..max_reference_age steps back.
        time = torch.arange(steps, device=frames.device).expand(batch_size, steps)
        back = torch.randint(1, cfg.max_reference_age + 1, (batch_size, steps), device=frames.device)
        reference_step = (time - back).clamp(min=0)
        offsets = torch.arange(batch_size, device=frames.device)[:, None] * steps  # row b starts at b*T
        heading = pose_heading(batch["ego"])  # [B, T] true yaw of each step
        turn = heading - heading.gather(1, reference_step)
        recon = self._render(rearrange(features, "b t f -> (b t) f"), images, maps,
                             (offsets + reference_step).flatten(), (time - reference_step).flatten(), turn.flatten())
        kl, terms = kl_loss(post.logits, prior.logits, cfg.free_bits, cfg.kl_dyn_scale, cfg.kl_rep_scale)
        terms["image"] = image_loss(recon, images)
        terms["ego"] = ego_loss(self.ego_head(features), batch["ego"])
        terms["hazard"] = hazard_loss(self.hazard_head(features), batch["hazard"])

        # Open loop: imagine the steps after the context and render them against its last frame.
        context = cfg.context_steps
        zero = features.new_zeros(())
        terms["open_loop_image"], terms["open_loop_ego"] = zero, zero
        if steps > context:
            imagined = self.rssm.imagine(post[:, context - 1], actions[:, context - 1 : steps - 1])  # [B, T-C]
            horizon = steps - context
            ages = torch.arange(1, horizon + 1, device=frames.device).repeat(batch_size)
            imagined_motion = self.ego_head(imagined.feature())  # [B, T-C, 3]
            turn = self._imagined_turn(actions[:, context - 1 : steps - 1], imagined.feature()).cumsum(1)  # as `imagine`
            predicted = self._render(rearrange(imagined.feature(), "b h f -> (b h) f"), images, maps,
                                     (offsets + context - 1).repeat_interleave(horizon, 0).flatten(), ages,
                                     turn.flatten())
            terms["open_loop_image"] = image_loss(predicted, rearrange(frames[:, context:], "b h 1 c x y -> (b h) c x y"))
            truth = pose_deltas(batch["ego"])[:, context - 1 :]  # motion into each imagined step: [B, T-C, 3]
            terms["open_loop_ego"] = (imagined_motion - truth).square().sum(-1).mean()
        total = (cfg.image_scale * terms["image"] + kl + cfg.ego_scale * terms["ego"]
                 + cfg.hazard_scale * terms["hazard"]
                 + cfg.open_loop_scale * (cfg.image_scale * terms["open_loop_image"] + cfg.ego_scale * terms["open_loop_ego"]))
        terms["total"] = total
        return total, terms

    # ---- Lightning hooks (training_step: WorldModelTrainingHooks) -----------------------
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
        return adamw_warmup_cosine(self, cfg.lr, cfg.weight_decay, cfg.warmup_steps, cfg.lr_final_fraction, cfg.adam_eps)

    # ---- rollout interface (lightning_wm.models.rollout.RolloutModel) ------------------
    def observe(self, frames: torch.Tensor, actions: torch.Tensor,
                generator: torch.Generator | None = None) -> SingleCamState:
        """frames [B, T, 1, 3, H, W], actions [B, T, A] -> state after step T-1 ([B]), whose
        reference is frame T-1."""
        self._check_frames(frames, actions)
        embeds, maps = self._embed(frames)
        post, _ = self.rssm.observe(embeds, self._prev_actions(actions), generator=generator)
        steps = frames.shape[1]
        last = [rearrange(m, "(b t) c h w -> b t c h w", t=steps)[:, -1] for m in maps]
        age = torch.zeros(frames.shape[0], dtype=torch.long, device=frames.device)
        return SingleCamState(post[:, -1], frames[:, -1, 0], last, age, torch.zeros_like(age, dtype=torch.float))

    def imagine(self, state: SingleCamState, actions: torch.Tensor,
                generator: torch.Generator | None = None) -> SingleCamState:
        """state [B], actions [B, H, A] (actions[:, 0] taken in `state`'s step) -> states [B, H]."""
        latent = self.rssm.imagine(state.latent, actions, generator)
        steps = torch.arange(1, actions.shape[1] + 1, device=actions.device)
        yaw = state.yaw[:, None] + self._imagined_turn(actions, latent.feature()).cumsum(1)  # the imagined turn
        return SingleCamState(latent, state.reference, state.reference_maps, state.age[:, None] + steps, yaw)

    def decode(self, states: SingleCamState) -> torch.Tensor:
        """states [B, H] -> frames [B, H, 1, 3, h, w] in [0, 1]."""
        batch, horizon = states.age.shape
        index = torch.arange(batch, device=states.age.device).repeat_interleave(horizon)
        images = self._render(rearrange(states.latent.feature(), "b t f -> (b t) f"), states.reference,
                              states.reference_maps, index, states.age.flatten(), states.yaw.flatten())
        return rearrange(images, "(b t) c h w -> b t 1 c h w", b=batch).clamp(0, 1)

    def perturb(self, state: SingleCamState, eps: float, generator: torch.Generator | None = None) -> SingleCamState:
        """Gaussian noise of std eps on deter; each categorical replaced at random with probability eps.

        eps=0 returns `state` itself.
        """
        if eps == 0:
            return state
        return SingleCamState(self.rssm.perturb(state.latent, eps, generator), state.reference,
                              state.reference_maps, state.age, state.yaw)

    def ego_motion(self, states: SingleCamState) -> torch.Tensor:
        """states [B, H] -> [B, H, 3]: [dx m, dy m, dyaw rad] from step h-1 into step h."""
        return self.ego_head(states.latent.feature())

    def hazard_logits(self, states: SingleCamState) -> torch.Tensor:
        """states [B, H] -> [B, H] hazard logits."""
        return self.hazard_head(states.latent.feature())
