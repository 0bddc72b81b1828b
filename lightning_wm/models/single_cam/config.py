"""Typed config of `SingleCamWorldModel` (Hydra group `model/`, `conf/model/single_cam.yaml`).

Every world model's keys (`WorldModelConfig`: sizes, optimiser, loss scales) plus what only
the single-camera model has: compilation and memory-format switches for its CNNs.
"""

from __future__ import annotations

from dataclasses import dataclass

from lightning_wm.models.typed_config import check_bool
from lightning_wm.models.world_model_config import WorldModelConfig


@dataclass
class SingleCamConfig(WorldModelConfig):
    """Hydra group `model/` for `model_family: single_cam`."""

    compile: bool = False  # torch.compile encoder, decoder and heads (slow first step; benchmarks/bench_model.py)
    channels_last: bool = False  # channels_last memory format for the CNNs (see benchmarks/bench_model.py)

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("compile", "channels_last"):
            check_bool(key, getattr(self, key))
