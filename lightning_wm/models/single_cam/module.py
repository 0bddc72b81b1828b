"""`SingleCamWorldModel`: the DreamerV3-style single-camera world model as a LightningModule.

This file holds the named loss terms and the rollout interface; the training step, validation,
loss scales and optimiser are every world model's (`models/world_model.py`), and the networks
live in `models/nn/` (`encoders.py`, `rssm.py`, `warp_decoder.py`, `heads.py`). Frames are float
in [0, 1].

Two choices differ from DreamerV3, both for video prediction rather than control:
- the image decoder renders a frame by warping a *reference* frame (the last observed one when
  imagining) instead of painting it from the latent alone (see `warp_decoder.py`); in
  teacher-forced training the reference is a random 1..`max_reference_age` steps back. Given the
  camera's calibration (`rig`, read from the manifest by `lwm fit`), the warp starts from the
  rotation homography of the ego's turn since the reference (`model.turn_prior`; the true poses
  in teacher forcing; in rollouts the integrated `yaw_rate` action when the actions have one, else
  the ego-motion head's yaw), so imagined video turns the way it is steered;
- besides DreamerV3's teacher-forced losses, an *open-loop* term imagines the last
  `T - context_steps` steps of each window from the posterior at `context_steps - 1` with the
  true actions and scores the decoded frames (and ego motion) against the real ones, so the
  dynamics are trained on the task the model is evaluated on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange

from datamodules.batch import Batch
from lightning_wm.geometry import pose_heading, rotation_flow
from lightning_wm.models.nn.encoders import ImageEncoder
from lightning_wm.models.nn.rssm import RSSM, RSSMState, no_noise
from lightning_wm.models.nn.warp_decoder import WarpDecoder, image_loss
from lightning_wm.models.single_cam.config import SingleCamConfig
from lightning_wm.models.world_model import BEV_MAP_STAGE, WorldModel
from sharding.errors import ConfigError


@dataclass
class SingleCamState:
    """Rollout state: the latent plus the reference frame the decoder warps.

    latent:         `RSSMState`, leading dims [B] (one step) or [B, H] (imagined steps)
    reference:      [B, 3, H, W] the last observed frame, in [0, 1]
    reference_maps: the encoder's stage outputs of `reference` (see `ImageEncoder.forward_maps`)
    age:            [B] or [B, H] int64, steps between the reference and each state
    yaw:            [B] or [B, H] the ego's heading at each state relative to the reference's, rad
                    (the turn prior's: commanded)
    pose:           [B, 3] or [B, H, 3] the ego's pose in the reference's frame (x, y, yaw), from the
                    ego-motion head: where the BEV head looks in the reference frame
    """

    latent: RSSMState
    reference: torch.Tensor
    reference_maps: list[torch.Tensor]
    age: torch.Tensor
    yaw: torch.Tensor
    pose: torch.Tensor

    def at(self, step: int) -> SingleCamState:
        """The state of imagined step `step` of states [B, H] -> one state [B] (to imagine on from it)."""
        return replace(self, latent=self.latent[:, step], age=self.age[:, step], yaw=self.yaw[:, step],
                       pose=self.pose[:, step])


class SingleCamWorldModel(WorldModel):
    """RSSM world model on one camera: `SingleCamWorldModel(config, action_names, image_size, rig, fps)`.

    See `WorldModel` for the arguments; `rig` holds the one camera the model reads (without it
    there is no turn prior). Batches are `datamodules.batch.Batch` with V=1 view.
    """

    family = "single_cam"
    config_class = SingleCamConfig

    def __init__(self, config: SingleCamConfig | dict[str, Any], action_names: list[str],
                 image_size: tuple[int, int] | list[int], rig: list[dict[str, Any]] | None = None,
                 fps: float | None = None) -> None:
        super().__init__(config, action_names, image_size, rig, fps)
        if self.rig is not None and len(self.rig) != 1:
            raise ConfigError(f"SingleCamWorldModel reads one camera, the rig has {[c['name'] for c in self.rig]}; "
                              "set data.cameras to one camera, or use model=multicam")
        size = self.size
        self.encoder = ImageEncoder(size.cnn_depth, self.image_size)
        self.rssm = RSSM(self.encoder.embed_dim, len(self.action_names), size.deter, size.stoch, size.classes,
                         size.units, unimix=self.config.unimix)
        self.decoder = WarpDecoder(size.feature_dim, size.cnn_depth, self.image_size)
        self.init_heads()
        if self.config.channels_last:
            self.encoder.to(memory_format=torch.channels_last)
            self.decoder.to(memory_format=torch.channels_last)
        if self.config.compile:
            # In place, so state_dict keys stay the same with and without compile. The RSSM is
            # left eager: its time loop of small matmuls gains little and recompiles per length.
            for net in (self.encoder, self.decoder, self.ego_head, self.hazard_head):
                net.compile()
        self.turn_prior = self.config.turn_prior and self.rig is not None
        if self.turn_prior:  # calibration at the model's image size; not weights (persistent=False)
            self.register_buffer("intrinsics", torch.tensor(self.rig[0]["intrinsics"]), persistent=False)
            self.register_buffer("ego_from_camera", torch.tensor(self.rig[0]["ego_from_camera"]), persistent=False)

    # ---- shared pieces ----------------------------------------------------------------
    def check_batch(self, frames: torch.Tensor, actions: torch.Tensor) -> None:
        if frames.shape[2] != 1:
            raise ConfigError(f"SingleCamWorldModel reads one camera but the batch has V={frames.shape[2]} views; "
                              "set data.cameras to one camera, e.g. [CAM_FRONT]")
        super().check_batch(frames, actions)

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

    def loss_terms(self, batch: Batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Unscaled loss terms (`WorldModelConfig.loss_scales` names them) and the KL diagnostics.

        Teacher-forced terms (DreamerV3's, and the BEV head's): image, kl_dyn, kl_rep, ego, hazard,
        bev. Open-loop terms: open_loop_image, open_loop_ego, open_loop_bev (imagined from step
        context_steps - 1 with the true actions; zero when the window is not longer than the context).
        """
        frames, actions, cfg = batch["frames"], batch["actions"], self.config
        self.check_batch(frames, actions)
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
        terms, diagnostics = self.kl_terms(post.logits, prior.logits)
        terms["image"] = image_loss(recon, images)
        bev_maps = rearrange(maps[BEV_MAP_STAGE], "(b t) c h w -> b t 1 c h w", b=batch_size)  # each step's own frame
        terms |= self.head_terms(features, batch, bev_maps)

        # Open loop: imagine the steps after the context and render them against its last frame.
        context = cfg.context_steps
        zero = features.new_zeros(())
        terms["open_loop_image"], terms["open_loop_ego"], terms["open_loop_bev"] = zero, zero, zero
        if steps > context:
            imagined = self.rssm.imagine(post[:, context - 1], actions[:, context - 1 : steps - 1])  # [B, T-C]
            horizon = steps - context
            ages = torch.arange(1, horizon + 1, device=frames.device).repeat(batch_size)
            turn = self.imagined_turn(actions[:, context - 1 : steps - 1], imagined.feature()).cumsum(1)  # as `imagine`
            predicted = self._render(rearrange(imagined.feature(), "b h f -> (b h) f"), images, maps,
                                     (offsets + context - 1).repeat_interleave(horizon, 0).flatten(), ages,
                                     turn.flatten())
            terms["open_loop_image"] = image_loss(predicted, rearrange(frames[:, context:], "b h 1 c x y -> (b h) c x y"))
            last = bev_maps[:, context - 1 : context].expand(-1, horizon, -1, -1, -1, -1)  # reference: last context frame
            terms |= self.open_loop_terms(imagined.feature(), batch, context, last)
        return terms, diagnostics

    # ---- rollout interface (lightning_wm.models.rollout.RolloutModel) ------------------
    def head_features(self, states: SingleCamState) -> torch.Tensor:
        return states.latent.feature()

    def bev_inputs(self, states: SingleCamState) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference frame's map [B, (H,) 1, C, h, w] and the pose in its frame [B, (H,) 3]."""
        reference = states.reference_maps[BEV_MAP_STAGE]  # [B, C, h, w]
        if states.age.dim() == 2:  # imagined steps share the reference
            reference = reference[:, None].expand(-1, states.age.shape[1], -1, -1, -1)
        return reference.unsqueeze(-4), states.pose

    def observe(self, frames: torch.Tensor, actions: torch.Tensor,
                generator: torch.Generator | None = None) -> SingleCamState:
        """frames [B, T, 1, 3, H, W], actions [B, T, A] -> state after step T-1 ([B]), whose
        reference is frame T-1."""
        self.check_batch(frames, actions)
        embeds, maps = self._embed(frames)
        post, _ = self.rssm.observe(embeds, self._prev_actions(actions), generator=generator)
        steps = frames.shape[1]
        last = [rearrange(m, "(b t) c h w -> b t c h w", t=steps)[:, -1] for m in maps]
        age = torch.zeros(frames.shape[0], dtype=torch.long, device=frames.device)
        return SingleCamState(post[:, -1], frames[:, -1, 0], last, age, torch.zeros_like(age, dtype=torch.float),
                              frames.new_zeros(frames.shape[0], 3))

    def imagine(self, state: SingleCamState, actions: torch.Tensor,
                generator: torch.Generator | None = None) -> SingleCamState:
        """state [B], actions [B, H, A] (actions[:, 0] taken in `state`'s step) -> states [B, H]."""
        latent = self.rssm.imagine(state.latent, actions, generator)
        steps = torch.arange(1, actions.shape[1] + 1, device=actions.device)
        yaw = state.yaw[:, None] + self.imagined_turn(actions, latent.feature()).cumsum(1)  # the imagined turn
        return SingleCamState(latent, state.reference, state.reference_maps, state.age[:, None] + steps, yaw,
                              self.imagined_pose(latent.feature(), state.pose))

    def decode(self, states: SingleCamState) -> torch.Tensor:
        """states [B, H] -> frames [B, H, 1, 3, h, w] in [0, 1]."""
        batch, horizon = states.age.shape
        index = torch.arange(batch, device=states.age.device).repeat_interleave(horizon)
        images = self._render(rearrange(states.latent.feature(), "b t f -> (b t) f"), states.reference,
                              states.reference_maps, index, states.age.flatten(), states.yaw.flatten())
        return rearrange(images, "(b t) c h w -> b t 1 c h w", b=batch).clamp(0, 1)

    def perturb(self, state: SingleCamState, eps: float | torch.Tensor, generator: torch.Generator | None = None) -> SingleCamState:
        """Gaussian noise of std eps on deter; each categorical replaced at random with probability eps.

        eps=0 returns `state` itself.
        """
        if no_noise(eps):
            return state
        return replace(state, latent=self.rssm.perturb(state.latent, eps, generator))
