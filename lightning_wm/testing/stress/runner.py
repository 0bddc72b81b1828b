"""Evaluating stress points: build each point's episode, run it in a simulator, score it.

`StressRunner.evaluate(points, first_id)` runs a round of points [N, D] as episodes named
`<base episode>#<id>` (the id is the point's place in the search, so names and seeds are unique)
in the learned simulator, or, for confirmation, in the reference world (`simulator="reference"`:
the same scene edit and action perturbation; latent noise has no counterpart there). Each episode
gets its row of scores, its objective (lower = worse for the policy) and whether it failed
(`checks.success`: a collision, an off-road event or PDMS under the floor).
Objectives: `pdms` (the lowest PDMS) or `earliest_failure` (the step of the first collision or
off-road event over H for failed episodes, else 1 + PDMS: failing sooner is worse).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from datamodules.bev import BevGrid
from lightning_wm.simulation.closed_loop import EpisodeBatch, batch_from_logs
from lightning_wm.simulation.episodes import EpisodeLog, EpisodeSpec, record_log
from lightning_wm.simulation.learned import LearnedSimulator
from lightning_wm.simulation.reference import ReferenceSimulator
from lightning_wm.simulation.runner import EpisodeRecord, score_batch
from lightning_wm.simulation.scoring import ScoringConfig
from lightning_wm.testing.checks import success
from lightning_wm.testing.stress.apply import StressedPolicy, edited_spec, latent_noise
from lightning_wm.testing.stress.space import PerturbationSpace, StressPoint
from sharding.errors import ConfigError
from sharding.synthetic.source import SyntheticDatasetConfig

OBJECTIVES = ("pdms", "earliest_failure")


@dataclass
class Evaluated:
    """One point run as an episode."""

    id: int
    vector: np.ndarray  # [D], natural units
    point: StressPoint
    name: str
    record: EpisodeRecord
    objective: float
    failed: bool

    @property
    def row(self) -> dict[str, Any]:
        return self.record.row


def objective_of(row: dict[str, Any], horizon: int, objective: str) -> float:
    pdms = row.get("pdms") or 0.0
    if objective == "pdms":
        return pdms
    steps = [row.get(k) for k in ("first_collision_step", "first_off_road_step") if row.get(k) is not None]
    return min(steps) / horizon if steps else 1.0 + pdms


@dataclass
class StressRunner:
    """Everything a round of points needs: the space, the base suite's episodes, the simulators, the policy."""

    space: PerturbationSpace
    base: list[EpisodeSpec]
    dataset: SyntheticDatasetConfig
    simulators: dict[str, LearnedSimulator | ReferenceSimulator]
    policy: Any
    policy_name: str
    grid: BevGrid
    scoring: ScoringConfig
    action_names: list[str]
    camera_names: list[str]
    seed: int = 0
    objective: str = "pdms"
    success_min_pdms: float = 0.5

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective={self.objective!r}; choose one of {list(OBJECTIVES)}")
        self.views = [list(self.dataset.rig.camera_names).index(c) for c in self.camera_names]
        self.fps = self.dataset.world.fps
        self.unedited: dict[int, EpisodeLog] = {}  # base episode -> its log (points that edit no scene)

    def log(self, point: StressPoint) -> EpisodeLog:
        spec = edited_spec(self.base[point.episode], point)
        if spec.edit is not None:
            return record_log(spec, self.dataset)
        if point.episode not in self.unedited:
            self.unedited[point.episode] = record_log(spec, self.dataset)
        return self.unedited[point.episode]

    def batch(self, points: list[StressPoint], names: list[str]) -> EpisodeBatch:
        batch = batch_from_logs([self.log(p) for p in points], self.action_names, self.views)
        batch.names = list(names)
        return batch

    def evaluate(self, vectors: np.ndarray, first_id: int, simulator: str = "learned",
                 record_frames: bool = False) -> list[Evaluated]:
        """Run points [N, D] (ids first_id..) as one batch in `simulator`; one Evaluated per point."""
        points = [self.space.decode(v) for v in vectors]
        names = [f"{self.base[p.episode].name}#{first_id + i:05d}" for i, p in enumerate(points)]
        batch = self.batch(points, names)
        policy = StressedPolicy(self.policy, dict(zip(names, points)), self.action_names, self.seed)
        sim = self.simulators[simulator]
        if simulator == "learned":
            rollout = sim.run(batch, policy, self.policy_name, record_frames=record_frames,
                              latent=latent_noise(points))
        else:
            rollout = sim.run(batch, policy, self.action_names, self.camera_names, self.policy_name,
                              record_frames=record_frames)
        records = score_batch(simulator, batch, rollout, self.grid, self.scoring, self.fps)
        out = []
        for i, (vector, point, name, record) in enumerate(zip(vectors, points, names, records)):
            value = objective_of(record.row, batch.horizon, self.objective)
            out.append(Evaluated(first_id + i, np.asarray(vector, dtype=np.float64), point, name, record,
                                 value, not success(record.row, self.success_min_pdms)))
        return out

