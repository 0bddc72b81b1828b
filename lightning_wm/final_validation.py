"""A validation at the last training step of every fit, so a short run still has val metrics.

Lightning validates every `val_check_interval` steps, so a fit whose `max_steps` is not a
multiple of it (or smaller) ends without one. Lightning runs a validation at the step where
`trainer.should_stop` is set (that is how `max_time` stops, and early stopping); this callback
sets it at the step that reaches `max_steps` (or ends the last epoch), so the final validation
runs inside the fit loop: the callbacks that react to validation (rollout videos, ADE/FDE,
checkpoints) see it before `on_train_end` (the robustness sweep), at the final global step.
A last step that already lands on a validation validates once (one check per step).
"""

from __future__ import annotations

import lightning as L


class FinalValidation(L.Callback):
    """Stop (and so validate) at the batch that ends training; every rank decides alike (same step)."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        loop = trainer.fit_loop
        last_step = trainer.max_steps is not None and 0 <= trainer.max_steps <= trainer.global_step
        last_epoch = (loop.max_epochs is not None and loop.max_epochs >= 0
                      and trainer.current_epoch + 1 >= loop.max_epochs and loop.epoch_loop.batch_progress.is_last_batch)
        if last_step or last_epoch:
            trainer.should_stop = True
