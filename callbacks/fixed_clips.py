"""What the rollout callbacks share: the same validation windows every time, and MLflow on rank zero.

Videos and sweeps are compared across epochs and runs, so they must show the same windows:
`FixedClips` keeps the first K windows the validation loader yields (it reads fixed windows
in a fixed order) once, on CPU. The sanity check's few batches fix them only when they hold K
windows; otherwise the first real validation run collects them again (the same windows, more of
them), and a split that still has fewer than K gets one warning saying so. Artifacts and metrics
go through the run's `MLFlowLogger` client from rank zero only (on other ranks `logger.run_id` is
None; TRAPS.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import MLFlowLogger

from lightning_wm.models.rollout import RolloutModel
from sharding.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class Clips:
    """K validation windows of T steps, float32 on CPU.

    frames:  [K, T, V, 3, H, W] in [0, 1]
    actions: [K, T, A]; row t is the motion from step t to t+1
    """

    frames: torch.Tensor
    actions: torch.Tensor

    def __len__(self) -> int:
        return self.frames.shape[0]

    @property
    def steps(self) -> int:
        return self.frames.shape[1]

    def to(self, device: torch.device) -> Clips:
        return Clips(self.frames.to(device), self.actions.to(device))


class FixedClips:
    """Collects the first `count` windows of the first validation run.

    Call `offer(batch)` from `on_validation_batch_end`; once `count` windows are held, or a
    validation run ends with `close()`, later batches are ignored, so the clips never change.
    `close(final=False)` (the end of the sanity check, which reads only its first batches) keeps
    what it has as `clips` but, when that is fewer than `count`, lets the next run collect anew.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.clips: Clips | None = None
        self._parts: list[Clips] = []
        self._closed = False
        self.offered = self.batches = 0  # windows and batches offered by the run collecting now

    def offer(self, batch: dict[str, torch.Tensor]) -> None:
        """Keep rows of a (transferred, float) batch until `count` windows are held."""
        if self._closed:
            return
        self.offered += batch["frames"].shape[0]
        self.batches += 1
        held = sum(len(part) for part in self._parts)
        take = min(self.count - held, batch["frames"].shape[0])
        frames = batch["frames"][:take].detach()
        if frames.dtype == torch.uint8:  # a loader batch before the datamodule's transfer hook
            frames = frames.float() / 255
        # Outside inference mode, clones are normal tensors that later rollouts may use freely.
        with torch.inference_mode(False):
            self._parts.append(Clips(frames.float().cpu().clone(),
                                     batch["actions"][:take].detach().float().cpu().clone()))
        if held + take >= self.count:
            self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, final: bool = True) -> None:
        """Freeze what was collected (fewer than `count` windows when the split is smaller); with
        `final=False`, fewer than `count` stay replaceable by the next run's collection."""
        if self._closed:
            return
        if self._parts:
            self.clips = Clips(*(torch.cat([getattr(p, name) for p in self._parts])
                                 for name in ("frames", "actions")))
        self._parts = []
        self._closed = final or (self.clips is not None and len(self.clips) >= self.count)
        if not self._closed:
            self.offered = self.batches = 0


def resolve_context(context: int | None, pl_module: L.LightningModule, steps: int, owner: str) -> int:
    """Observed frames per rollout: `context`, else the model's `config.context_steps` when it
    has one, else half the window; refuses a context that leaves nothing to imagine."""
    if context is None:
        context = getattr(getattr(pl_module, "config", None), "context_steps", None) or max(1, steps // 2)
    if context >= steps:
        raise ConfigError(f"{owner}: context={context} must be < the window of {steps} steps (data.window) to leave "
                          f"frames to imagine; lower context or raise data.window")
    return int(context)


def data_window(trainer: L.Trainer) -> int | None:
    """The datamodule's window length T when it states one (ShardDataModule: `config.window`)."""
    window = getattr(getattr(trainer.datamodule, "config", None), "window", None)
    return int(window) if isinstance(window, int) else None


def mlflow_logger(trainer: L.Trainer) -> MLFlowLogger | None:
    """The run's MLflow logger, or None when the trainer has none."""
    return next((lg for lg in trainer.loggers if isinstance(lg, MLFlowLogger)), None)


def log_artifacts(logger: MLFlowLogger, paths: list[Path], artifact_path: str | None) -> None:
    """Upload files into the run's `artifact_path` folder (None: the artifact root; a file of the
    same name there is replaced), rank zero only."""
    for path in paths:
        logger.experiment.log_artifact(logger.run_id, str(path), artifact_path)


def no_logger_notice(owner: str) -> None:
    log.info("%s: no MLflow logger (logger=none?); nothing will be logged, so it does not run", owner)


def can_run(trainer: L.Trainer, pl_module: L.LightningModule, owner: str) -> bool:
    """Whether a rollout callback has something to do: an MLflow logger to log to and a model
    with the rollout interface (an IDM has none). If not, says why once (rank zero)."""
    if mlflow_logger(trainer) is None:
        if trainer.is_global_zero:
            no_logger_notice(owner)
        return False
    if not isinstance(pl_module, RolloutModel):
        if trainer.is_global_zero:
            log.info("%s: %s has no rollout interface (observe/imagine/decode); it does not run",
                     owner, type(pl_module).__name__)
        return False
    return True


class FixedClipsCallback(L.Callback):
    """Base of the callbacks that roll out fixed validation clips: collects them on rank zero
    (`clips`), and tells a subclass when a validation run that counts has ended.

    A subclass sets `self.active = False` in `setup` when it has nothing to do (`can_run`), and
    implements `on_validation_run(trainer, pl_module)`, called on rank zero after every
    validation run but the sanity check, once the clips are frozen.
    """

    def __init__(self, num_clips: int) -> None:
        self.clips = FixedClips(num_clips)
        self.active = True
        self.validations = 0  # validation runs seen, sanity check not counted
        self.shortfall: str | None = None  # why there are fewer clips than num_clips (warned once)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.active and trainer.is_global_zero:
            self.clips.offer(batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not (self.active and trainer.is_global_zero):
            return
        if not self.clips.closed:
            self.clips.close(final=not trainer.sanity_checking)
            if self.clips.closed:
                self.warn_if_short(f"the first validation run (trainer.limit_val_batches={trainer.limit_val_batches})")
        if not trainer.sanity_checking:
            self.validations += 1
            self.on_validation_run(trainer, pl_module)

    def final_clips(self, trainer: L.Trainer) -> Clips | None:
        """The clips, frozen: those of the sanity check when no validation run has ended since."""
        if not self.clips.closed:
            self.clips.close()
            self.warn_if_short(f"the sanity check (trainer.num_sanity_val_steps={trainer.num_sanity_val_steps}), "
                               "and no validation run since,")
        return self.clips.clips

    def warn_if_short(self, run: str) -> None:
        """One warning, naming the cause, when `run`, which fixed the clips, had fewer windows than asked."""
        clips, count = self.clips.clips, self.clips.count
        held = 0 if clips is None else len(clips)
        if clips is None or held >= count or self.shortfall is not None:  # None: the caller says so
            return
        self.shortfall = f"{run} gave only {self.clips.offered} windows in {self.clips.batches} batch(es)"
        log.warning("%s: num_clips=%d but %s, so it uses %d clips; raise trainer.limit_val_batches or give the "
                    "val split more windows (more val scenes, a shorter data.window)", type(self).__name__, count,
                    self.shortfall, held)

    def on_validation_run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A validation run that counts has ended (rank zero; `self.clips.clips` may be None)."""
