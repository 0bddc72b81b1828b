"""An MLflow metric history that stays exact when a fit is interrupted and resumed: one point per
step, whatever the moment of the interruption (Ctrl-C, SIGTERM, `kill -9`).

A point reaches MLflow only once a checkpoint that covers its step is on disk. Points logged since
the newest checkpoint are held back in memory; the checkpoint saved at global step G takes those of
steps < G into its `lwm_pending_metrics` list (plain floats: it loads with `weights_only`) and they
are written to MLflow right after the file is (`after_save_checkpoint`; for `on_exception.ckpt`, in
`finalize`). A run killed at any moment has in MLflow only steps its newest checkpoint covers; a
resume from it writes the checkpoint's list first (the points that had not reached MLflow), and
the resumed run logs the later steps again, once. A clean end writes everything.

Cost: the MLflow curves of a running fit move at each checkpoint (each validation), not at each
logging step. Resuming from an older checkpoint than the newest (an explicit `best.ckpt`) cannot
remove the later points (MLflow deletes no points): those steps keep their first values.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import lightning as L
from lightning.fabric.utilities.logger import _add_prefix
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only, rank_zero_warn
from mlflow.entities import Metric

from lightning_wm.checkpoints import RUN_KEY

PENDING_KEY = "lwm_pending_metrics"  # checkpoint entry: [[key, value, timestamp_ms, step], ...]
BATCH = 1000  # MLflow's limit of metrics per log_batch call


class ExactHistoryLogger(MLFlowLogger):
    """MLFlowLogger that writes a step's metrics once a checkpoint covers the step (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: list[Metric] = []  # logged after the newest checkpoint
        self._staged: list[Metric] = []  # in a checkpoint being written, not yet in MLflow
        self._recorded: dict[str, int] = {}  # on resume: per key, the newest step MLflow already has
        self.killed = False  # stopped on a signal: finalize("failed") marks the run KILLED

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        timestamp_ms = int(time.time() * 1000)
        for key, value in _add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR).items():
            if isinstance(value, str):  # as MLFlowLogger does: MLflow metrics are numbers
                continue
            clean = re.sub("[^a-zA-Z0-9_/. -]+", "", key)
            if clean != key:
                rank_zero_warn(f"MLflow metric names allow only '_', '/', '.' and ' '; {key} becomes {clean}",
                               category=RuntimeWarning)
            self._held.append(Metric(key=clean, value=float(value), timestamp=timestamp_ms, step=step or 0))

    def stage(self, global_step: int) -> list[list]:
        """A checkpoint at `global_step` is being saved: the points it covers (steps before it) wait
        for the file; returned as the checkpoint's list of points not yet in MLflow."""
        self._staged += [m for m in self._held if m.step < global_step]
        self._held = [m for m in self._held if m.step >= global_step]
        return [[m.key, m.value, m.timestamp, m.step] for m in self._staged]

    def write_staged(self) -> None:
        """The checkpoint is on disk: its points go to MLflow."""
        staged, self._staged = self._staged, []
        self._write(staged)

    def resume(self, pending: list[list]) -> None:
        """Resuming from a checkpoint: note what MLflow has, then write the checkpoint's points it lacks."""
        client = self.experiment
        keys = client.get_run(self.run_id).data.metrics
        self._recorded = {key: max(m.step for m in client.get_metric_history(self.run_id, key)) for key in keys}
        self._write([Metric(key=k, value=float(v), timestamp=int(t), step=int(s)) for k, v, t, s in pending])

    def _write(self, points: list[Metric]) -> None:
        # Only steps MLflow does not have yet: the checkpoint's list may have reached it before the
        # interruption, and a resume from an older checkpoint logs steps MLflow already holds.
        points = [m for m in points if m.step > self._recorded.get(m.key, -1)]
        points.sort(key=lambda m: m.step)  # a write cut short leaves every key's history a prefix
        for start in range(0, len(points), BATCH):
            self.experiment.log_batch(run_id=self.run_id, metrics=points[start:start + BATCH], **self._log_batch_kwargs)

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self.write_staged()
        super().after_save_checkpoint(checkpoint_callback)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        if not self._initialized:
            return
        self.write_staged()  # an on_exception.ckpt saved just before (Lightning finalizes after on_exception)
        if status in ("success", "finished"):
            held, self._held = self._held, []
            self._write(held)  # a clean end: what came after the last checkpoint too
        else:
            self._held = []  # not in any checkpoint: the resumed run logs these steps again
        super().finalize("KILLED" if status == "failed" and self.killed else status)


class ExactHistory(L.Callback):
    """Puts the held-back points in each checkpoint and writes them on resume (with ExactHistoryLogger)."""

    @staticmethod
    def _logger(trainer: L.Trainer) -> ExactHistoryLogger | None:
        logger = trainer.logger
        return logger if isinstance(logger, ExactHistoryLogger) and trainer.is_global_zero else None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if (logger := self._logger(trainer)) is not None:
            checkpoint[PENDING_KEY] = logger.stage(trainer.global_step)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if (logger := self._logger(trainer)) is not None:
            # the held-back points belong to the checkpoint's run; a resume into a new run starts clean
            same_run = checkpoint.get(RUN_KEY, {}).get("mlflow_run_id") == logger.run_id
            logger.resume(checkpoint.get(PENDING_KEY, []) if same_run else [])

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if (logger := self._logger(trainer)) is not None and isinstance(exception, SIGTERMException):
            logger.killed = True  # Lightning's stop on a signal (lightning_wm/interruption.py)
