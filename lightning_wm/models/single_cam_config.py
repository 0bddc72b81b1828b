"""Typed config of `SingleCamWorldModel` (Hydra group `model/`), validated when built.

Network widths come from a named preset (`size`, see `sizes.py`); the rest are loss scales,
optimiser and evaluation settings. Values known only at run time (action names, image size)
are constructor arguments of the model, not config keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from lightning_wm.models.sizes import SIZES
from sharding.errors import ConfigError


@dataclass
class SingleCamConfig:
    """Hydra group `model/` for `model_family: single_cam`."""

    size: str = "xs"  # network size preset: tiny (tests), xs (CPU default), s (DreamerV3 S, ~15.5M), m (DreamerV3 M)
    lr: float = 6e-4  # Adam learning rate after warmup
    adam_eps: float = 1e-8  # Adam epsilon
    weight_decay: float = 0.0  # decoupled weight decay (AdamW); 0: plain Adam
    warmup_steps: int = 100  # linear learning-rate warmup, in optimiser steps; 0: none
    lr_final_fraction: float = 0.1  # cosine decay after warmup to lr * this at trainer.max_steps; 1: constant lr
    context_steps: int = 8  # validation open loop: frames observed before imagining the rest of the window
    psnr_horizons: list[int] = field(default_factory=lambda: [1, 4, 8])  # imagined steps logged as val/psnr/h<k>
    free_bits: float = 1.0  # nats per step under which the KL terms give no gradient (DreamerV3: 1)
    kl_dyn_scale: float = 0.5  # weight of KL(sg(post) || prior), trains the dynamics (DreamerV3: 0.5)
    kl_rep_scale: float = 0.1  # weight of KL(post || sg(prior)), trains the representation (DreamerV3: 0.1)
    image_scale: float = 1.0  # weight of the image loss (sum of squared errors per image)
    ego_scale: float = 1.0  # weight of the ego-motion loss (squared error of [dx m, dy m, dyaw rad])
    hazard_scale: float = 1.0  # weight of the hazard loss (binary cross-entropy)
    open_loop_scale: float = 1.0  # weight of the open-loop terms (imagined after the context; 0: DreamerV3's losses only)
    max_reference_age: int = 8  # teacher forcing renders frame t from a reference 1..this many steps back
    turn_prior: bool = True  # decoder re-projects the reference by the ego's turn (rotation homography); needs the camera
    unimix: float = 0.01  # uniform mix into the categorical probabilities, in [0, 1) (DreamerV3: 0.01)
    compile: bool = False  # torch.compile encoder, decoder and heads (slow first step; benchmarks/bench_model.py)
    channels_last: bool = False  # channels_last memory format for the CNNs (see benchmarks/bench_model.py)

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ConfigError(f"model.size={self.size!r} is not a known size; choose one of {sorted(SIZES)}")
        positive = ("lr", "adam_eps")
        non_negative = ("weight_decay", "free_bits", "kl_dyn_scale", "kl_rep_scale", "image_scale", "ego_scale",
                        "hazard_scale", "open_loop_scale")
        for key in positive + non_negative:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"model.{key}={value!r} must be a number")
            if value < 0 or (key in positive and value == 0):
                raise ConfigError(f"model.{key}={value} must be {'> 0' if key in positive else '>= 0'}")
        for key, low in (("warmup_steps", 0), ("context_steps", 1), ("max_reference_age", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"model.{key}={value!r} must be an integer >= {low}")
        if isinstance(self.lr_final_fraction, bool) or not isinstance(self.lr_final_fraction, (int, float)) \
                or not 0 <= self.lr_final_fraction <= 1:
            raise ConfigError(f"model.lr_final_fraction={self.lr_final_fraction!r} must be a number in [0, 1] "
                              "(1: constant learning rate)")
        if not 0 <= self.unimix < 1:
            raise ConfigError(f"model.unimix={self.unimix} must be in [0, 1) (DreamerV3 uses 0.01)")
        horizons = list(self.psnr_horizons)  # a ListConfig from Hydra becomes a plain list
        if not horizons or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in horizons):
            raise ConfigError(f"model.psnr_horizons={horizons} must be a non-empty list of integers >= 1, "
                              "e.g. [1, 4, 8]")
        self.psnr_horizons = horizons
        for key in ("compile", "channels_last", "turn_prior"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"model.{key}={getattr(self, key)!r} must be true or false")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SingleCamConfig:
        """Build from a plain mapping; an unknown key raises ConfigError listing the valid ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"model config has unknown keys {unknown}; valid keys: {sorted(known)}")
        return cls(**values)
