"""Where the learned simulator's collision and off-road verdicts go wrong: ego motion or BEV head.

    lwm fit                                                        # a world model with its BEV head
    python benchmarks/bench_sim_to_sim.py --ckpt PATH --episodes 200

The episodes of `lwm regress`'s nominal suite (its first --episodes) run three ways per policy:

- learned: the world model alone (trajectory from its ego-motion head, occupancy from its BEV head);
- reference: the synthetic world, the policy driving;
- reference@learned: the synthetic world with the ego driven along the learned simulator's own
  trajectory (its speeds and yaw rates, step by step, through the same controller).

Agreement on episodes with a collision or an off-road event, against what each is compared to:

- reference@learned vs reference: what the ego-motion head's trajectory alone costs (exact world);
- learned vs reference@learned: what the BEV head alone costs (the same trajectory, up to tracking);
- learned vs reference: both, the figure `lwm regress reference=true` reports.

Each row gives the events on both sides, recall (the compared side's events the first finds),
precision and Cohen's kappa, pooled over the policies; per policy and event kind below it.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from lightning_wm.config import compose_config, to_object
from lightning_wm.models.loading import load_world_model, resolve_world_model
from lightning_wm.policies.base import EpisodeInfo, Observation
from lightning_wm.policies.replay import LogReplay
from lightning_wm.policies.speed_up import SpeedUp
from lightning_wm.simulation.closed_loop import batch_from_logs
from lightning_wm.simulation.episodes import record_log
from lightning_wm.simulation.learned import LearnedSimulator
from lightning_wm.simulation.reference import ReferenceSimulator
from lightning_wm.simulation.runner import RunResult, run
from lightning_wm.simulation.scoring import ScoringConfig
from lightning_wm.testing.sim_to_sim import EVENTS
from lightning_wm.testing.stats import binary_agreement
from lightning_wm.testing.suites import resolve_suite

POLICIES = {"log_replay": LogReplay, "speed_up": SpeedUp}


class ReplayTrajectory:
    """Drives each episode with the speed and yaw rate of a given trajectory, step by step."""

    needs_frames = False

    def __init__(self, motion: dict[str, np.ndarray], action_names: list[str]) -> None:
        self.motion = motion  # episode -> [H, 2] (speed m/s, yaw rate rad/s) from each step to the next
        self.speed_at, self.yaw_at = action_names.index("speed"), action_names.index("yaw_rate")
        self.width = len(action_names)

    def reset(self, info: EpisodeInfo) -> None:
        self.actions = torch.zeros(info.batch, info.horizon, self.width)
        trajectory = torch.from_numpy(np.stack([self.motion[name] for name in info.episode_ids])).float()
        self.actions[..., self.speed_at], self.actions[..., self.yaw_at] = trajectory[..., 0], trajectory[..., 1]

    def act(self, observation: Observation) -> torch.Tensor:
        return self.actions[:, observation.step]


def driven_motion(result: RunResult, fps: float) -> dict[str, np.ndarray]:
    """episode -> [H, 2] the speed and yaw rate of each record's poses [H+1, 3]."""
    motion = {}
    for record in result.records:
        poses = record.poses.double().numpy()
        step = np.diff(poses, axis=0)
        yaw = np.array([math.remainder(d, 2 * math.pi) for d in step[:, 2]])
        motion[record.row["episode"]] = np.stack([np.hypot(step[:, 0], step[:, 1]), yaw], 1) * fps
    return motion


def events(result: RunResult, kind: str) -> dict[str, bool]:
    return {r["episode"]: EVENTS[kind](r) for r in result.rows}


def agreement(found: dict[str, bool], truth: dict[str, bool]) -> dict:
    names = sorted(truth)
    return binary_agreement([found[n] for n in names], [truth[n] for n in names])


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def row(label: str, found: dict[str, bool], truth: dict[str, bool]) -> str:
    a = agreement(found, truth)
    return (f"| {label} | {a['n']} | {a['tp'] + a['fp']} | {a['tp'] + a['fn']} | {a['tp']} | {fmt(a['recall'])} | "
            f"{fmt(a['precision'])} | {fmt(a['kappa'])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default="last", help="world-model checkpoint, or `last` (newest in --runs-dir)")
    parser.add_argument("--runs-dir", default="lwm_runs", help="where `lwm fit` put its runs")
    parser.add_argument("--episodes", type=int, default=200, help="episodes of the nominal suite per policy")
    parser.add_argument("--batch", type=int, default=50, help="episodes run at once")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    args = parser.parse_args()

    model, _ = load_world_model(resolve_world_model(args.ckpt, Path(args.runs_dir)))
    cfg = to_object(compose_config("regress", ["logger=none"]), "regress")
    dataset, scoring, fps = cfg.data.synthetic, ScoringConfig(), cfg.data.synthetic.world.fps
    suite = resolve_suite(cfg.suite, dataset, args.episodes)
    logs = [record_log(e.spec, dataset) for e in suite.episodes]
    learned, reference = LearnedSimulator(model), ReferenceSimulator(dataset, model.config.bev)
    cameras = learned.camera_names
    views = [list(dataset.rig.camera_names).index(c) for c in cameras]
    batches = [batch_from_logs(logs[i: i + args.batch], model.action_names, views)
               for i in range(0, len(logs), args.batch)]
    pooled: dict[str, dict[str, dict[str, bool]]] = {"learned": {}, "reference": {}, "reference@learned": {}}
    per_policy = []
    start = time.perf_counter()
    for name in args.policies:
        runs = {"learned": run(learned, batches, POLICIES[name](), name, model.config.bev, scoring, fps,
                               model.action_names, cameras, record_frames=False)}
        runs["reference"] = run(reference, batches, POLICIES[name](), name, model.config.bev, scoring, fps,
                                model.action_names, cameras, record_frames=False)
        replay = ReplayTrajectory(driven_motion(runs["learned"], fps), model.action_names)
        runs["reference@learned"] = run(reference, batches, replay, "replay", model.config.bev, scoring, fps,
                                        model.action_names, cameras, record_frames=False)
        tracking = np.mean([r["tracking_speed_mps"] for r in runs["reference@learned"].rows])
        per_policy.append((name, runs, tracking))
        for kind, result in runs.items():
            pooled[kind] |= {f"{name}/{e}": v for e, v in events(result, "collision_or_off_road").items()}

    print(f"\n{len(suite.episodes)} nominal episodes x {len(args.policies)} policies ({', '.join(args.policies)}), "
          f"{time.perf_counter() - start:.0f} s; event = collision or off-road")
    header = "| compared | episodes | events (first) | events (second) | both | recall | precision | kappa |"
    print(header + "\n|---|---:|---:|---:|---:|---:|---:|---:|")
    print(row("reference@learned vs reference (ego motion alone)", pooled["reference@learned"], pooled["reference"]))
    print(row("learned vs reference@learned (BEV head alone)", pooled["learned"], pooled["reference@learned"]))
    print(row("learned vs reference (both)", pooled["learned"], pooled["reference"]))
    print("\nper policy and event kind (learned vs reference | ego motion alone | BEV head alone);"
          " replayed trajectories tracked to within the mean speed error given")
    print("| policy | event | learned vs reference | reference@learned vs reference | learned vs reference@learned |"
          " tracking m/s |\n|---|---|---|---|---|---:|")
    for name, runs, tracking in per_policy:
        for kind in ("collision", "off_road"):
            got = {k: events(r, kind) for k, r in runs.items()}
            cells = []
            for found, truth in (("learned", "reference"), ("reference@learned", "reference"),
                                 ("learned", "reference@learned")):
                a = agreement(got[found], got[truth])
                cells.append(f"{a['tp'] + a['fp']}/{a['tp'] + a['fn']} found, both {a['tp']}, "
                             f"recall {fmt(a['recall'])}, kappa {fmt(a['kappa'])}")
            print(f"| {name} | {kind} | {' | '.join(cells)} | {tracking:.2f} |")


if __name__ == "__main__":
    main()
