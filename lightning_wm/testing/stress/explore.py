"""The search loop of `lwm stress` and what it finds: failures, their rate, their confirmation.

`search_failures` spends a budget of episodes in rounds of `batch` points: the search proposes,
the runner evaluates in the learned simulator, the search is told the objectives. `top_failures`
keeps the k worst failed episodes (distinct points); `confirm` re-runs them in the reference world:
"confirmed" when the episode fails there too, "simulator artefact" when it does not (and why).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lightning_wm.testing.stats import clopper_pearson
from lightning_wm.testing.stress.runner import Evaluated, StressRunner
from lightning_wm.testing.stress.search import CrossEntropySearch, RandomSearch


@dataclass
class SearchResult:
    """Every evaluated episode in order, and the failures found after each round (the budget curve)."""

    evaluated: list[Evaluated] = field(default_factory=list)
    curve: list[tuple[int, int]] = field(default_factory=list)  # (episodes so far, failures so far)
    seconds: float = 0.0

    @property
    def failures(self) -> list[Evaluated]:
        return [e for e in self.evaluated if e.failed]

    def failure_rate(self) -> dict[str, Any]:
        """Failed share of the evaluated episodes with its 95% Clopper-Pearson interval."""
        n, k = len(self.evaluated), len(self.failures)
        low, high = clopper_pearson(k, n) if n else (0.0, 1.0)
        return {"failures": k, "episodes": n, "rate": k / n if n else None, "low": low, "high": high}


def search_failures(runner: StressRunner, search: RandomSearch | CrossEntropySearch, budget: int, batch: int,
                    progress: Any = None) -> SearchResult:
    """Spend `budget` episodes in rounds of at most `batch`; progress(done, failures) after each round."""
    result = SearchResult()
    start = time.perf_counter()
    while len(result.evaluated) < budget:
        count = min(batch, budget - len(result.evaluated))
        points = search.propose(count)
        evaluated = runner.evaluate(points, len(result.evaluated))
        search.update(points, np.array([e.objective for e in evaluated]))
        result.evaluated += evaluated
        result.curve.append((len(result.evaluated), len(result.failures)))
        if progress is not None:
            progress(len(result.evaluated), len(result.failures))
    result.seconds = time.perf_counter() - start
    return result


def first_event(row: dict[str, Any]) -> float:
    """The closed-loop step of the first collision or off-road event (inf: none)."""
    steps = [row.get(k) for k in ("first_collision_step", "first_off_road_step") if row.get(k) is not None]
    return min(steps) if steps else float("inf")


def top_failures(result: SearchResult, k: int) -> list[Evaluated]:
    """The k failed episodes with the lowest objective, one per distinct point. Among equal
    objectives (many failures score PDMS 0) the most severe first: the earliest collision or
    off-road event, then the least latent noise (a failure the learned simulator's own noise
    causes has no counterpart in the reference world)."""
    seen, top = set(), []
    for e in sorted(result.failures, key=lambda e: (e.objective, first_event(e.row), e.point.latent_eps, e.id)):
        key = tuple(np.round(e.vector, 9))
        if key not in seen:
            seen.add(key)
            top.append(e)
        if len(top) == k:
            break
    return top


def why(learned: dict[str, Any], reference: dict[str, Any], floor: float) -> str:
    """What each simulator made of one episode, in a few words."""
    def events(row: dict[str, Any]) -> str:
        found = [name for name, key in (("collision", "collision"), ("off-road", "off_road")) if row.get(key)]
        pdms = row.get("pdms") or 0.0
        if not found and pdms <= floor:
            found.append(f"PDMS {pdms:.2f} <= {floor}")
        return ", ".join(found) or f"clean (PDMS {pdms:.2f})"

    return f"learned: {events(learned)}; reference: {events(reference)}"


def confirm(runner: StressRunner, failures: list[Evaluated], record_frames: bool = False) -> list[dict[str, Any]]:
    """Re-run each failure in the reference world (same id, so the same names and seeds). A
    simulator artefact with latent noise is also run in the learned simulator without it, which
    says what made the learned simulator fail: its latent noise, or its own picture of the scene."""
    out = []
    latent_at = runner.space.names.index("latent_eps")
    for failure in failures:
        (again,) = runner.evaluate(failure.vector[None], failure.id, "reference", record_frames=record_frames)
        reason, cause = why(failure.row, again.row, runner.success_min_pdms), None
        if not again.failed:
            cause = "learned simulator"
            if failure.point.latent_eps > 0:
                quiet = failure.vector.copy()
                quiet[latent_at] = 0.0
                (without,) = runner.evaluate(quiet[None], failure.id, "learned")
                cause = "learned simulator" if without.failed else "latent noise"
                reason += ("; it still fails in the learned simulator without its latent noise" if without.failed
                           else "; without its latent noise the learned simulator does not fail it either")
        out.append({"id": failure.id, "episode": failure.name, "confirmed": again.failed,
                    "verdict": "confirmed" if again.failed else "simulator artefact", "artefact_cause": cause,
                    "why": reason, "reference": again.row, "record": again.record})
    return out
