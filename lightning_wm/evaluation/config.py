"""Typed root config of `lwm evaluate` (conf/evaluate.yaml), validated when built."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from datamodules.shard_datamodule import ShardDataConfig
from lightning_wm.tracking import LoggerConfig
from sharding.contract import SPLITS
from sharding.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class EvaluateConfig:
    """`lwm evaluate`: which checkpoints, on which data, with which rollout settings."""

    data: ShardDataConfig = field(default_factory=ShardDataConfig)  # data.window is set to context + horizon
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    ckpt: str = "last"  # world-model checkpoint: a .ckpt path, `last` (newest under runs_dir), models:/NAME@ALIAS
    idm_ckpt: str | None = None  # IDM checkpoint (`lwm fit model=idm`); null: the ego-motion head implies the motion
    runs_dir: str = "lwm_runs"  # where `lwm fit` keeps runs (for ckpt=last and the default out folder)
    out: str | None = None  # report folder; null: <runs_dir>/<training run>/evaluations/<evaluation run name>
    split: str = "val"  # dataset split to evaluate on (held-out scenes: val)
    context: int = 8  # observed frames before imagining
    horizons_s: list[float] = field(default_factory=lambda: [1.0, 2.0, 3.0])  # ADE/FDE/video horizons, seconds
    steer_yaw_rate: float = 0.15  # counterfactual steering: yaw_rate set to +/- this, rad/s (speed kept)
    steer_rad: float = 0.1  # counterfactual steering for action vectors with `steer`: +/- this, rad
    max_batches: int | None = None  # stop after this many batches; null: the whole split
    device: str = "auto"  # auto (cuda if available) | cpu | cuda
    seed: int = 0  # sampling of the latent during rollouts
    default_camera: str = "front"  # the camera of a single-camera model when data.cameras is null

    def __post_init__(self) -> None:
        if isinstance(self.context, bool) or not isinstance(self.context, int) or self.context < 1:
            raise ConfigError(f"context={self.context!r} is fewer context frames than needed: give an integer >= 1")
        horizons = [float(h) for h in self.horizons_s]  # a ListConfig from Hydra becomes a plain list
        if not horizons or any(not math.isfinite(h) or h <= 0 for h in horizons):
            raise ConfigError(f"horizons_s={horizons} must be a non-empty list of seconds > 0, e.g. [1,2,3]")
        self.horizons_s = sorted(set(horizons))
        if self.split not in SPLITS:
            raise ConfigError(f"split={self.split!r} is not a split; choose one of {list(SPLITS)}")
        if self.device not in DEVICES:
            raise ConfigError(f"device={self.device!r}; choose one of {list(DEVICES)}")
        for key in ("steer_yaw_rate", "steer_rad"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"{key}={getattr(self, key)} must be > 0 (the size of the left/right command)")
        if self.max_batches is not None and self.max_batches < 1:
            raise ConfigError(f"max_batches={self.max_batches} must be >= 1 or null")
