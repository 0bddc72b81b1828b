"""Learning-rate schedule shared by every model family: linear warmup, then cosine decay.

At a fixed, short step budget (the 15-minute CPU default) decaying the rate over the last
steps settles the model on a better final estimate than a constant rate.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def warmup_cosine(step: int, warmup: int, total: int | None, final_fraction: float) -> float:
    """Multiplier of the base rate at optimiser `step`.

    Rises linearly over `warmup` steps, then follows a half cosine from 1 down to
    `final_fraction` at step `total`; stays there after. total=None (no step budget) or
    final_fraction=1: constant after warmup.
    """
    ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
    if total is None or total <= warmup or final_fraction == 1:
        return ramp
    progress = min(1.0, max(0.0, (step - warmup) / (total - warmup)))
    return ramp * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))


def adamw_warmup_cosine(module: Any, lr: float, weight_decay: float, warmup: int, final_fraction: float,
                        adam_eps: float = 1e-8) -> dict[str, Any]:
    """`configure_optimizers` result for a LightningModule: AdamW stepped per optimiser step,
    decaying over the trainer's `max_steps` (constant when the trainer has no step budget)."""
    trainer = module._trainer
    total = trainer.max_steps if trainer is not None and trainer.max_steps > 0 else None
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, eps=adam_eps, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup, total, final_fraction))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
