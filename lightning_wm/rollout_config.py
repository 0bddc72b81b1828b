"""Typed root config of `lwm rollout` (conf/rollout.yaml): one context clip, one rollout video."""

from __future__ import annotations

from dataclasses import dataclass, field

from datamodules.shard_datamodule import ShardDataConfig
from lightning_wm.tracking import LoggerConfig
from sharding.contract import SPLITS
from sharding.errors import ConfigError

STEERS = ("left", "right", "straight")


@dataclass
class RolloutConfig:
    """`lwm rollout`: which model, which clip, which actions, where the video goes."""

    data: ShardDataConfig = field(default_factory=ShardDataConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)  # only where models:/ URIs are looked up
    ckpt: str = "last"  # (also `model=`) .ckpt path, `last`, models:/NAME@ALIAS or models:/NAME/VERSION
    split: str = "val"  # split the context clip comes from
    clip: int = 0  # index of the clip (window) in the split, in loader order
    context: int | None = None  # observed frames; null: the model's context_steps
    horizon_s: float = 3.0  # imagined seconds (whole steps at the data's fps)
    actions: str = "logged"  # logged (the clip's own) or a .npy of [steps, A] in the model's action order
    steer: str | None = None  # left | right | straight: the logged speed with yaw_rate +/-steer_yaw_rate or 0
    steer_yaw_rate: float = 0.15  # rad/s of steer=left|right
    out: str | None = None  # video path without suffix (writes .mp4 and .gif); null: <runs_dir>/rollouts/<name>
    runs_dir: str = "lwm_runs"
    default_camera: str = "front"  # the camera of a single-camera model when data.cameras is null
    seed: int = 0  # latent sampling: the same seed gives the same video
    device: str = "auto"
    scale: int = 3  # nearest-neighbour upscaling of the tiles
    max_side: int = 768  # longest video side in pixels at most
    error_gain: float = 3.0  # error column: |prediction - logged| x gain
    crf: int = 28  # x264 quality to start from
    max_bytes: int = 4_000_000  # cap per file

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"split={self.split!r}; choose one of {list(SPLITS)}")
        if self.steer is not None and self.steer not in STEERS:
            raise ConfigError(f"steer={self.steer!r}; choose one of {list(STEERS)} or leave it null")
        if self.steer is not None and self.actions != "logged":
            raise ConfigError(f"steer={self.steer} and actions={self.actions}: give one of them")
        if self.clip < 0:
            raise ConfigError(f"clip={self.clip} must be >= 0")
        if not self.horizon_s > 0:
            raise ConfigError(f"horizon_s={self.horizon_s} must be > 0")
        if self.context is not None and self.context < 1:
            raise ConfigError(f"context={self.context} must be >= 1 or null")
