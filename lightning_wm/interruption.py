"""Stopping `lwm fit` on a signal: at the end of a training step, with a checkpoint, never with exit 0.

SIGINT (Ctrl-C), SIGTERM (what schedulers and `kill` send) and SIGUSR1 (SLURM's warning before the
time limit, `sbatch --signal=USR1@90`) stop training alike: the step in progress finishes (with its
validation when it is a validation step), `on_exception.ckpt` is saved at that step, the MLflow run
is marked KILLED, and `lwm fit` exits 128 + the signal's number: 130 (SIGINT), 143 (SIGTERM), 138
(SIGUSR1). `lwm fit ckpt_path=last` resumes from there; requeue a SLURM job on exit 138 or 143. A
second Ctrl-C exits 130 at once, saving nothing: the resume starts from the newest checkpoint.
Either way the MLflow history stays one point per step (lightning_wm/tracking/exact_history.py).

The stop is Lightning's own SIGTERM path: its flag makes the loops raise `SIGTERMException` after a
step (rank zero's flag is broadcast to every DDP rank), then the `on_exception` callbacks save.
These handlers are installed before `trainer.fit`, so Lightning's SIGTERM handler calls ours, and
its SLURM auto-requeue SIGUSR1 handler (which would save in the middle of a step) stays off.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class Interrupted(KeyboardInterrupt):
    """Training stopped on a signal; the CLI exits with `exit_code` (128 + the signal's number)."""

    def __init__(self, signum: int, step: int) -> None:
        self.signum, self.step = signum, step
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name} at step {step} (on_exception.ckpt); `lwm fit ckpt_path=last` resumes"
                         if step else f"stopped by {name} before the first step")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def request_stop(trainer: L.Trainer) -> None:
    """Lightning's SIGTERM flag: the loops stop after the current step (or validation batch)."""
    assert hasattr(trainer, "_signal_connector"), "Lightning moved its signal connector: check interruption.py"
    trainer._signal_connector.received_sigterm = True


class StopOnSignal(L.Callback):
    """Stops the fit at a step boundary on SIGINT, SIGTERM or SIGUSR1; use `with stop.handling(trainer)`
    around `trainer.fit`, which raises `Interrupted` afterwards."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._trainer: L.Trainer | None = None
        self._validated_at: int | None = None  # global step of the newest validation in training
        self._after_validation: bool | None = False  # on_exception.ckpt is saved right after a validation

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        trainer = self._trainer
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            os.write(2, b"lwm fit: second Ctrl-C, exiting now without a checkpoint; "
                        b"`lwm fit ckpt_path=last` resumes from the newest one\n")
            os._exit(130)
        if self.received is None:
            self.received = signum
            step = trainer.global_step if trainer is not None else 0
            os.write(2, f"lwm fit: {name} at step {step}: stopping when this step ends, with a checkpoint "
                        f"(Ctrl-C again: quit at once, without one)\n".encode())
        if trainer is not None:
            request_stop(trainer)

    def _stop_if_received(self, trainer: L.Trainer) -> None:
        # A signal before Lightning registered its handlers: it reset the flag, so stop here.
        if self.received is not None:
            self._after_validation = None  # no step taken in this process: the loop state is the loaded one
            raise SIGTERMException()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated_at = trainer.global_step

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._after_validation is not None:
            self._after_validation = (isinstance(exception, SIGTERMException) and trainer.training
                                      and self._validated_at == trainer.global_step)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        # Lightning raises SIGTERMException after the step added itself to `_batches_that_stepped` (the
        # step the next metrics are logged at). Resuming at a validation step, Lightning replays the end
        # of that step and adds one again (its own checkpoints there are saved before the count): without
        # this, the resumed run would log nothing at step G and shift every later step by one.
        if self._after_validation:
            checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"] -= 1

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_received(trainer)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_received(trainer)

    @contextmanager
    def handling(self, trainer: L.Trainer) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        self._trainer = trainer
        previous = {signum: signal.signal(signum, self._on_signal) for signum in SIGNALS}
        try:
            yield
        except SIGTERMException as stop:  # Lightning stopped on our flag (or on its own SIGTERM handler)
            raise Interrupted(self.received or signal.SIGTERM, trainer.global_step) from stop
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._trainer = None
        if self.received is not None:  # training had ended (fit-end callbacks ran): still not a success
            print(f"lwm fit: {signal.Signals(self.received).name} after the last step", file=sys.stderr)
            raise Interrupted(self.received, trainer.global_step)
