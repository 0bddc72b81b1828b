"""Closed-loop episodes per second of both simulators, and what an episode's preparation costs.

    lwm fit                                              # a world model with its BEV head
    python benchmarks/bench_simulation.py --episodes 200 # newest lwm_runs/*/checkpoints/last.ckpt

Each simulator runs the same held-out episodes (8 context + 30 closed-loop steps at 10 Hz) with
each policy, in batches; the table gives episodes/s, closed-loop steps/s and peak RSS, with the
log recording (rendering the context, driving the scripted driver) counted apart. Frames are
recorded as `lwm simulate` does (for the worst-episode videos).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch

from lightning_wm.models.loading import load_world_model, resolve_world_model
from lightning_wm.policies.lane_keeping import LaneKeeping
from lightning_wm.policies.replay import ConstantVelocity, LogReplay
from lightning_wm.simulation.closed_loop import batch_from_logs
from lightning_wm.simulation.episodes import heldout_episodes, record_log
from lightning_wm.simulation.learned import LearnedSimulator
from lightning_wm.simulation.reference import ReferenceSimulator
from lightning_wm.simulation.runner import run
from lightning_wm.simulation.scoring import ScoringConfig
from sharding.synthetic.source import SyntheticDatasetConfig

POLICIES = {"log_replay": LogReplay, "constant_velocity": ConstantVelocity, "lane_keeping": LaneKeeping}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default="last", help="world-model checkpoint, or `last` (newest in --runs-dir)")
    parser.add_argument("--runs-dir", default="lwm_runs", help="where `lwm fit` put its runs")
    parser.add_argument("--episodes", type=int, default=200, help="episodes per simulator and policy")
    parser.add_argument("--batch", type=int, default=50, help="episodes run at once")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    args = parser.parse_args()

    model, _ = load_world_model(resolve_world_model(args.ckpt, Path(args.runs_dir)))
    dataset = SyntheticDatasetConfig()
    start = time.perf_counter()
    logs = [record_log(spec, dataset) for spec in heldout_episodes(args.episodes, dataset, 8, 30)]
    prepared = time.perf_counter() - start
    batches = [batch_from_logs(logs[i : i + args.batch], model.action_names, [0])
               for i in range(0, len(logs), args.batch)]
    simulators = {"learned": LearnedSimulator(model), "reference": ReferenceSimulator(dataset, model.config.bev)}
    print(f"\n{args.episodes} episodes (8 + 30 steps), batches of {args.batch}, torch threads "
          f"{torch.get_num_threads()}; recording the logs: {prepared:.1f} s ({args.episodes / prepared:.1f} episodes/s)")
    print("| simulator | policy | episodes/s | closed-loop steps/s | peak RSS MiB |")
    print("|---|---|---:|---:|---:|")
    for name, simulator in simulators.items():
        for policy in args.policies:
            result = run(simulator, batches, POLICIES[policy](), policy, model.config.bev, ScoringConfig(), 10.0,
                         model.action_names, ["front"])
            rate = args.episodes / result.seconds
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"| {name} | {policy} | {rate:.1f} | {rate * 30:.0f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
