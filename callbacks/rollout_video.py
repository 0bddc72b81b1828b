"""`RolloutVideoCallback`: the same validation clips rolled out open loop every N validations,
rendered by `lightning_wm.video_grid` as ground truth | prediction | error (a row per camera,
named on the row when there are several) and logged to MLflow as H.264 MP4 plus GIF under `rollouts/epoch_XXX/`; the latest GIF of
each clip also lies at the artifact root (`rollout_latest_clip<k>.gif`, replaced each time), where
MLflow's compare view can show runs side by side.

Watching the same windows over training shows what the numbers hide (blur, drift, frozen
scenes, ignored turns). The model is used only through the rollout protocol
(`lightning_wm.models.rollout`), so every model family gets videos.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from callbacks.fixed_clips import (
    Clips,
    FixedClipsCallback,
    can_run,
    data_window,
    log_artifacts,
    mlflow_logger,
    resolve_context,
)
from lightning_wm.models.rollout import open_loop
from lightning_wm.video_grid import rollout_frames
from lightning_wm.video_io import VideoLimits, write_video_pair
from sharding.errors import ConfigError

log = logging.getLogger(__name__)

LATEST_GIF = "rollout_latest_clip{index}.gif"  # at the artifact root: the compare view shows these side by side


@dataclass
class RolloutVideoConfig:
    """Settings of `RolloutVideoCallback` (conf/callbacks/default.yaml `rollout_video`), checked when built."""

    every_n_val_epochs: int = 1  # videos every N validation runs (sanity check not counted)
    num_clips: int = 2  # K fixed validation windows, one MP4 + GIF each
    context: int | None = None  # observed frames; null: the model's context_steps, else half the window
    fps: float = 10.0  # playback frame rate (the shards' rate plays in real time)
    scale: int = 3  # nearest-neighbour upscaling of the tiles (lowered to fit max_side)
    error_gain: float = 3.0  # the error column shows |prediction - truth| x gain, clipped to white
    max_frames: int = 64  # frames per video at most (the first ones)
    max_side: int = 768  # longest side of a video in pixels at most
    crf: int = 28  # x264 quality to start from (0 best .. 51 worst)
    max_bytes: int = 2_000_000  # cap per file; lowers quality, then resolution, to fit
    seed: int = 0  # latent sampling during the rollout: the same video for the same weights

    def __post_init__(self) -> None:
        for key in ("every_n_val_epochs", "num_clips", "scale"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"RolloutVideoCallback: {key}={value!r} must be an integer >= 1")
        if self.context is not None and (isinstance(self.context, bool) or not isinstance(self.context, int)
                                         or self.context < 1):
            raise ConfigError(f"RolloutVideoCallback: context={self.context!r} must be an integer >= 1 or null")
        if not self.fps > 0:
            raise ConfigError(f"RolloutVideoCallback: fps={self.fps} must be > 0")
        if not self.error_gain > 0:
            raise ConfigError(f"RolloutVideoCallback: error_gain={self.error_gain} must be > 0")
        try:
            VideoLimits(self.max_frames, self.max_side, self.crf, self.max_bytes)  # checks the size bounds
        except ConfigError as error:
            raise ConfigError(f"RolloutVideoCallback: {error}") from error

    @property
    def limits(self) -> VideoLimits:
        return VideoLimits(self.max_frames, self.max_side, self.crf, self.max_bytes)


def camera_names(trainer: L.Trainer, pl_module: Any, views: int) -> list[str]:
    """The names of the clips' `views` cameras, in batch order: the datamodule's (`camera_names`),
    else the model's active cameras, else view0, view1, ..."""
    names = getattr(trainer.datamodule, "camera_names", None) if trainer is not None else None
    if not names and (model_names := getattr(pl_module, "camera_names", None)):
        active = getattr(pl_module, "active", range(len(model_names)))
        names = [model_names[i] for i in active]
    names = [str(n) for n in names or []]
    return names if len(names) == views else [f"view{v}" for v in range(views)]


@torch.no_grad()
def render_clips(model: Any, clips: Clips, context: int, config: RolloutVideoConfig,
                 names: list[str] | None = None) -> list[np.ndarray]:
    """Open-loop rollouts of `clips` with their true actions -> one uint8 [T, H', W', 3] video each
    (rows labelled with the camera `names` when there are several views)."""
    device = next(iter(model.parameters())).device if isinstance(model, torch.nn.Module) else torch.device("cpu")
    on_device = clips.to(device)
    generator = torch.Generator(device).manual_seed(config.seed)
    predicted, _ = open_loop(model, on_device.frames, on_device.actions, context, generator=generator)
    predicted = predicted.float().cpu().numpy()  # [K, T-C, V, 3, H, W]
    truth = clips.frames.numpy()
    return [rollout_frames(truth[i], predicted[i], context, config.scale, config.error_gain, config.max_side, names)
            for i in range(len(clips))]


class RolloutVideoCallback(FixedClipsCallback):
    """Every `every_n_val_epochs` validations: K fixed clips, open loop, logged as MP4 + GIF.

    Keyword arguments: the fields of `RolloutVideoConfig`. Files: `rollouts/epoch_XXX/
    clip{k}_step{global step:06d}.mp4|.gif`, and the latest GIFs as `rollout_latest_clip{k}.gif`
    at the artifact root. Does nothing (one info line) without an MLflow logger.
    """

    def __init__(self, **settings: Any) -> None:
        self.config = RolloutVideoConfig(**settings)
        super().__init__(self.config.num_clips)
        self.seconds = 0.0  # wall time spent rendering and logging, for overhead measurements

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not can_run(trainer, pl_module, type(self).__name__):
            self.active = False
            return
        if (window := data_window(trainer)) is not None:  # fail before training, not at the first validation
            resolve_context(self.config.context, pl_module, window, type(self).__name__)

    def on_validation_run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.validations % self.config.every_n_val_epochs or self.clips.clips is None:
            return
        self.log_videos(trainer, pl_module, self.clips.clips)

    def log_videos(self, trainer: L.Trainer, pl_module: L.LightningModule, clips: Clips) -> None:
        start = time.perf_counter()
        context = resolve_context(self.config.context, pl_module, clips.steps, type(self).__name__)
        was_training = pl_module.training
        pl_module.eval()
        try:
            videos = render_clips(pl_module, clips, context, self.config,
                                  camera_names(trainer, pl_module, clips.frames.shape[2]))
        finally:
            pl_module.train(was_training)
        folder = f"rollouts/epoch_{trainer.current_epoch:03d}"
        with tempfile.TemporaryDirectory(prefix="lwm-rollouts-") as tmp:
            paths: list[Path] = []
            latest: list[Path] = []
            try:
                for index, video in enumerate(videos):
                    pair = write_video_pair(video, Path(tmp) / f"clip{index}_step{trainer.global_step:06d}",
                                            self.config.fps, self.config.limits)
                    paths += pair
                    latest.append(Path(shutil.copyfile(pair[1], Path(tmp) / LATEST_GIF.format(index=index))))
            except ConfigError as error:  # a video that cannot fit max_bytes must not end the training
                log.warning("%s: rollout videos skipped: %s", type(self).__name__, error)
                return
            logger = mlflow_logger(trainer)
            log_artifacts(logger, paths, folder)
            log_artifacts(logger, latest, None)  # replaces the previous validation's
        self.seconds += time.perf_counter() - start
        log.info("rollout videos of %d clips logged to %s (%.1f s)", len(videos), folder, time.perf_counter() - start)
