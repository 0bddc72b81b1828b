"""What the rollout callbacks share: the same validation windows every time, and MLflow on rank zero.

Videos and sweeps are compared across epochs and runs, so they must show the same windows:
`FixedClips` keeps the first K windows the validation loader yields (it reads fixed windows
in a fixed order) once, on CPU. Artifacts and metrics go through the run's `MLFlowLogger`
client from rank zero only (on other ranks `logger.run_id` is None; TRAPS.md).
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
    """Collects the first `count` windows of the first validation run (sanity check included).

    Call `offer(batch)` from `on_validation_batch_end`; once `count` windows are held, or the
    first validation run ends (`close()`), later batches are ignored, so the clips never change.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.clips: Clips | None = None
        self._parts: list[Clips] = []
        self._closed = False

    def offer(self, batch: dict[str, torch.Tensor]) -> None:
        """Keep rows of a (transferred, float) batch until `count` windows are held."""
        if self._closed:
            return
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

    def close(self) -> None:
        """Freeze what was collected (fewer than `count` windows when the split is smaller)."""
        if self._closed:
            return
        self._closed = True
        if self._parts:
            self.clips = Clips(*(torch.cat([getattr(p, name) for p in self._parts])
                                 for name in ("frames", "actions")))
        self._parts = []


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


def log_artifacts(logger: MLFlowLogger, paths: list[Path], artifact_path: str) -> None:
    """Upload files into the run's `artifact_path` folder (rank zero only)."""
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

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.active and trainer.is_global_zero:
            self.clips.offer(batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not (self.active and trainer.is_global_zero):
            return
        self.clips.close()
        if not trainer.sanity_checking:
            self.validations += 1
            self.on_validation_run(trainer, pl_module)

    def on_validation_run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A validation run that counts has ended (rank zero; `self.clips.clips` may be None)."""
