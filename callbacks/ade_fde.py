"""`AdeFdeCallback`: ADE/FDE of the trajectory a rollout implies, at every validation of `lwm fit`.

For the validation batches each rank sees: observe `context` frames, imagine the horizon with the
true actions and read the implied trajectory exactly as `lwm evaluate` does (one function:
`evaluation.evaluator.open_loop_trajectories`), scored against the true path by the same
torchmetrics `DisplacementError`, reduced across DDP ranks. Logged as `val/ade_<horizon>/<source>`
and `val/fde_<horizon>/<source>`, so a metric and its baselines share one chart in the MLflow UI.

Training windows are short (16 steps by default: 0.8 s imagined after 8 observed), while ADE/FDE is
read at 1, 2 and 3 s. With `own_windows` (the default) and a training window too short for the
horizons, the callback reads validation windows of its own, context + the longest horizon steps
long, from the same val split (each rank its own part, like the datamodule), as `lwm evaluate`
does; otherwise it scores the validation batches themselves, at the horizons that fit.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from callbacks.fixed_clips import data_window, resolve_context
from datamodules.shard_datamodule import ShardDataModule
from lightning_wm.evaluation.evaluator import RolloutSettings, check_inputs, open_loop_trajectories, window_seed
from lightning_wm.metrics.trajectory import DisplacementError, horizon_label, horizon_steps
from lightning_wm.models.rollout import ImpliedMotion, RolloutModel
from sharding.errors import ConfigError

log = logging.getLogger(__name__)
OWNER = "AdeFdeCallback"
DEFAULT_HORIZONS_S = [1.0, 2.0, 3.0]


@dataclass
class AdeFdeConfig:
    """Settings of `AdeFdeCallback` (conf/callbacks/default.yaml `ade_fde`), checked when built."""

    context: int | None = None  # observed frames; null: the model's context_steps, else half the window
    horizons_s: list[float] | None = None  # seconds; null: 1, 2, 3 s where the window allows (else all it allows)
    idm_ckpt: str | None = None  # IDM checkpoint (`lwm fit model=idm`) reading the decoded video; null: ego head only
    max_batches: int | None = None  # validation batches scored per rank and validation run; null: all
    own_windows: bool = True  # read windows of context + longest horizon when the training window is shorter
    seed: int = 0  # latent sampling of the rollouts: the same numbers for the same weights

    def __post_init__(self) -> None:
        for key in ("context", "max_batches"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{OWNER}: {key}={value!r} must be an integer >= 1 or null")
        if self.horizons_s is not None:
            horizons = [float(h) for h in self.horizons_s]  # a ListConfig from Hydra becomes a plain list
            if not horizons or any(not h > 0 for h in horizons):
                raise ConfigError(f"{OWNER}: horizons_s={horizons} must be a non-empty list of seconds > 0, or null")
            self.horizons_s = sorted(set(horizons))


def fitting_horizons(horizons_s: list[float] | None, fps: float, window: int, context: int
                     ) -> tuple[dict[str, int], str | None]:
    """The horizons {label: steps} that a validation window of `window` steps leaves after
    `context` observed ones, and a warning naming the fix when some do not fit (else None).

    horizons_s=None (the default): 1, 2, 3 s where they fit, else the whole imagined part. An
    explicit list of which none fits is refused (ConfigError naming data.window).
    """
    wanted = horizon_steps(horizons_s or DEFAULT_HORIZONS_S, fps)
    available = window - context  # imagined steps
    fits = {label: k for label, k in wanted.items() if k <= available}
    if len(fits) == len(wanted):
        return fits, None
    needed = context + max(wanted.values())
    if not fits and horizons_s is not None:
        raise ConfigError(f"{OWNER}: horizons_s={horizons_s} needs {needed} steps per validation window (context "
                          f"{context} + {max(wanted.values())} at {fps:g} fps), data.window={window} leaves "
                          f"{available} to imagine; set data.window={needed} or shorter horizons_s")
    skipped = [label for label in wanted if label not in fits]
    if not fits:
        fits = {horizon_label(available / fps): available}
    return fits, (f"{OWNER}: data.window={window} with context {context} leaves {available} imagined steps at "
                  f"{fps:g} fps: ADE/FDE at {', '.join(skipped)} skipped, scored at {', '.join(fits)}; "
                  f"set data.window={needed} to score them all")


def load_checked_idm(path: str, data: Any) -> tuple[Any, int]:
    """The frozen IDM of `idm_ckpt` and the view (index in the batch's V axis) it reads, checked
    against the camera and frame rate of the set-up shard datamodule `data`."""
    from lightning_wm.models.cameras import rig_mismatch
    from lightning_wm.models.loading import load_idm

    idm = load_idm(Path(path))
    manifest, cameras = getattr(data, "manifest", None), getattr(data, "camera_names", None)
    if manifest is None or not cameras:
        raise ConfigError(f"{OWNER}: idm_ckpt={path} needs a shard datamodule (camera rig and fps) to check it against")
    view = cameras.index(idm.camera["name"]) if idm.camera["name"] in cameras else 0  # as `lwm evaluate`
    camera = manifest.cameras[manifest.camera_names.index(cameras[view])]
    if (why := rig_mismatch(idm.camera, idm.fps, camera, manifest.fps)) is not None:
        raise ConfigError(f"{OWNER}: idm_ckpt={path} does not fit this data: {why}; train an IDM on this rig "
                          "(`lwm fit model=idm data.path=...`)")
    return idm, view


class AdeFdeCallback(L.Callback):
    """ADE/FDE (metres) per horizon and trajectory source at every validation run (not the sanity check).

    Keyword arguments: the fields of `AdeFdeConfig`. Sources: `ego_head` (the world model's
    ego-motion head on the imagined states); with `idm_ckpt` also `generated` (the IDM reading the
    decoded video), `idm_on_ground_truth` (the IDM on the true frames: the floor) and
    `idm_on_copy_last` (the IDM on a frozen video: what ignoring motion scores).
    """

    def __init__(self, **settings: Any) -> None:
        self.config = AdeFdeConfig(**settings)
        self.active = True
        self.motion = ImpliedMotion()
        self.fps: float | None = None
        self.settings: RolloutSettings | None = None  # known once the window is (setup, or the first batch)
        self.metrics: nn.ModuleDict | None = None  # source -> DisplacementError
        self.scored = 0  # batches scored on this rank in the current validation run
        self.batch_size: int | None = None  # of the run's first batch: the seeds' stride
        self.warned = False
        self.windows: ShardDataModule | None = None  # validation windows of its own (`own_windows`)

    # ---- the work, callable without a Trainer (tests, DDP checks) ---------------------------------
    def resolve(self, model: Any, window: int) -> RolloutSettings:
        """Context and horizons for validation windows of `window` steps; warns once when some
        horizons do not fit, refuses when none does (explicit `horizons_s`)."""
        if self.settings is None:
            context = resolve_context(self.config.context, model, window, OWNER)
            horizons, warning = fitting_horizons(self.config.horizons_s, self.fps, window, context)
            if warning and not self.warned:
                self.warned = True
                rank_zero_warn(warning)
            self.settings = RolloutSettings(context, horizons, tuple(getattr(model, "action_names", ()) or ()))
            try:
                check_inputs(model, self.motion.idm, self.settings, window, "data.window")
            except ConfigError as error:
                raise ConfigError(f"{OWNER}: {error}") from error
            sources = ["ego_head"] + (["generated", "idm_on_ground_truth", "idm_on_copy_last"]
                                      if self.motion.idm is not None else [])
            self.metrics = nn.ModuleDict({s: DisplacementError(horizons) for s in sources})
        return self.settings

    @torch.no_grad()
    def score(self, model: Any, batch: dict[str, torch.Tensor], batch_idx: int, rank: int = 0, world: int = 1) -> None:
        """Roll out one transferred batch (frames [B, T, V, 3, h, w] float, actions [B, T, A], ego
        [B, T, 4, 4]) and update the metrics. The generator of the g-th batch of the run over all
        ranks (g = batch_idx * world + rank) is the Evaluator's for that batch in one process."""
        if self.config.max_batches is not None and self.scored >= self.config.max_batches:
            return
        settings = self.resolve(model, batch["frames"].shape[1])
        self.batch_size = self.batch_size or batch["frames"].shape[0]
        device = batch["frames"].device
        self.metrics.to(device)
        seed = window_seed(self.config.seed, (batch_idx * world + rank) * self.batch_size)
        rollout = open_loop_trajectories(model, self.motion, batch, settings, torch.Generator(device).manual_seed(seed),
                                         decode=False)  # ImpliedMotion decodes when an IDM reads the video
        for source, metric in self.metrics.items():
            metric.update(rollout.paths[source], rollout.truth)
        self.scored += 1

    def compute(self) -> dict[str, torch.Tensor]:
        """{`val/ade_<label>/<source>`: metres} over every rank (a collective: call it on all ranks),
        then reset; horizons no rank scored are left out."""
        values: dict[str, torch.Tensor] = {}
        for source, metric in (self.metrics or {}).items():
            with warnings.catch_warnings():  # a rank that scored nothing still joins the reduction
                warnings.filterwarnings("ignore", message=r".*compute.*called before.*update")
                computed = metric.compute()
            for key, value in computed.items():  # "ade/1s"
                kind, label = key.split("/")
                if torch.isfinite(value):
                    values[f"val/{kind}_{label}/{source}"] = value.float()
            metric.reset()
        self.scored, self.batch_size = 0, None
        return values

    # ---- Lightning hooks ---------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not isinstance(pl_module, RolloutModel):
            self.active = False  # an IDM: nothing to imagine (debug only: the video callbacks say it already)
            log.debug("%s: %s has no rollout interface; it does not run", OWNER, type(pl_module).__name__)
            return
        manifest = getattr(trainer.datamodule, "manifest", None)
        self.fps = float(getattr(manifest, "fps", None) or getattr(pl_module, "fps", None) or 0) or None
        if self.fps is None:
            raise ConfigError(f"{OWNER}: neither the datamodule nor the model states the frame rate, needed to turn "
                              "horizons_s into steps; set callbacks.ade_fde=null")
        if self.config.idm_ckpt and self.motion.idm is None:  # every rank scores, so every rank reads
            self.motion = ImpliedMotion(*load_checked_idm(self.config.idm_ckpt, trainer.datamodule))
        if (window := data_window(trainer)) is not None:  # fail (or warn) before training
            if self.config.own_windows and (longer := self.own_window(trainer, pl_module, window)):
                self.windows = longer
                window = longer.config.window
            self.resolve(pl_module, window)

    def own_window(self, trainer: L.Trainer, pl_module: L.LightningModule, window: int) -> ShardDataModule | None:
        """A datamodule of validation windows long enough for every horizon, when the training
        window is not and the clips are (None otherwise: the validation batches are scored)."""
        data = trainer.datamodule
        manifest = getattr(data, "manifest", None)
        if not isinstance(data, ShardDataModule) or manifest is None:
            return None
        context = resolve_context(self.config.context, pl_module, window, OWNER)
        needed = context + max(horizon_steps(self.config.horizons_s or DEFAULT_HORIZONS_S, self.fps).values())
        if needed <= window or needed > manifest.chunk_steps:
            return None
        config = replace(data.config, window=needed, num_workers=0, cameras=list(data.camera_names),
                         actions=list(data.action_names))
        longer = ShardDataModule(config, rank=trainer.global_rank, world=trainer.world_size)
        longer.prepare_data()
        longer.setup()
        return longer

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.scored, self.batch_size = 0, None
        if self.metrics is not None:  # on every rank's device, also one that scores nothing (NCCL reduces there)
            self.metrics.to(pl_module.device)
            for metric in self.metrics.values():
                metric.reset()

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.active and not trainer.sanity_checking and self.windows is None:
            self.score(pl_module, batch, batch_idx, trainer.global_rank, trainer.world_size)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.active and not trainer.sanity_checking and self.windows is not None:
            for batch_idx, batch in enumerate(self.windows.val_dataloader()):
                if self.config.max_batches is not None and batch_idx >= self.config.max_batches:
                    break
                moved = self.windows.on_after_batch_transfer({k: v.to(pl_module.device) for k, v in batch.items()}, 0)
                self.score(pl_module, moved, batch_idx, trainer.global_rank, trainer.world_size)
        if self.active and not trainer.sanity_checking and self.metrics is not None:
            for name, value in self.compute().items():  # already reduced over ranks: no sync_dist
                pl_module.log(name, value)
