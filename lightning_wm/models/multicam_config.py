"""Typed config of `MultiCamWorldModel` (Hydra group `model/`, `conf/model/multicam.yaml`).

The keys shared with the single-camera model mean the same and are validated by building a
`SingleCamConfig` from them, so both families refuse the same bad values with the same
message. The rig (camera names, intrinsics, ego_from_camera) is not a config key: it comes
from the data (`MultiCamWorldModel(..., rig=...)`, filled in from the shard manifest).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from lightning_wm.models.single_cam_config import SingleCamConfig
from sharding.errors import ConfigError

EVAL_LATENTS = ("sample", "mode")


@dataclass
class MultiCamConfig:
    """Hydra group `model/` for `model_family: multicam`."""

    size: str = "xs"  # network size preset (sizes.py): tiny (tests), xs (CPU default), s, m
    lr: float = 6e-4  # Adam learning rate after warmup
    adam_eps: float = 1e-8  # Adam epsilon
    weight_decay: float = 0.0  # decoupled weight decay (AdamW); 0: plain Adam
    warmup_steps: int = 100  # linear learning-rate warmup, in optimiser steps; 0: none
    lr_final_fraction: float = 0.1  # cosine decay after warmup to lr * this at trainer.max_steps; 1: constant lr
    context_steps: int = 8  # validation open loop: frames observed before imagining the rest of the window
    psnr_horizons: list[int] = field(default_factory=lambda: [1, 4, 8])  # logged as val/psnr/h<k> and val/xview/h<k>
    free_bits: float = 1.0  # nats per view and step under which the KL terms give no gradient
    kl_dyn_scale: float = 0.5  # weight of KL(sg(post) || prior)
    kl_rep_scale: float = 0.1  # weight of KL(post || sg(prior))
    image_scale: float = 1.0  # weight of the image loss (sum of squared errors per image, mean over views)
    ego_scale: float = 1.0  # weight of the ego-motion loss ([dx m, dy m, dyaw rad])
    hazard_scale: float = 1.0  # weight of the hazard loss (binary cross-entropy)
    open_loop_scale: float = 1.0  # weight of the open-loop terms (imagined after the context); 0: off
    max_reference_age: int = 8  # teacher forcing renders frame t from a reference 1..this many steps back
    turn_prior: bool = True  # each view's decoder re-projects its reference by the ego's turn (rotation homography)
    unimix: float = 0.01  # uniform mix into the categorical probabilities, in [0, 1)
    camera_dim: int = 64  # width of the per-view camera embedding (from the rays of a 3x3 pixel grid)
    attention_heads: int = 4  # heads of every cross-view attention block; must divide the token widths
    view_dropout: float = 0.1  # training: chance that a view is hidden for a whole window (>= 1 view kept)
    eval_latent: str = "sample"  # eval-mode latents: sample (as in training) | mode (deterministic rollouts)
    xview_max_distance_m: float = 40.0  # cross-view metric: ground points farther than this are left out, metres

    def __post_init__(self) -> None:
        shared = {f.name for f in fields(SingleCamConfig)} & {f.name for f in fields(self)}
        checked = SingleCamConfig(**{name: getattr(self, name) for name in shared})
        self.psnr_horizons = checked.psnr_horizons  # a ListConfig from Hydra becomes a plain list
        for key in ("camera_dim", "attention_heads"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.{key}={value!r} must be an integer >= 1")
        if self.camera_dim % self.attention_heads:
            raise ConfigError(f"model.camera_dim={self.camera_dim} must be divisible by "
                              f"model.attention_heads={self.attention_heads}")
        if isinstance(self.view_dropout, bool) or not isinstance(self.view_dropout, (int, float)) \
                or not 0 <= self.view_dropout < 1:
            raise ConfigError(f"model.view_dropout={self.view_dropout!r} must be in [0, 1) (0: off)")
        if self.eval_latent not in EVAL_LATENTS:
            raise ConfigError(f"model.eval_latent={self.eval_latent!r}: choose one of {list(EVAL_LATENTS)}")
        if isinstance(self.xview_max_distance_m, bool) or not isinstance(self.xview_max_distance_m, (int, float)) \
                or self.xview_max_distance_m <= 0:
            raise ConfigError(f"model.xview_max_distance_m={self.xview_max_distance_m!r} must be > 0 metres")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MultiCamConfig:
        """Build from a plain mapping; an unknown key raises ConfigError listing the valid ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"model config has unknown keys {unknown}; valid keys: {sorted(known)}")
        return cls(**values)
