"""Run a suite: every policy under every perturbation in every simulator, then the verdicts.

`run_suite` drives the episodes (`simulation.runner.run`) and returns a `SuiteRuns`: RunResults
keyed by policy, simulator and perturbation. A policy given twice (the same spec as candidate and
baseline) runs once. Latent-only perturbations run in the learned simulator only: the reference
world has no latent, so its result would be the nominal one again. `verdicts` turns the runs into
JUnit checks: thresholds per simulator, candidate against baseline per simulator, and, with both
simulators, the sim-to-sim checks.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from datamodules.bev import BevGrid
from lightning_wm.simulation.closed_loop import EpisodeBatch
from lightning_wm.simulation.learned import LearnedSimulator
from lightning_wm.simulation.reference import ReferenceSimulator
from lightning_wm.simulation.runner import RunResult, run
from lightning_wm.simulation.scoring import ScoringConfig
from lightning_wm.testing.checks import comparison_checks, gate, threshold_checks, thresholds_for
from lightning_wm.testing.junit import Check
from lightning_wm.testing.perturbation import PerturbedPolicy
from lightning_wm.testing.sim_to_sim import sim_to_sim, sim_to_sim_checks
from lightning_wm.testing.suites import Perturbation, Suite


@dataclass
class SuitePolicy:
    """A policy of the run: its spec string (tags, reports) and the instance."""

    spec: str
    policy: Any


@dataclass
class SuiteRuns:
    """results[spec][simulator][perturbation] -> RunResult; roles: candidate/baseline -> spec."""

    roles: dict[str, str]
    results: dict[str, dict[str, dict[str, RunResult]]] = field(default_factory=dict)

    def rows(self, spec: str, simulator: str) -> dict[str, list[dict[str, Any]]]:
        return {name: result.rows for name, result in self.results.get(spec, {}).get(simulator, {}).items()}

    @property
    def simulators(self) -> list[str]:
        return sorted({s for by_sim in self.results.values() for s in by_sim}, key=["learned", "reference"].index)


def with_latent_eps(simulator: LearnedSimulator, eps: float) -> LearnedSimulator:
    """The same learned simulator with latent noise `eps` after the context."""
    perturbed = copy.copy(simulator)
    perturbed.latent_eps = eps
    return perturbed


def run_suite(simulators: dict[str, LearnedSimulator | ReferenceSimulator], batches: list[EpisodeBatch],
              policies: dict[str, SuitePolicy], perturbations: list[Perturbation], grid: BevGrid,
              scoring: ScoringConfig, fps: float, action_names: list[str], camera_names: list[str], seed: int,
              record: tuple[str, ...] = ()) -> SuiteRuns:
    """policies: role -> SuitePolicy (candidate, baseline, extra...); `record`: the specs whose nominal
    runs keep their frames (the worst-episode videos)."""
    runs = SuiteRuns({role: p.spec for role, p in policies.items()})
    unique = {p.spec: p for p in policies.values()}
    for spec, entry in unique.items():
        for kind, simulator in simulators.items():
            for perturbation in perturbations:
                if kind == "reference" and perturbation.latent_eps > 0:
                    continue
                sim = with_latent_eps(simulator, perturbation.latent_eps) if kind == "learned" else simulator
                policy = entry.policy if perturbation.is_nominal else PerturbedPolicy(entry.policy, perturbation, seed)
                keep = perturbation.is_nominal and spec in record
                result = run(sim, batches, policy, spec, grid, scoring, fps, action_names, camera_names,
                             record_frames=keep)
                for row in result.rows:
                    row["policy"], row["perturbation"] = spec, perturbation.name
                runs.results.setdefault(spec, {}).setdefault(kind, {})[perturbation.name] = result
    return runs


def hazard_pairs(runs: SuiteRuns, spec: str) -> tuple[list[float], list[bool]] | None:
    """(the learned hazard head's highest probability, whether the reference collided) per nominal episode."""
    learned = runs.rows(spec, "learned").get("none")
    reference = runs.rows(spec, "reference").get("none")
    if not learned or not reference or learned[0].get("hazard_max") is None:
        return None
    outcome = {r["episode"]: bool(r["collision"]) for r in reference}
    pairs = [(r["hazard_max"], outcome[r["episode"]]) for r in learned if r["episode"] in outcome]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def verdicts(runs: SuiteRuns, suite: Suite, strict: bool) -> tuple[list[Check], int, dict[str, Any]]:
    """(JUnit checks, exit code, the sim-to-sim report or {})."""
    thresholds = suite.config.thresholds
    # coverage is a long-tail question: other suites hold too few episodes of a type to answer it
    types = {e.spec.name: e.types for e in suite.episodes} if suite.config.select == "long_tail" else {}
    tolerances = dict(suite.config.tolerances)
    candidate, baseline = runs.roles["candidate"], runs.roles["baseline"]
    checks: list[Check] = []
    regressions: list[str] = []
    for simulator in runs.simulators:
        hazard = hazard_pairs(runs, candidate) if simulator == "learned" else None
        base_hazard = hazard_pairs(runs, baseline) if simulator == "learned" else None
        cand = thresholds_for(runs.rows(candidate, simulator), types, thresholds, hazard)
        base = thresholds_for(runs.rows(baseline, simulator), types, thresholds, base_hazard)
        found, failed = threshold_checks(cand, base, simulator)
        checks += found
        regressions += failed
        checks += comparison_checks(runs.rows(candidate, simulator), runs.rows(baseline, simulator), tolerances,
                                    simulator)
    report: dict[str, Any] = {}
    if {"learned", "reference"} <= set(runs.simulators):
        specs = list(dict.fromkeys(runs.roles.values()))
        report = sim_to_sim({s: runs.rows(s, "learned")["none"] for s in specs},
                            {s: runs.rows(s, "reference")["none"] for s in specs})
        checks += sim_to_sim_checks(report, thresholds)
    return checks, gate(checks, regressions, strict), report
