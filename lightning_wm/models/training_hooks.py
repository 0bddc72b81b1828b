"""The Lightning training hooks every world-model family shares: what a training step logs.

A family provides `losses(batch) -> (total, terms)` with the terms named in `LOSS_NAMES`
(plus kl_dyn_raw, kl_rep_raw) and inherits these hooks before `L.LightningModule`.
"""

from __future__ import annotations

import torch

from datamodules.batch import Batch

LOSS_NAMES = ("image", "kl_dyn", "kl_rep", "ego", "hazard", "open_loop_image", "open_loop_ego", "total")


class WorldModelTrainingHooks:
    """`training_step` (loss terms, raw KL, learning rate) and the gradient norm before clipping."""

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        total, terms = self.losses(batch)
        size = batch["frames"].shape[0]
        self.log_dict({f"train/loss/{name}": terms[name] for name in LOSS_NAMES if name != "total"}, batch_size=size)
        self.log("train/loss/total", total, prog_bar=True, batch_size=size)
        self.log_dict({"train/kl/dyn_raw": terms["kl_dyn_raw"], "train/kl/rep_raw": terms["kl_rep_raw"],
                       "train/lr": self.trainer.optimizers[0].param_groups[0]["lr"]}, batch_size=size)
        return total

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Before the trainer clips, so the log shows the raw norm that clipping acts on.
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if grads:
            self.log("train/grad_norm", torch.nn.utils.get_total_norm(grads))
