"""Typed config of the inverse-dynamics model (Hydra group `model/`, `model=idm`), validated when built.

Network widths come from a named preset (`size`, see `IDM_SIZES`); the camera rig and frame
rate it is trained on are not config keys but constructor arguments read from the manifest,
stored in the checkpoint so that evaluation can refuse video from another rig or rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lightning_wm.models.typed_config import TypedConfig
from sharding.errors import ConfigError


@dataclass(frozen=True)
class IDMSize:
    """cnn_depth: channels of the first conv stage (stage i has cnn_depth * 2**i);
    units, mlp_layers: the MLP that reads the flattened last feature map."""

    cnn_depth: int
    units: int
    mlp_layers: int


IDM_SIZES: dict[str, IDMSize] = {
    "tiny": IDMSize(cnn_depth=4, units=32, mlp_layers=1),  # tests: milliseconds per step at 32x32
    "xs": IDMSize(cnn_depth=16, units=128, mlp_layers=1),  # CPU default, trains in minutes on 64x64
    "s": IDMSize(cnn_depth=32, units=256, mlp_layers=2),
}


@dataclass
class IDMConfig(TypedConfig):
    """Hydra group `model/` for `model_family: idm` (conf/model/idm.yaml)."""

    size: str = "xs"  # network preset: tiny (tests), xs (CPU default), s
    frames: int = 2  # K: frames per estimate; the motion between the last two, the earlier ones as context
    # Typical per-step size of [dx m, dy m, dyaw rad] at 10 Hz (synthetic default: std 0.55, 0.003, 0.005):
    # the network predicts in these units, so each component weighs alike in the loss.
    motion_scale: list[float] = field(default_factory=lambda: [0.5, 0.01, 0.005])
    mirror: bool = True  # train on left-right mirrored clips too (dy, dyaw negated): for a camera facing straight ahead
    photometric: float = 0.2  # random per-clip gain (1 +- this) and offset (+- half this) in training; 0: off
    yaw_augment: float = 0.02  # training: each clip's camera also turns at a random rate in +- this, rad/step; 0: off
    blur: float = 1.0  # training: Gaussian blur of random sigma in [0, this] pixels per clip (generated video is soft); 0: off
    lr: float = 1e-3  # Adam learning rate after warmup
    weight_decay: float = 0.0  # decoupled weight decay (AdamW)
    warmup_steps: int = 50  # linear learning-rate warmup, optimiser steps; 0: none

    def __post_init__(self) -> None:
        if self.size not in IDM_SIZES:
            raise ConfigError(f"model.size={self.size!r} is not a known IDM size; choose one of {sorted(IDM_SIZES)}")
        if isinstance(self.frames, bool) or not isinstance(self.frames, int) or self.frames < 2:
            raise ConfigError(f"model.frames={self.frames!r} must be an integer >= 2 (a pair of frames at least)")
        scale = [float(s) for s in self.motion_scale]  # a ListConfig from Hydra becomes a plain list
        if len(scale) != 3 or min(scale) <= 0:
            raise ConfigError(f"model.motion_scale={scale} must be three numbers > 0 ([dx m, dy m, dyaw rad])")
        self.motion_scale = scale
        if not isinstance(self.mirror, bool):
            raise ConfigError(f"model.mirror={self.mirror!r} must be true or false")
        if not 0 <= self.photometric < 1:
            raise ConfigError(f"model.photometric={self.photometric} must be in [0, 1)")
        if not self.yaw_augment >= 0 or not self.blur >= 0:
            raise ConfigError(f"model.yaw_augment={self.yaw_augment} and model.blur={self.blur} must be >= 0")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ConfigError(f"model.lr={self.lr} must be > 0 and model.weight_decay={self.weight_decay} >= 0")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ConfigError(f"model.warmup_steps={self.warmup_steps!r} must be an integer >= 0")
