"""What the rollout-video and robustness-sweep callbacks add to the default `lwm fit`.

    python benchmarks/bench_callbacks.py               # xs model on the synthetic default
    python benchmarks/bench_callbacks.py --threads 1   # on a busy machine (see benchmarks/README.md)
    python benchmarks/bench_callbacks.py --steps 20 --val-every 10 model.size=s

Runs a short real `lwm fit` (default model, data and callbacks; MLflow in a temporary folder)
and reads each callback's own timing from its log line, so the figures include rendering,
encoding and the upload to MLflow. The default budget validates `max_steps / val_check_interval`
times and sweeps once, which gives the total overhead of a default run.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import tempfile
import time
from pathlib import Path

import torch

from lightning_wm.cli import main as lwm
from lightning_wm.config import compose_config, to_object


class Timings(logging.Handler):
    """Collects the `(N.N s)` of the callbacks' info lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seconds: dict[str, list[float]] = {"rollout videos": [], "robustness sweep": []}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for name, values in self.seconds.items():
            if message.startswith(name) and (found := re.search(r"\((\d+\.\d+) s\)", message)):
                values.append(float(found.group(1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="training steps of the short run")
    parser.add_argument("--val-every", type=int, default=2, help="validate every N steps in the short run")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's choice; 1 avoids OpenMP contention on a busy machine)")
    parser.add_argument("overrides", nargs="*", help="more `lwm fit` overrides, e.g. model.size=tiny")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    default = to_object(compose_config("fit", args.overrides), "fit")
    validations = default.trainer.max_steps // default.trainer.val_check_interval
    timings = Timings()
    for name in ("callbacks.rollout_video", "callbacks.robustness_sweep"):
        logging.getLogger(name).addHandler(timings)
        logging.getLogger(name).setLevel(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="lwm-bench-callbacks-") as tmp:
        os.chdir(tmp)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        start = time.perf_counter()
        code = lwm(["fit", f"trainer.max_steps={args.steps}", f"trainer.val_check_interval={args.val_every}",
                    "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false", *args.overrides])
        wall = time.perf_counter() - start
        sizes = sorted(p.stat().st_size for p in Path(tmp, "mlartifacts").rglob("clip*"))
    assert code == 0, f"lwm fit exited {code}"
    video, sweep = timings.seconds["rollout videos"], timings.seconds["robustness sweep"]
    assert video and sweep, f"no callback timings were logged: {timings.seconds}"
    per_video, per_sweep = sum(video) / len(video), sum(sweep) / len(sweep)
    cfg = default.callbacks
    print(f"short run: {args.steps} steps, {len(video)} video logs, {len(sweep)} sweep(s), {wall:.0f} s wall, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}\n")
    print("| callback work (default settings) | seconds per call | calls in the default run "
          "| seconds in the default run |")
    print("|---|---:|---:|---:|")
    print(f"| rollout videos ({cfg['rollout_video']['num_clips']} clips, MP4 + GIF, upload) | {per_video:.2f} | "
          f"{validations} | {per_video * validations:.1f} |")
    print(f"| robustness sweep ({cfg['robustness_sweep']['num_clips']} clips, "
          f"{len(timings_settings(cfg['robustness_sweep']))} rollouts, JSON + PNG, upload) | {per_sweep:.2f} | 1 | "
          f"{per_sweep:.1f} |")
    print(f"| **total** | | | **{per_video * validations + per_sweep:.1f}** |")
    print(f"\nvideo files: {len(sizes)}, {sizes[0] / 1e3:.0f} to {sizes[-1] / 1e3:.0f} kB")


def timings_settings(sweep: dict) -> list:
    """Rollouts per sweep: the reference plus one per setting."""
    return [None, *sweep["latent_eps"], *sweep["action_noise"], *sweep["action_delays"], *sweep["speed_limits"],
            *sweep["yaw_limits"]]


if __name__ == "__main__":
    main()
