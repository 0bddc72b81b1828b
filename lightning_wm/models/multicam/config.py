"""Typed config of `MultiCamWorldModel` (Hydra group `model/`, `conf/model/multicam.yaml`).

Every world model's keys (`WorldModelConfig`, validated the same way for both families) plus
the multi-camera ones: camera embedding, cross-view attention, view dropout. The rig (camera
names, intrinsics, ego_from_camera) is not a config key: it comes from the data
(`MultiCamWorldModel(..., rig=...)`, filled in from the shard manifest).
"""

from __future__ import annotations

from dataclasses import dataclass

from lightning_wm.models.typed_config import check_int, check_number
from lightning_wm.models.world_model_config import WorldModelConfig
from sharding.errors import ConfigError

EVAL_LATENTS = ("sample", "mode")


@dataclass
class MultiCamConfig(WorldModelConfig):
    """Hydra group `model/` for `model_family: multicam`."""

    camera_dim: int = 64  # width of the per-view camera embedding (from the rays of a 3x3 pixel grid)
    attention_heads: int = 4  # heads of every cross-view attention block; must divide the token widths
    view_dropout: float = 0.1  # training: chance that a view is hidden for a whole window (>= 1 view kept)
    eval_latent: str = "sample"  # eval-mode latents: sample (as in training) | mode (deterministic rollouts)
    xview_max_distance_m: float = 40.0  # cross-view metric: ground points farther than this are left out, metres

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("camera_dim", "attention_heads"):
            check_int(key, getattr(self, key), 1)
        if self.camera_dim % self.attention_heads:
            raise ConfigError(f"model.camera_dim={self.camera_dim} must be divisible by "
                              f"model.attention_heads={self.attention_heads}")
        if isinstance(self.view_dropout, bool) or not isinstance(self.view_dropout, (int, float)) \
                or not 0 <= self.view_dropout < 1:
            raise ConfigError(f"model.view_dropout={self.view_dropout!r} must be in [0, 1) (0: off)")
        if self.eval_latent not in EVAL_LATENTS:
            raise ConfigError(f"model.eval_latent={self.eval_latent!r}: choose one of {list(EVAL_LATENTS)}")
        check_number("xview_max_distance_m", self.xview_max_distance_m, low=0, low_open=True)
