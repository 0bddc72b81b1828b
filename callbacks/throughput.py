"""Training throughput (samples/s and frames/s) on the progress bar and in the logger."""

from __future__ import annotations

import time

import lightning as L


class ThroughputCallback(L.Callback):
    """Logs `train/perf/samples_per_s` and `train/perf/frames_per_s` (frames = samples x T x V),
    averaged over the last `window` steps, so data stalls and slow steps are visible."""

    def __init__(self, window: int = 20) -> None:
        self.window = window
        self._times: list[float] = []
        self._frames: list[int] = []
        self._samples: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self._times:
            self._times.append(time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        frames = batch["frames"]  # [B, T, V, C, H, W]
        self._times.append(time.perf_counter())
        self._samples.append(frames.shape[0])
        self._frames.append(frames.shape[0] * frames.shape[1] * frames.shape[2])
        if len(self._samples) > self.window:
            self._times.pop(0), self._samples.pop(0), self._frames.pop(0)
        seconds = self._times[-1] - self._times[0]
        if seconds > 0:
            world = trainer.world_size
            pl_module.log("train/perf/samples_per_s", sum(self._samples) * world / seconds, prog_bar=True)
            pl_module.log("train/perf/frames_per_s", sum(self._frames) * world / seconds)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._times.clear(), self._samples.clear(), self._frames.clear()  # validation time is not training time
