"""`WorldModel`: the LightningModule every world-model family extends.

What is the same for every family lives here, once:
- the total loss: a family returns named, *unscaled* terms and `config.loss_scales()` weighs them
  (the names must match: DreamerV3's `agent.py` checks the same), so each scale lives in one place;
- the training step and what it logs (`train/loss/<name>`, raw KL, learning rate, gradient norm);
- validation: teacher-forced losses, then open-loop PSNR per horizon against copy-last-frame and
  shuffled actions, with the one PSNR of `lightning_wm.metrics.video`, logged as
  `val/psnr_h<k>/model`, `val/psnr_h<k>/copy_last`, `val/psnr_h<k>/shuffled_actions`;
- the optimiser (AdamW, warmup + cosine), the checks of a batch against the model, and the
  parts of the rollout interface read from the heads (`ego_motion`, `hazard_logits`).
A family (`single_cam/`, `multicam/`) builds its networks, calls `init_heads()` after them, and
implements `loss_terms`, `head_features`, `observe`, `imagine`, `decode` and `perturb`.
Frames are float in [0, 1], `[B, T, V, 3, H, W]`.
"""

from __future__ import annotations

import abc
from dataclasses import asdict
from typing import Any, ClassVar

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric

from datamodules.batch import Batch
from datamodules.bev import BEV_CLASSES, BevGrid
from lightning_wm.geometry import integrate, pose_deltas
from lightning_wm.metrics.bev import BevIoU, fov_mask
from lightning_wm.metrics.video import copy_last_frame, frame_psnr, shuffled_actions
from lightning_wm.models.cameras import check_rig, rig_tensors
from lightning_wm.models.nn.bev import BevHead, bev_loss, compose
from lightning_wm.models.nn.heads import EgoMotionHead, HazardHead, ego_loss, hazard_loss
from lightning_wm.models.nn.rssm import kl_loss
from lightning_wm.models.nn.sizes import get_size
from lightning_wm.models.schedules import adamw_warmup_cosine
from lightning_wm.models.world_model_config import WorldModelConfig
from sharding.errors import ConfigError

# Validation scores per horizon: kind -> (metric, source), logged as `val/<metric>_h<k>/<source>`
# (`score_name`). The MLflow UI (3.17) makes a chart section of what precedes a key's last "/"
# (`RunsChartsCardConfig.extractChartSectionName`), so a horizon's score and its baselines sit together.
PSNR_KINDS: dict[str, tuple[str, str]] = {"psnr": ("psnr", "model"), "psnr_copy_last": ("psnr", "copy_last"),
                                          "psnr_shuffled_actions": ("psnr", "shuffled_actions")}
BEV_MAP_STAGE = 1  # the encoder stage whose map the BEV head samples (1: a quarter of the frame's resolution)


def score_name(metric: str, source: str, horizon: int) -> str:
    """The logged name of a validation score: `val/psnr_h4/copy_last` for ("psnr", "copy_last", 4)."""
    return f"val/{metric}_h{horizon}/{source}"


def commanded_turn(actions: torch.Tensor, action_names: list[str], fps: float | None) -> torch.Tensor | None:
    """Heading change of each step the actions command, [B, H] rad: the `yaw_rate` action
    (rad/s, the vehicle's measured yaw rate) over one step of 1/fps s. actions [B, H, A];
    None when the actions have no yaw_rate or the frame rate is unknown."""
    if "yaw_rate" not in action_names or not fps:
        return None
    return actions[..., action_names.index("yaw_rate")] / fps


class WorldModel(L.LightningModule, abc.ABC):
    """Base of `SingleCamWorldModel` and `MultiCamWorldModel`: `Family(config, action_names, image_size, rig, fps)`.

    config:       the family's config dataclass (`config_class`) or a plain dict of its fields
    action_names: the datamodule's action names, in batch order (e.g. ["speed", "yaw_rate"])
    image_size:   (H, W) of the frames the datamodule yields, e.g. (64, 64)
    rig:          the cameras of the data, in batch order (`cameras.rig_from_manifest`): dicts
                  {name, width, height, intrinsics, ego_from_camera}; kept in the checkpoint
    fps:          the data's frame rate, to integrate a `yaw_rate` action (rad/s) into the turn prior
    """

    family: ClassVar[str] = ""  # the registry's name, stored as hparams["model_family"]
    config_class: ClassVar[type[WorldModelConfig]] = WorldModelConfig
    min_views: ClassVar[int] = 1
    score_kinds: ClassVar[dict[str, tuple[str, str]]] = PSNR_KINDS  # kind -> (metric, source): `score_name`

    def __init__(self, config: WorldModelConfig | dict[str, Any], action_names: list[str],
                 image_size: tuple[int, int] | list[int], rig: list[dict[str, Any]] | None = None,
                 fps: float | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self.config = config if isinstance(config, self.config_class) else self.config_class.from_dict(dict(config))
        if not action_names:
            raise ConfigError(f"{name} needs at least one action name (data.actions is empty)")
        self.action_names = [str(a) for a in action_names]
        self.image_size = (int(image_size[0]), int(image_size[1]))
        # Plain containers only: checkpoints must load with torch.load(weights_only=True).
        self.rig = check_rig(rig, name, self.min_views) if rig or self.min_views > 1 else None
        self.fps = float(fps) if fps else None
        self.save_hyperparameters({"config": asdict(self.config), "action_names": self.action_names,
                                   "image_size": list(self.image_size), "rig": self.rig, "fps": self.fps,
                                   "model_family": self.family})
        self.size = get_size(self.config.size)
        # One metric object per logged score, so DDP reduces them correctly.
        self.val_scores = nn.ModuleDict({f"{kind}_h{h}": MeanMetric() for kind in self.score_kinds
                                         for h in self.config.psnr_horizons})
        # BEV IoU of the observed state at the end of the context and of the imagined ones.
        self.val_bev = nn.ModuleDict({name: BevIoU(len(BEV_CLASSES)) for name in
                                      ["observed", *(f"h{h}" for h in self.config.psnr_horizons)]})
        self.register_buffer("bev_fov", self._bev_fov(), persistent=False)

    def init_heads(self) -> None:
        """The heads on the model feature; called by a family after its own networks (which keeps
        the parameters' initialisation order, and so a seed's model, what it was)."""
        size = self.size
        self.ego_head = EgoMotionHead(size.feature_dim, size.units, size.mlp_layers)
        self.hazard_head = HazardHead(size.feature_dim, size.units, size.mlp_layers)
        self.bev_head: BevHead | None = None  # it projects the grid into the cameras: no rig, no BEV head
        if self.rig is not None:
            grid = self.config.bev
            trunk = BevGrid(grid.x_min, grid.x_max, grid.y_min, grid.y_max, 2 * grid.resolution)
            intrinsics, ego_from_camera = rig_tensors(self.rig)
            self.bev_head = BevHead(size.feature_dim, grid.shape, torch.from_numpy(trunk.cell_centres()), intrinsics,
                                    ego_from_camera, self.image_size, size.cnn_depth * 2**BEV_MAP_STAGE,
                                    size.cnn_depth, len(BEV_CLASSES))
        self.register_buffer("bev_pos_weight", torch.tensor(self.config.bev_pos_weight), persistent=False)

    def _bev_fov(self) -> torch.Tensor:
        """bool [H, W]: the BEV cells validation scores, the rig's field of view up to `bev_iou_range_m`
        (every cell in that range without a rig)."""
        cells = torch.from_numpy(self.config.bev.cell_centres())
        if self.rig is None:
            return cells.norm(dim=-1) <= self.config.bev_iou_range_m
        intrinsics, ego_from_camera = rig_tensors(self.rig)
        return fov_mask(cells, intrinsics, ego_from_camera, self.rig[0]["width"], self.config.bev_iou_range_m)

    # ---- what a family provides ---------------------------------------------------------
    @abc.abstractmethod
    def loss_terms(self, batch: Batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """batch -> (unscaled loss terms named as `config.loss_scales()`, diagnostics logged under
        train/ with a `/` in their name, e.g. `kl/dyn_raw`)."""

    @abc.abstractmethod
    def head_features(self, states: Any) -> torch.Tensor:
        """states [B, H] -> the feature [B, H, F] the ego-motion and hazard heads read."""

    @abc.abstractmethod
    def bev_inputs(self, states: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """What the BEV head reads of states [B, H] (or [B]) besides the latent: the encoder's map
        (stage `BEV_MAP_STAGE`) of each view's reference frame [B, H, V, C, h, w] and the ego's pose
        in the reference's frame [B, H, 3] (x, y, yaw)."""

    @abc.abstractmethod
    def observe(self, frames: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None) -> Any:
        """The rollout interface (`models.rollout.RolloutModel`): observe, imagine, decode, perturb."""

    @abc.abstractmethod
    def imagine(self, state: Any, actions: torch.Tensor, generator: torch.Generator | None = None) -> Any: ...

    @abc.abstractmethod
    def decode(self, states: Any) -> torch.Tensor: ...

    @abc.abstractmethod
    def perturb(self, state: Any, eps: float | torch.Tensor, generator: torch.Generator | None = None) -> Any: ...

    def observe_context(self, batch: Batch, context: int, generator: torch.Generator | None = None) -> Any:
        """The state after the first `context` steps of a batch's windows (a family that needs more
        of the batch than frames and actions, e.g. the calibration, overrides this)."""
        return self.observe(batch["frames"][:, :context], batch["actions"][:, :context], generator=generator)

    def extra_scores(self, batch: Batch, predicted: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Validation scores beyond PSNR ({kind: [B, H]}, NaN where undefined), kinds (keys) of `score_kinds`."""
        return {}

    # ---- losses --------------------------------------------------------------------------
    def kl_terms(self, post_logits: torch.Tensor,
                 prior_logits: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The balanced KL terms (`nn.rssm.kl_loss`, unscaled) and their raw values as diagnostics."""
        terms, raw = kl_loss(post_logits, prior_logits, self.config.free_bits)
        return terms, {"kl/dyn_raw": raw["kl_dyn_raw"], "kl/rep_raw": raw["kl_rep_raw"]}

    def head_terms(self, features: torch.Tensor, batch: Batch, image_maps: torch.Tensor) -> dict[str, torch.Tensor]:
        """Teacher-forced head terms from the posterior's head features [B, T, F]: ego, hazard, and bev
        (its image input: each step's own frames' maps [B, T, V, C, h, w], so the pose is zero)."""
        steps = self.bev_steps(features.shape[1])
        pose = features.new_zeros(features.shape[0], len(steps), 3)
        return {"ego": ego_loss(self.ego_head(features), batch["ego"]),
                "hazard": hazard_loss(self.hazard_head(features), batch["hazard"]),
                "bev": self.bev_term(features[:, steps], image_maps[:, steps], pose, batch, steps)}

    def bev_steps(self, count: int) -> torch.Tensor:
        """Which of `count` steps the BEV loss reads: every `bev_every`-th, ending on the last (BEV
        targets of neighbouring steps are nearly the same; the head costs as much as the rest)."""
        return torch.arange(count - 1, -1, -self.config.bev_every).flip(0)

    def imagined_pose(self, features: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
        """The ego's pose at each imagined step in the reference frame, [B, H, 3]: the ego-motion head's
        motion (detached: the BEV head does not train it) integrated after `start` [B, 3] (default 0)."""
        poses = integrate(self.ego_head(features).detach().float())  # [B, H, 3] in the frame of the first state
        if start is None:
            return poses
        return torch.cat([compose(start, poses[..., :2]), (start[:, 2:3] + poses[..., 2])[..., None]], -1)

    def bev_term(self, features: torch.Tensor, image_maps: torch.Tensor, pose: torch.Tensor, batch: Batch,
                 steps: torch.Tensor) -> torch.Tensor:
        """BEV loss of head features [B, T', F] (and the head's image input, see `bev_inputs`) against the
        batch's BEV targets at `steps` [T'] (window indices); zero for a batch without BEV targets (a
        datamodule built without a grid) or a model without the head."""
        if self.bev_head is None or "bev" not in batch:
            return features.new_zeros(())
        return bev_loss(self.bev_head(features, image_maps, pose), batch["bev"][:, steps], batch["bev_known"],
                        self.bev_pos_weight, self.config.bev_dice)

    def open_loop_terms(self, features: torch.Tensor, batch: Batch, context: int,
                        image_maps: torch.Tensor) -> dict[str, torch.Tensor]:
        """The imagined states' head terms (head features [B, T-C, F]; the BEV head's image input, the
        last observed frames' maps [B, T-C, V, C, h, w]): the squared error of the ego motion they
        predict against the true motion into each imagined step (`pose_deltas` rows C-1 ..), and
        their BEV against the true BEV of those steps."""
        truth = pose_deltas(batch["ego"])[:, context - 1 :]  # [B, T-C, 3]
        steps = self.bev_steps(features.shape[1])
        pose = self.imagined_pose(features)[:, steps]
        return {"open_loop_ego": (self.ego_head(features) - truth).square().sum(-1).mean(),
                "open_loop_bev": self.bev_term(features[:, steps], image_maps[:, steps], pose, batch, context + steps)}

    def losses(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """World-model loss: batch -> (total, terms): every named term, the diagnostics and `total`,
        the sum of each term times its scale in `config.loss_scales()`."""
        terms, diagnostics = self.loss_terms(batch)
        scales = self.config.loss_scales()
        assert set(terms) == set(scales), f"loss terms {sorted(terms)} do not match the scales {sorted(scales)}"
        total = sum(scales[name] * terms[name] for name in scales)
        return total, {**terms, **diagnostics, "total": total}

    def check_batch(self, frames: torch.Tensor, actions: torch.Tensor) -> None:
        """Frames of the model's image size and actions of its width; one line naming the fix otherwise."""
        if tuple(frames.shape[-2:]) != self.image_size:
            raise ConfigError(f"frames are {tuple(frames.shape[-2:])} but the model was built for image_size="
                              f"{self.image_size}; build it with the datamodule's frame size")
        if actions.shape[-1] != len(self.action_names):
            raise ConfigError(f"batch has {actions.shape[-1]} actions but the model was built for "
                              f"{self.action_names}; build it with the datamodule's action_names")

    # ---- Lightning hooks -------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        total, terms = self.losses(batch)
        size = batch["frames"].shape[0]
        self.log_dict({f"train/loss/{name}": terms[name] for name in self.config.loss_scales()}, batch_size=size)
        self.log("train/loss/total", total, prog_bar=True, batch_size=size)
        diagnostics = {f"train/{name}": value for name, value in terms.items() if "/" in name}
        self.log_dict({**diagnostics, "train/lr": self.trainer.optimizers[0].param_groups[0]["lr"]}, batch_size=size)
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
        names = [*self.config.loss_scales(), "total"]
        self.log_dict({f"val/loss/{name}": terms[name] for name in names}, batch_size=size, sync_dist=True)
        if steps <= context:
            return  # no frames left to predict after the context
        target = frames[:, context:]  # [B, T-C, V, 3, H, W]
        future = actions[:, context - 1 : steps - 1]
        state = self.observe_context(batch, context)
        states = self.imagine(state, future)
        predicted = self.decode(states)
        self.update_bev_iou(batch, state, states, context)
        scores = {"psnr": frame_psnr(predicted, target),
                  "psnr_copy_last": frame_psnr(copy_last_frame(frames, context, steps - context), target),
                  **self.extra_scores(batch, predicted, target)}
        if (other := shuffled_actions(future)) is not None:  # every window under another window's actions
            scores["psnr_shuffled_actions"] = frame_psnr(self.open_loop(batch, context, other), target)
        for kind, values in scores.items():  # values: [B, T-C]; NaN where a score is undefined
            for h in self.config.psnr_horizons:
                if h <= steps - context and not bool(values[:, h - 1].isnan().all()):
                    metric = self.val_scores[f"{kind}_h{h}"]
                    metric.update(values[:, h - 1][~values[:, h - 1].isnan()])
                    self.log(score_name(*self.score_kinds[kind], h), metric, batch_size=size)

    def update_bev_iou(self, batch: Batch, state: Any, states: Any, context: int) -> None:
        """BEV IoU of the observed state (after the context) and of the imagined states at each horizon."""
        if self.bev_head is None or "bev" not in batch:
            return
        target, known = batch["bev"], batch["bev_known"]
        self.val_bev["observed"].update(self.bev(state), target[:, context - 1], known, self.bev_fov, logits=True)
        imagined = self.bev(states)  # [B, T-C, C, H, W]
        for h in self.config.psnr_horizons:
            if h <= imagined.shape[1]:
                self.val_bev[f"h{h}"].update(imagined[:, h - 1], target[:, context - 1 + h], known, self.bev_fov,
                                             logits=True)

    def on_validation_epoch_end(self) -> None:
        """val/bev_iou/<class> (observed state) and val/bev_iou_h<k>/<class> (imagined k steps ahead)."""
        for name, metric in self.val_bev.items():
            if metric.update_count:
                prefix = "val/bev_iou" if name == "observed" else f"val/bev_iou_{name}"
                for label, value in zip(BEV_CLASSES, metric.compute()):  # synchronised across DDP ranks
                    if not torch.isnan(value):
                        self.log(f"{prefix}/{label}", value.float())
            metric.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.config
        return adamw_warmup_cosine(self, cfg.lr, cfg.weight_decay, cfg.warmup_steps, cfg.lr_final_fraction, cfg.adam_eps)

    # ---- rollout pieces shared by the families ---------------------------------------------
    def open_loop(self, batch: Batch, context: int, future: torch.Tensor) -> torch.Tensor:
        """Observe `context` steps of the batch, imagine `future` [B, H, A], decode -> [B, H, V, 3, h, w]."""
        return self.decode(self.imagine(self.observe_context(batch, context), future))

    def imagined_turn(self, actions: torch.Tensor, head_features: torch.Tensor) -> torch.Tensor:
        """Heading change into each imagined step, [B, H] rad: the `yaw_rate` action (the vehicle's
        measured yaw rate) times the step time when there is one, else the ego-motion head's yaw.

        actions [B, H, A] (row h leads into imagined step h); head_features [B, H, F] of the imagined states.
        """
        turn = commanded_turn(actions, self.action_names, self.fps)
        return turn if turn is not None else self.ego_head(head_features)[..., 2].detach()

    def ego_motion(self, states: Any) -> torch.Tensor:
        """states [B, H] -> [B, H, 3]: [dx m, dy m, dyaw rad] from step h-1 into step h."""
        return self.ego_head(self.head_features(states))

    def hazard_logits(self, states: Any) -> torch.Tensor:
        """states [B, H] -> [B, H] hazard logits."""
        return self.hazard_head(self.head_features(states))

    def bev(self, states: Any) -> torch.Tensor:
        """states [B, H] (or one state [B]) -> BEV logits [B, H, C, h, w] ([B, C, h, w]) on `config.bev`'s
        grid, channels `datamodules.bev.BEV_CLASSES`: other agents and the drivable area in the ego frame."""
        if self.bev_head is None:
            raise ConfigError(f"this {type(self).__name__} has no BEV head (trained before it existed), so it cannot "
                              "say where other agents and the road are; retrain it with `lwm fit`")
        return self.bev_head(self.head_features(states), *self.bev_inputs(states))
