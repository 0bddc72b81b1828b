"""The typed config every world-model family shares (Hydra group `model/`), and its loss scales.

`SingleCamConfig` and `MultiCamConfig` extend `WorldModelConfig` with their own keys. The
losses a world model computes are named, unscaled terms; `loss_scales()` is the one place that
says how much each weighs in the total (DreamerV3's `loss_scales`), and the model checks that
the names of its terms and of the scales match. Network widths come from a named preset
(`size`, see `nn/sizes.py`); values known only at run time (action names, image size, rig)
are constructor arguments of the model, not config keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datamodules.bev import BEV_CLASSES, BevGrid
from lightning_wm.models.nn.sizes import SIZES
from lightning_wm.models.typed_config import TypedConfig, check_bool, check_int, check_number
from sharding.errors import ConfigError


@dataclass
class WorldModelConfig(TypedConfig):
    """Keys of every world model (a family's config adds its own after these)."""

    size: str = "xs"  # network size preset: tiny (tests), xs (CPU default), s (DreamerV3 S, ~15.5M), m (DreamerV3 M)
    lr: float = 6e-4  # Adam learning rate after warmup
    adam_eps: float = 1e-8  # Adam epsilon
    weight_decay: float = 0.0  # decoupled weight decay (AdamW); 0: plain Adam
    warmup_steps: int = 100  # linear learning-rate warmup, in optimiser steps; 0: none
    lr_final_fraction: float = 0.1  # cosine decay after warmup to lr * this at trainer.max_steps; 1: constant lr
    context_steps: int = 8  # validation open loop: frames observed before imagining the rest of the window
    psnr_horizons: list[int] = field(default_factory=lambda: [1, 4, 8])  # imagined steps logged as val/psnr/h<k>
    free_bits: float = 1.0  # nats per step (and view) under which the KL terms give no gradient (DreamerV3: 1)
    kl_dyn_scale: float = 0.5  # weight of KL(sg(post) || prior), trains the dynamics (DreamerV3: 0.5)
    kl_rep_scale: float = 0.1  # weight of KL(post || sg(prior)), trains the representation (DreamerV3: 0.1)
    image_scale: float = 1.0  # weight of the image loss (sum of squared errors per image)
    ego_scale: float = 1.0  # weight of the ego-motion loss (squared error of [dx m, dy m, dyaw rad])
    hazard_scale: float = 1.0  # weight of the hazard loss (binary cross-entropy)
    open_loop_scale: float = 1.0  # weight of the open-loop terms (imagined after the context; 0: DreamerV3's losses only)
    max_reference_age: int = 8  # teacher forcing renders frame t from a reference 1..this many steps back
    turn_prior: bool = True  # decoder re-projects the reference by the ego's turn (rotation homography); needs the camera
    unimix: float = 0.01  # uniform mix into the categorical probabilities, in [0, 1) (DreamerV3: 0.01)
    bev: BevGrid = field(default_factory=BevGrid)  # the BEV head's ego-frame grid (extent and cell size, metres)
    bev_scale: float = 100.0  # weight of the BEV loss (per class: cross-entropy per cell + bev_dice x Dice loss)
    bev_dice: float = 1.0  # weight of the soft Dice loss beside the cross-entropy in the BEV loss; 0: off
    bev_every: int = 4  # the BEV loss reads every this many steps of a window (and of its imagined steps)
    bev_pos_weight: list[float] = field(default_factory=lambda: [4.0, 10.0, 1.0])  # weight of an occupied cell:
    # vehicle, pedestrian, drivable (agents cover a few percent of the cells)
    bev_iou_range_m: float = 30.0  # validation BEV IoU counts the cameras' field of view up to this distance, metres

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ConfigError(f"model.size={self.size!r} is not a known size; choose one of {sorted(SIZES)}")
        for key in ("lr", "adam_eps"):
            check_number(key, getattr(self, key), low=0, low_open=True)
        for key in ("weight_decay", "free_bits", "kl_dyn_scale", "kl_rep_scale", "image_scale", "ego_scale",
                    "hazard_scale", "open_loop_scale"):
            check_number(key, getattr(self, key), low=0)
        for key, low in (("warmup_steps", 0), ("context_steps", 1), ("max_reference_age", 1)):
            check_int(key, getattr(self, key), low)
        if not isinstance(self.lr_final_fraction, (int, float)) or isinstance(self.lr_final_fraction, bool) \
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
        check_bool("turn_prior", self.turn_prior)
        if isinstance(self.bev, dict):  # from a checkpoint's plain hyperparameters
            self.bev = BevGrid(**self.bev)
        check_number("bev_scale", self.bev_scale, low=0)
        check_number("bev_dice", self.bev_dice, low=0)
        check_int("bev_every", self.bev_every, 1)
        check_number("bev_iou_range_m", self.bev_iou_range_m, low=0, low_open=True)
        weights = [float(w) for w in self.bev_pos_weight]
        if len(weights) != len(BEV_CLASSES) or min(weights) <= 0:
            raise ConfigError(f"model.bev_pos_weight={weights} must be {len(BEV_CLASSES)} numbers > 0 "
                              f"({', '.join(BEV_CLASSES)})")
        self.bev_pos_weight = weights

    def loss_scales(self) -> dict[str, float]:
        """Weight of each named loss term in the total: total = sum(scale[name] * term[name]).

        Teacher-forced terms (DreamerV3's, plus the BEV head's): image, kl_dyn, kl_rep, ego, hazard,
        bev. Open-loop terms (imagined after the context with the true actions): open_loop_image,
        open_loop_ego and open_loop_bev, weighed like their teacher-forced counterparts times
        `open_loop_scale`.
        """
        return {"image": self.image_scale, "kl_dyn": self.kl_dyn_scale, "kl_rep": self.kl_rep_scale,
                "ego": self.ego_scale, "hazard": self.hazard_scale, "bev": self.bev_scale,
                "open_loop_image": self.open_loop_scale * self.image_scale,
                "open_loop_ego": self.open_loop_scale * self.ego_scale,
                "open_loop_bev": self.open_loop_scale * self.bev_scale}
