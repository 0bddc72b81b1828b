"""What the exact MLflow history (lightning_wm/tracking/exact_history.py) costs a fit.

    python benchmarks/bench_exact_history.py                    # 60 steps, validation every 20
    python benchmarks/bench_exact_history.py --steps 200 --val-every 50 --repeats 3

Two measurements on a local SQLite store, the variants alternated `--repeats` times, each first in
turn (medians shown; the fit's rate is noisy on a shared machine, the logging time much less):
- logging alone: `--steps` steps of 20 metrics, a checkpoint every `--val-every` steps, through
  MLFlowLogger (a write per step) and ExactHistoryLogger (held back, one batch per checkpoint);
- a real tiny `lwm fit` (log_every_n_steps=1, the worst case) with each logger: training steps/s
  from the first to the last step, validations and checkpoint writes included.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from lightning_wm import tracking
from lightning_wm.cli import main as lwm
from lightning_wm.tracking.exact_history import PENDING_KEY

KEYS = [f"train/loss/term{i}" for i in range(20)]


def time_logging(exact: bool, steps: int, val_every: int, root: Path) -> float:
    """Seconds per step to log 20 metrics (and write the held-back points at each checkpoint)."""
    config = tracking.LoggerConfig(tracking_uri=f"sqlite:///{root / 'log.db'}", system_metrics=False)
    logger = tracking.make_logger(config, root, f"bench-{exact}-{time.time_ns()}", {}, exact_history=exact)
    logger.experiment  # noqa: B018 - the run exists before timing starts
    start = time.perf_counter()
    for step in range(steps):
        logger.log_metrics({key: float(step) for key in KEYS}, step=step)
        if exact and (step + 1) % val_every == 0:
            logger.stage(step + 1)
            logger.write_staged()
    logger.finalize("success")
    return (time.perf_counter() - start) / steps


class StepClock(L.Callback):
    """Wall time from the first training batch to the end of training (added to the fit as
    `+callbacks.clock={_target_:__main__.StepClock}`; the newest one is in `StepClock.made`)."""

    made: list[StepClock] = []

    def __init__(self) -> None:
        self.start, self.seconds, self.steps = None, 0.0, 0
        StepClock.made.append(self)

    def on_train_batch_start(self, trainer, *args) -> None:
        if self.start is None:
            self.start, self.first_step = time.perf_counter(), trainer.global_step

    def on_train_end(self, trainer, *args) -> None:
        self.seconds, self.steps = time.perf_counter() - self.start, trainer.global_step - self.first_step


def time_fit(exact: bool, steps: int, val_every: int, data: Path, root: Path) -> tuple[float, int]:
    """Training steps/s of a tiny `lwm fit`, and the size of the held-back points its best.ckpt carries."""
    work = root / f"fit-{exact}-{time.time_ns()}"
    work.mkdir()
    overrides = [f"data.path={data}", "model.size=tiny", "model.context_steps=4", "model.psnr_horizons=[1,4]",
                 "data.window=8", "data.batch_size=2", "data.num_workers=0", "trainer.accelerator=cpu",
                 "trainer.devices=1", f"trainer.max_steps={steps}", f"trainer.val_check_interval={val_every}",
                 "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0", "trainer.log_every_n_steps=1",
                 "trainer.enable_progress_bar=false", "logger.system_metrics=false", "callbacks=none",
                 f"logger.tracking_uri=sqlite:///{work / 'mlflow.db'}", f"runs_dir={work / 'runs'}",
                 f"logger.exact_history={str(exact).lower()}", f"+callbacks.clock={{_target_:{__name__}.StepClock}}"]
    assert lwm(["fit", *overrides]) == 0
    clock = StepClock.made[-1]
    (best,) = (work / "runs").glob("*/checkpoints/best.ckpt")  # saved first at a validation: it has the list
    pending = torch.load(best, weights_only=True).get(PENDING_KEY, [])
    buffer = io.BytesIO()
    torch.save(pending, buffer)
    return clock.steps / clock.seconds, len(pending), buffer.tell()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--val-every", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lwm-bench-history-") as tmp:
        root = Path(tmp)
        assert lwm(["shard", "synthetic", "--out", str(root / "data"), "--scenes", "2", "--val-scenes", "1",
                    "--workers", "1", "progress=false", "source.rig.width=32", "source.rig.height=32",
                    "source.world.steps=40", "source.chunk_steps=40"]) == 0
        logging_s = {False: [], True: []}
        fit = {False: [], True: []}
        for repeat in range(args.repeats):
            for exact in (False, True) if repeat % 2 == 0 else (True, False):  # neither always runs first
                logging_s[exact].append(time_logging(exact, args.steps, args.val_every, root))
                fit[exact].append(time_fit(exact, args.steps, args.val_every, root / "data", root))
    print(f"\n{args.steps} steps, validation + checkpoint every {args.val_every}, median of {args.repeats}\n")
    print("| logger                        | logging ms/step (20 metrics) | tiny fit steps/s | held-back points in best.ckpt |")
    print("|-------------------------------|-----------------------------:|-----------------:|------------------------------:|")
    for exact, name in ((False, "MLFlowLogger"), (True, "ExactHistoryLogger + callback")):
        rate = statistics.median(r for r, _, _ in fit[exact])
        extra = f"{fit[exact][0][1]} ({fit[exact][0][2] / 1024:.0f} KiB)" if exact else "-"
        print(f"| {name:29} | {1000 * statistics.median(logging_s[exact]):28.2f} | {rate:16.2f} | {extra:>29} |")
    print("\nfit steps/s of each repeat: " + "; ".join(
        f"{name} {' '.join(f'{r:.1f}' for r, _, _ in fit[exact])}" for exact, name in ((False, "plain"), (True, "exact"))))


if __name__ == "__main__":
    main()
