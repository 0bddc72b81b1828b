"""Typed config of the behaviour-cloning policy (Hydra group `model/`, `lwm fit model=policy`).

Network widths come from a named preset (`size`); the cameras, image size and action names come
from the data as constructor arguments, like every family's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lightning_wm.models.typed_config import TypedConfig, check_int, check_number
from sharding.errors import ConfigError


@dataclass(frozen=True)
class PolicySize:
    """cnn_depth: channels of the image encoder's first stage; units, mlp_layers: the action MLP."""

    cnn_depth: int
    units: int
    mlp_layers: int


POLICY_SIZES: dict[str, PolicySize] = {
    "tiny": PolicySize(cnn_depth=4, units=32, mlp_layers=1),  # tests
    "xs": PolicySize(cnn_depth=16, units=128, mlp_layers=2),  # CPU default: minutes on 64x64
    "s": PolicySize(cnn_depth=32, units=256, mlp_layers=2),
}


def default_action_scales() -> dict[str, float]:
    return {"speed": 5.0, "yaw_rate": 0.05}


@dataclass
class PolicyConfig(TypedConfig):
    """Hydra group `model/` for `model_family: policy`."""

    size: str = "xs"  # network preset: tiny (tests), xs (CPU default), s
    lr: float = 1e-3  # AdamW learning rate after warmup
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    warmup_steps: int = 50  # linear learning-rate warmup, optimiser steps; 0: none
    # Typical size of each action (its unit, e.g. m/s): the loss is the squared error in these
    # units, so every action weighs alike; actions not named here have scale 1.
    action_scales: dict[str, float] = field(default_factory=default_action_scales)

    def __post_init__(self) -> None:
        if self.size not in POLICY_SIZES:
            raise ConfigError(f"model.size={self.size!r} is not a known policy size; choose one of "
                              f"{sorted(POLICY_SIZES)}")
        check_number("lr", self.lr, low=0, low_open=True)
        check_number("weight_decay", self.weight_decay, low=0)
        check_int("warmup_steps", self.warmup_steps, 0)
        self.action_scales = {str(k): float(v) for k, v in dict(self.action_scales).items()}
        for name, value in self.action_scales.items():
            check_number(f"action_scales.{name}", value, low=0, low_open=True)
