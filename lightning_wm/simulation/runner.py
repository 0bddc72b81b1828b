"""Run a policy's episodes in a simulator, batch by batch, and score every episode.

`run` is what `lwm simulate` (and the regression suites after it) call: batches of episodes go
through one simulator with one policy, each is scored by `scoring.score` against its log, and the
rows come back with what the videos of the worst episodes need. `summarise` turns rows into the
figures a report shows: mean PDMS and sub-scores, collision and off-road rates, L2 to the log.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from datamodules.bev import BevGrid
from lightning_wm.policies.base import Policy
from lightning_wm.simulation.closed_loop import EpisodeBatch, SimRollout
from lightning_wm.simulation.learned import LearnedSimulator
from lightning_wm.simulation.reference import ReferenceSimulator
from lightning_wm.simulation.scoring import ScoringConfig, score

SUB_SCORES = ("pdms", "nc", "dac", "ttc", "ep", "comfort")
RATES = {"collision_rate": "collision", "at_fault_collision_rate": "at_fault_collision", "off_road_rate": "off_road"}


@dataclass
class EpisodeRecord:
    """One scored episode and what its video needs (policy view, BEV, poses)."""

    row: dict[str, Any]
    frames: np.ndarray | None  # uint8 [H, V, h, w, 3]
    occupancy: torch.Tensor  # bool [H, 3, gh, gw]
    poses: torch.Tensor  # [H+1, 3]


@dataclass
class RunResult:
    simulator: str
    records: list[EpisodeRecord] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [r.row for r in self.records]


def run(simulator: LearnedSimulator | ReferenceSimulator, batches: list[EpisodeBatch], policy: Policy,
        policy_name: str, grid: BevGrid, scoring: ScoringConfig, fps: float, action_names: list[str],
        camera_names: list[str], record_frames: bool = True) -> RunResult:
    """Every batch through `simulator` with `policy`; one scored row per episode."""
    kind = "learned" if isinstance(simulator, LearnedSimulator) else "reference"
    result = RunResult(kind)
    start = time.perf_counter()
    for batch in batches:
        if kind == "learned":
            rollout = simulator.run(batch, policy, policy_name, record_frames=record_frames)
        else:
            rollout = simulator.run(batch, policy, action_names, camera_names, policy_name,
                                    record_frames=record_frames)
        result.records += score_batch(kind, batch, rollout, grid, scoring, fps)
    result.seconds = time.perf_counter() - start
    return result


def score_batch(kind: str, batch: EpisodeBatch, rollout: SimRollout, grid: BevGrid, scoring: ScoringConfig,
                fps: float) -> list[EpisodeRecord]:
    log_poses = torch.from_numpy(batch.log_poses)
    log_progress = torch.from_numpy(batch.log_progress_m)
    scores = score(rollout.outcome, log_poses, log_progress, grid, fps, scoring)
    if "idm_poses" in rollout.extras:  # the trajectory the generated video implies, scored beside
        idm = rollout.extras["idm_poses"]
        for seconds in scoring.l2_horizons_s:
            k = round(seconds * fps)
            if k < idm.shape[1]:
                scores[f"idm_l2_{seconds:g}s"] = (idm[:, k, :2] - log_poses[:, k, :2]).double().norm(dim=-1)
    records = []
    for b, name in enumerate(batch.names):
        row: dict[str, Any] = {"episode": name, "simulator": kind}
        row |= {key: finite(value[b].item()) for key, value in scores.items()}
        row |= {key: finite(float(np.asarray(value)[b])) for key, value in rollout.extras.items() if key != "idm_poses"}
        frames = rollout.frames[b] if rollout.frames is not None else None
        records.append(EpisodeRecord(row, frames, rollout.outcome.occupancy[b], rollout.outcome.poses[b]))
    return records


def finite(value: float) -> float | None:
    """NaN (unscored) -> None, so JSON stays strict."""
    return value if math.isfinite(value) else None


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of every score over the episodes that have it, rates of collisions and off-road events."""
    def mean(key: str) -> float | None:
        values = [r[key] for r in rows if r.get(key) is not None]
        return float(np.mean(values)) if values else None

    keys = [k for k, v in rows[0].items() if not isinstance(v, str)] if rows else []  # not names (episode, policy...)
    summary: dict[str, Any] = {"episodes": len(rows)}
    summary |= {key: mean(key) for key in keys if key not in RATES.values()}
    summary |= {rate: mean(key) for rate, key in RATES.items()}
    summary["dac_scored"] = any(r.get("dac") is not None for r in rows)
    if any(r.get("hazard_max") is not None for r in rows):  # the hazard head beside the scorer's collisions
        collided = [r["hazard_max"] for r in rows if r["collision"]]
        clean = [r["hazard_max"] for r in rows if not r["collision"]]
        summary["hazard_max_collided"] = float(np.mean(collided)) if collided else None
        summary["hazard_max_clean"] = float(np.mean(clean)) if clean else None
    return summary
