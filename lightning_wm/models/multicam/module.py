"""`MultiCamWorldModel`: a world model of every camera of the rig at once, views kept consistent.

This file holds the named loss terms, the cross-view validation scores and the rollout
interface; the training step, validation, loss scales and optimiser are every world model's
(`models/world_model.py`). The networks: `models/nn/encoders.py` (one encoder shared by all
views), `nn/camera_embedding.py` (calibration -> camera embeddings), `nn/attention.py` (attention
between views), `dynamics.py` here (per-view RSSM mixed across views each step),
`nn/warp_decoder.py` (per-view decoding against that view's last observed frame) and
`nn/heads.py` (ego motion and hazard on the mean over views); the rollout state and each view's
reference bookkeeping are in `state.py`.
Frames are float in [0, 1], `[B, T, V, 3, H, W]`; V comes from the data (3 synthetic, 6 nuScenes,
5 Waymo) and the same weights run on any rig.

Missing cameras: `observe(..., view_mask=[B, V] or [B, T, V])` hides views. A hidden view is
not attended to, takes its prior as its latent, and is decoded against its last observed frame
(or a grey frame when it was never seen); the returned state's `degraded` [B, V] bool is True
for views not observed at the last context step, so their predictions can be flagged. Training
hides whole views at random (`view_dropout`) so the model learns to fill them in.

Turn prior (`turn_prior`, as in the single-camera model): each view's warp starts from the
rotation homography of the ego's turn since that view's reference frame, from the view's own
calibration (`geometry.rotation_flow`); the turn comes from the true poses in teacher forcing and
from the integrated `yaw_rate` action (else the ego-motion head) in rollouts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from datamodules.batch import Batch
from lightning_wm.geometry import pose_heading, rotation_flow
from lightning_wm.metrics.cross_view import view_disagreement
from lightning_wm.models.cameras import MIN_VIEWS, check_batch_calibration, match_cameras, rig_tensors
from lightning_wm.models.multicam.config import MultiCamConfig
from lightning_wm.models.multicam.dynamics import MultiViewRSSM
from lightning_wm.models.multicam.state import (
    GREY,
    MultiCamState,
    last_observed,
    reference_index_and_age,
    turn_since_seen,
)
from lightning_wm.models.nn.attention import CrossViewAttention, mean_over_views
from lightning_wm.models.nn.camera_embedding import CameraEmbedding
from lightning_wm.models.nn.encoders import ImageEncoder
from lightning_wm.models.nn.rssm import no_noise
from lightning_wm.models.nn.warp_decoder import WarpDecoder, image_loss
from lightning_wm.models.world_model import BEV_MAP_STAGE, PSNR_KINDS, WorldModel, commanded_turn
from sharding.errors import ConfigError

# logged as val/xview_h<k>/model (predicted frames) and val/xview_h<k>/ground_truth (the floor)
XVIEW_KINDS = {"xview": ("xview", "model"), "xview_gt": ("xview", "ground_truth")}


class MultiCamWorldModel(WorldModel):
    """`MultiCamWorldModel(config, action_names, image_size, rig, fps)` (see `WorldModel`).

    rig: the cameras the model is trained on, in batch order (at least two); used when a caller
    passes no calibration, and to refuse data with unknown cameras.
    """

    family = "multicam"
    config_class = MultiCamConfig
    min_views = MIN_VIEWS
    score_kinds = PSNR_KINDS | XVIEW_KINDS

    def __init__(self, config: MultiCamConfig | dict[str, Any], action_names: list[str],
                 image_size: tuple[int, int] | list[int], rig: list[dict[str, Any]], fps: float | None = None) -> None:
        super().__init__(config, action_names, image_size, rig, fps)
        self.camera_names = [c["name"] for c in self.rig]
        self.active = list(range(len(self.rig)))  # rig views the data has, in data order (`use_cameras`)
        cfg, size = self.config, self.size
        self.encoder = ImageEncoder(size.cnn_depth, self.image_size)
        channels, token_h, token_w = self.encoder.out_shape
        for what, width in (("encoder tokens", channels), ("latent tokens", size.units)):
            if width % cfg.attention_heads:
                raise ConfigError(f"model.attention_heads={cfg.attention_heads} does not divide the {what}' width "
                                  f"{width} (size {cfg.size}); choose a divisor such as 4")
        self.camera = CameraEmbedding(self.image_size, (token_h, token_w), channels, cfg.camera_dim, size.units)
        self.missing_token = nn.Parameter(torch.zeros(channels))  # stands in for a hidden view's image tokens
        self.fuse = CrossViewAttention(channels, cfg.attention_heads)
        self.dynamics = MultiViewRSSM(self.encoder.embed_dim, len(self.action_names), cfg.camera_dim, size,
                                      cfg.attention_heads, cfg.unimix)
        self.decoder = WarpDecoder(size.feature_dim + cfg.camera_dim, size.cnn_depth, self.image_size)
        self.init_heads()
        intrinsics, ego_from_camera = rig_tensors(self.rig)
        self.register_buffer("rig_intrinsics", intrinsics, persistent=False)
        self.register_buffer("rig_ego_from_camera", ego_from_camera, persistent=False)

    # ---- rig ---------------------------------------------------------------------------
    def use_cameras(self, names: list[str]) -> MultiCamWorldModel:
        """Run on data with cameras `names` (a subset of the rig, any order) when no calibration is passed."""
        self.active = match_cameras(self.camera_names, list(names))
        return self

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trained = [c["name"] for c in checkpoint.get("hyper_parameters", {}).get("rig", [])]
        if trained:
            match_cameras(trained, self.camera_names)  # refuses data cameras the checkpoint never saw

    def _calibration(self, frames: torch.Tensor, intrinsics: torch.Tensor | None,
                     ego_from_camera: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked calibration [B, V, 3, 3], [B, V, 4, 4]: the given one, else the active rig."""
        batch, views = frames.shape[0], frames.shape[2]
        active = [self.camera_names[i] for i in self.active]
        names = active if views == len(active) else [f"view{i}" for i in range(views)]  # for error messages
        if views < MIN_VIEWS:
            raise ConfigError(f"the multi-camera model got {views} camera(s) {names}; it needs at least {MIN_VIEWS} "
                              f"(trained on {self.camera_names}); use model=single_cam for one camera")
        if intrinsics is None and ego_from_camera is None:
            if views != len(active):
                raise ConfigError(f"frames have {views} views but the model's cameras are {active}; pass intrinsics= "
                                  "and ego_from_camera= for another rig, or call use_cameras(names)")
            intrinsics = self.rig_intrinsics[self.active].expand(batch, -1, -1, -1)
            ego_from_camera = self.rig_ego_from_camera[self.active].expand(batch, -1, -1, -1)
        check_batch_calibration(intrinsics, ego_from_camera, names)
        return intrinsics, ego_from_camera

    # ---- shared pieces -----------------------------------------------------------------
    def _encode(self, frames: torch.Tensor, camera_tokens: torch.Tensor,
                observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Encode every view and let the views' tokens attend to each other.

        frames [B, T, V, 3, H, W], camera_tokens [B, V, h*w, C], observed [B, T, V] ->
        (embeds [B, T, V, E], images [N+1, 3, H, W], maps per stage [N+1, ...]) with N = B*T*V in
        (b t v) order and a grey frame appended at index N (the reference of unseen views).
        """
        batch, steps, views = frames.shape[:3]
        images = torch.cat([rearrange(frames, "b t v c h w -> (b t v) c h w"),
                            frames.new_full((1, *frames.shape[3:]), GREY)])
        _, maps = self.encoder.forward_maps(images)
        _, token_h, token_w = self.encoder.out_shape
        tokens = rearrange(maps[-1][:-1], "(b t v) c h w -> b t v (h w) c", b=batch, t=steps)
        tokens = torch.where(observed[..., None, None], tokens, self.missing_token)
        position = repeat(camera_tokens, "b v l c -> (b t) (v l) c", t=steps)
        present = repeat(observed, "b t v -> (b t) (v l)", l=token_h * token_w)
        fused = self.fuse(rearrange(tokens, "b t v l c -> (b t) (v l) c"), position, present)
        embeds = rearrange(fused, "(b t) (v h w) c -> b t v (c h w)", b=batch, v=views, h=token_h)
        return embeds, images, maps

    def _render(self, features: torch.Tensor, views: torch.Tensor, images: torch.Tensor, maps: list[torch.Tensor],
                index: torch.Tensor, age: torch.Tensor, turn: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """features [N, F], camera embeddings [N, Cv], candidate references images [M, 3, H, W] and
        maps, index [N] into them, age [N], turn = (yaw [N] rad since the reference, intrinsics
        [N, 3, 3], ego_from_camera [N, 4, 4]) of each view -> frames [N, 3, H, W]."""
        yaw, intrinsics, ego_from_camera = turn
        flow = (rotation_flow(intrinsics, ego_from_camera, yaw.detach(), self.image_size)
                if self.config.turn_prior else None)
        return self.decoder(torch.cat([features, views], -1), images[index], [m[index] for m in maps], age, flow)

    def _view_dropout(self, batch: int, steps: int, views: int, device: torch.device) -> torch.Tensor:
        """observed [B, T, V]: in training each view is hidden for the whole window with
        probability `view_dropout`, keeping at least one view per window."""
        keep = torch.ones(batch, views, dtype=torch.bool, device=device)
        if self.training and self.config.view_dropout > 0:
            keep = torch.rand(batch, views, device=device) >= self.config.view_dropout
            rescue = torch.randint(views, (batch,), device=device)  # the view kept when all were dropped
            keep[torch.arange(batch, device=device), rescue] |= ~keep.any(1)
        return keep[:, None].expand(batch, steps, views)

    def _mode(self) -> bool:
        return not self.training and self.config.eval_latent == "mode"

    # ---- training ----------------------------------------------------------------------
    def loss_terms(self, batch: Batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The single-camera model's unscaled terms (`WorldModelConfig.loss_scales`), with images
        averaged over views and KL over views and steps; and the KL diagnostics."""
        frames, actions, cfg = batch["frames"], batch["actions"], self.config
        self.check_batch(frames, actions)
        intrinsics, ego_from_camera = self._calibration(frames, batch.get("intrinsics"), batch.get("ego_from_camera"))
        batch_size, steps, views = frames.shape[:3]
        device = frames.device
        observed = self._view_dropout(batch_size, steps, views, device)
        camera_tokens, view_embeds = self.camera(intrinsics, ego_from_camera)
        embeds, images, maps = self._encode(frames, camera_tokens, observed)
        prev_actions = F.pad(actions[:, :-1], (0, 0, 1, 0))  # row t: the action into step t (0 at the start)
        post, prior = self.dynamics.observe(embeds, prev_actions, view_embeds, observed)
        features = post.feature()  # [B, T, V, F]
        flat_views = repeat(view_embeds, "b v c -> (b t v) c", t=steps)

        # Teacher forcing: frame t of view v is rendered from its latest seen frame 1..max_reference_age steps back.
        seen = last_observed(observed)
        time = torch.arange(steps, device=device)[None, :, None].expand(batch_size, steps, views)
        back = (time - torch.randint(1, cfg.max_reference_age + 1, time.shape, device=device)).clamp(min=0)
        reference_step = seen.gather(1, back)  # [B, T, V], -1: the grey frame
        index, age = reference_index_and_age(reference_step, time, steps, views, cfg.max_reference_age)
        heading = pose_heading(batch["ego"])[..., None]  # [B, T, 1] true yaw of each step
        since = heading - heading.expand(-1, -1, views).gather(1, reference_step.clamp(min=0))  # [B, T, V]
        calibration = (repeat(intrinsics, "b v i j -> (b t v) i j", t=steps),
                       repeat(ego_from_camera, "b v i j -> (b t v) i j", t=steps))
        recon = self._render(rearrange(features, "b t v f -> (b t v) f"), flat_views, images, maps,
                             index.flatten(), age.flatten(), (since.flatten(), *calibration))
        terms, diagnostics = self.kl_terms(post.logits, prior.logits)
        terms["image"] = image_loss(recon, images[:-1])
        # the BEV head reads each view's latest seen frame (its own at an observed step), in rig slots
        seen_index, seen_age = reference_index_and_age(seen, time, steps, views, cfg.max_reference_age)
        bev_maps, _ = self._rig_slots(maps[BEV_MAP_STAGE][seen_index], seen_age)  # [B, T, V, C, h, w]
        terms |= self.head_terms(mean_over_views(features), batch, bev_maps)

        context = cfg.context_steps
        zero = features.new_zeros(())
        terms["open_loop_image"], terms["open_loop_ego"], terms["open_loop_bev"] = zero, zero, zero
        if steps > context:
            horizon = steps - context
            imagined = self.dynamics.imagine(post[:, context - 1], actions[:, context - 1 : steps - 1], view_embeds)
            ahead = torch.arange(context, steps, device=device)[None, :, None]  # [1, H, 1]
            last_seen = seen[:, context - 1]  # [B, V] each view's reference step
            index, age = reference_index_and_age(last_seen[:, None].expand(-1, horizon, -1), ahead, steps, views,
                                                 cfg.max_reference_age)
            # turn since the reference: true up to the last context step, then as `imagine` integrates it
            observed_turn = heading[:, context - 1] - heading[..., 0].gather(1, last_seen.clamp(min=0))  # [B, V]
            turn = self.imagined_turn(actions[:, context - 1 : steps - 1], mean_over_views(imagined.feature())).cumsum(1)  # [B, H]
            predicted = self._render(rearrange(imagined.feature(), "b h v f -> (b h v) f"),
                                     repeat(view_embeds, "b v c -> (b h v) c", h=horizon), images, maps,
                                     index.flatten(), age.flatten(),
                                     ((observed_turn[:, None] + turn[..., None]).flatten(),
                                      repeat(intrinsics, "b v i j -> (b h v) i j", h=horizon),
                                      repeat(ego_from_camera, "b v i j -> (b h v) i j", h=horizon)))
            truth_frames = rearrange(frames[:, context:], "b h v c x y -> (b h v) c x y")
            terms["open_loop_image"] = image_loss(predicted, truth_frames)
            terms |= self.open_loop_terms(mean_over_views(imagined.feature()), batch, context,
                                          self._rig_slots(maps[BEV_MAP_STAGE][index], age)[0])
        return terms, diagnostics

    def observe_context(self, batch: Batch, context: int, generator: torch.Generator | None = None) -> MultiCamState:
        return self.observe(batch["frames"][:, :context], batch["actions"][:, :context], generator,
                            intrinsics=batch["intrinsics"], ego_from_camera=batch["ego_from_camera"])

    def extra_scores(self, batch: Batch, predicted: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-view disagreement of the predicted frames and of the true ones (its floor), [B, H];
        NaN for a rig without overlapping views."""
        calibration = (batch["intrinsics"], batch["ego_from_camera"], self.config.xview_max_distance_m)
        return {"xview": view_disagreement(predicted, *calibration), "xview_gt": view_disagreement(target, *calibration)}

    def _rig_slots(self, maps: torch.Tensor, age: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-view maps [..., V, C, h, w] and ages [..., V] of the active cameras -> the same in the slots of
        the trained rig (the BEV head has one per camera); a rig camera the data lacks reads as never seen."""
        if len(self.active) == len(self.rig) and self.active == list(range(len(self.rig))):
            return maps, age
        full = maps.new_zeros(*maps.shape[:-4], len(self.rig), *maps.shape[-3:])
        ages = age.new_full((*age.shape[:-1], len(self.rig)), self.config.max_reference_age)
        full[..., self.active, :, :, :], ages[..., self.active] = maps, age
        return full, ages

    def bev_inputs(self, states: MultiCamState) -> tuple[torch.Tensor, torch.Tensor]:
        """Each view's reference frame's map [B, (H,) V, C, h, w] in rig slots, and the pose [B, (H,) 3]."""
        reference = states.reference_maps[BEV_MAP_STAGE]  # [B, V, C, h, w]
        if states.age.dim() == 3:  # imagined steps share the references
            reference = reference[:, None].expand(-1, states.age.shape[1], -1, -1, -1, -1)
        return self._rig_slots(reference, states.age)[0], states.pose

    # ---- rollout interface (lightning_wm.models.rollout.RolloutModel) -------------------
    def observe(self, frames: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None, *,
                intrinsics: torch.Tensor | None = None, ego_from_camera: torch.Tensor | None = None,
                view_mask: torch.Tensor | None = None) -> MultiCamState:
        """frames [B, T, V, 3, H, W], actions [B, T, A] -> state after step T-1 ([B]).

        intrinsics [B, V, 3, 3] / ego_from_camera [B, V, 4, 4]: the rig of `frames` (default: the
        model's rig, see `use_cameras`). view_mask [B, V] or [B, T, V] bool: False where a camera
        is missing (its frames are ignored); such views are predicted anyway, `degraded` marks them.
        """
        self.check_batch(frames, actions)
        intrinsics, ego_from_camera = self._calibration(frames, intrinsics, ego_from_camera)
        batch, steps, views = frames.shape[:3]
        observed = torch.ones(batch, steps, views, dtype=torch.bool, device=frames.device)
        if view_mask is not None:
            mask = view_mask.to(device=frames.device, dtype=torch.bool)
            observed = observed & (mask[:, None] if mask.dim() == 2 else mask)
        camera_tokens, view_embeds = self.camera(intrinsics, ego_from_camera)
        embeds, images, maps = self._encode(frames, camera_tokens, observed)
        prev_actions = F.pad(actions[:, :-1], (0, 0, 1, 0))
        post, _ = self.dynamics.observe(embeds, prev_actions, view_embeds, observed, generator, self._mode())
        seen = last_observed(observed)[:, -1]  # [B, V]
        index, age = reference_index_and_age(seen, steps - 1, steps, views, self.config.max_reference_age)
        # a view hidden at the end: the commanded turn since it was last seen (0 without a yaw_rate action)
        turn = commanded_turn(actions[:, :-1], self.action_names, self.fps)  # [B, T-1]: step t -> t+1
        yaw = turn_since_seen(turn, seen) if turn is not None else frames.new_zeros(batch, views)  # [B, V]
        return MultiCamState(post[:, -1], images[index], [m[index] for m in maps], age, view_embeds, seen != steps - 1,
                             yaw, intrinsics, ego_from_camera, frames.new_zeros(batch, 3))

    def imagine(self, state: MultiCamState, actions: torch.Tensor,
                generator: torch.Generator | None = None) -> MultiCamState:
        """state [B], actions [B, H, A] (actions[:, 0] taken in `state`'s step) -> states [B, H]."""
        latent = self.dynamics.imagine(state.latent, actions, state.views, generator, self._mode())
        ahead = torch.arange(1, actions.shape[1] + 1, device=actions.device)[None, :, None]
        turn = self.imagined_turn(actions, mean_over_views(latent.feature())).cumsum(1)  # [B, H], alike for every view
        fused = mean_over_views(latent.feature())
        return replace(state, latent=latent, age=state.age[:, None] + ahead, yaw=state.yaw[:, None] + turn[..., None],
                       pose=self.imagined_pose(fused, state.pose))

    def decode(self, states: MultiCamState) -> torch.Tensor:
        """states [B, H] -> frames [B, H, V, 3, h, w] in [0, 1]."""
        batch, horizon, views = states.age.shape
        reference = rearrange(states.reference, "b v c h w -> (b v) c h w")
        maps = [rearrange(m, "b v c h w -> (b v) c h w") for m in states.reference_maps]
        index = repeat(torch.arange(batch * views, device=reference.device), "(b v) -> (b h v)", v=views, h=horizon)
        calibration = (repeat(states.intrinsics, "b v i j -> (b h v) i j", h=horizon),
                       repeat(states.ego_from_camera, "b v i j -> (b h v) i j", h=horizon))
        images = self._render(rearrange(states.latent.feature(), "b h v f -> (b h v) f"),
                              repeat(states.views, "b v c -> (b h v) c", h=horizon), reference, maps, index,
                              states.age.flatten(), (states.yaw.flatten(), *calibration))
        return rearrange(images, "(b h v) c x y -> b h v c x y", b=batch, h=horizon).clamp(0, 1)

    def perturb(self, state: MultiCamState, eps: float | torch.Tensor, generator: torch.Generator | None = None) -> MultiCamState:
        """Latent noise of scale eps on every view (see `RSSM.perturb`); eps=0 returns `state` itself."""
        if no_noise(eps):
            return state
        return replace(state, latent=self.dynamics.perturb(state.latent, eps, generator))

    def head_features(self, states: MultiCamState) -> torch.Tensor:
        """The fused state the heads read: the mean over views, [B, H, F]."""
        return mean_over_views(states.latent.feature())
