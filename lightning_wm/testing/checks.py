"""The verdicts of a regression run: the seed's thresholds and candidate against baseline.

Inputs are scored episode rows (`simulation.runner`: one dict per episode with pdms, nc, dac, ttc,
ep, comfort, collision, off_road, l2_3s, hazard_max...) of one simulator, grouped by policy role
("candidate", "baseline") and perturbation name. Every check becomes a JUnit testcase:

- an absolute threshold passes only when the 95% interval of the candidate's figure is on the
  right side of it (Clopper-Pearson for rates, bootstrap for means); when the interval straddles
  it the check is *undecided* (skipped, with the episodes a clean run would need), never a pass;
  when the baseline fails it too, the message says so (the candidate is no worse than the
  reference driver there, as NAVSIM's human filter treats it);
- candidate against baseline, per perturbation and metric in `tolerances`: a regression is
  called when the whole 95% interval of (how much worse the candidate is) lies above the
  tolerance: Newcombe's interval for rates, a paired bootstrap for means over the same episodes.

`gate` is the exit code: 1 on a regression or on a decided threshold failure the baseline
passes (strict: also on every failing or undecided threshold), else 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.classification import binary_auroc

from lightning_wm.testing.junit import Check
from lightning_wm.testing.stats import (
    bootstrap_mean,
    bootstrap_mean_difference,
    clopper_pearson,
    episodes_needed,
    rate_difference_interval,
)
from lightning_wm.testing.suites import Thresholds

HIGHER_IS_BETTER = {"pdms", "nc", "dac", "ttc", "ep", "comfort", "success"}
RATE_METRICS = {"collision_rate": "collision", "off_road_rate": "off_road", "success": "success"}
DEFAULT_TOLERANCES = {"pdms": 0.02, "collision_rate": 0.01, "off_road_rate": 0.01, "ep": 0.02, "l2_3s": 0.25}

Rows = list[dict[str, Any]]


def success(row: dict[str, Any], min_pdms: float) -> bool:
    """No collision, no off-road event, PDMS above the floor."""
    return not row["collision"] and not row.get("off_road") and (row.get("pdms") or 0.0) > min_pdms


@dataclass
class Verdict:
    """One threshold on one policy: status pass | fail | undecided | off, and the figures."""

    status: str
    value: float | None
    low: float | None
    high: float | None
    note: str = ""

    def text(self) -> str:
        if self.value is None:
            return self.note
        return f"{self.value:.4f} (95% {self.low:.4f}..{self.high:.4f}){'; ' + self.note if self.note else ''}"


def upper_bound_check(k: int, n: int, limit: float) -> Verdict:
    """A rate that must stay below `limit` (k events in n episodes): a one-sided 95% claim, so the
    upper end of the 90% two-sided interval (as `episodes_needed` counts: 0 of 2,995 for 0.1%)."""
    low, high = clopper_pearson(k, n, 0.90)
    if high < limit:
        return Verdict("pass", k / n, low, high)
    if low >= limit:
        return Verdict("fail", k / n, low, high)
    need = episodes_needed(limit) if k == 0 else None
    return Verdict("undecided", k / n, low, high,
                   f"needs {need} clean episodes" if need else "needs more episodes (or fewer events)")


def lower_bound_check(k: int, n: int, limit: float) -> Verdict:
    """A rate that must stay above `limit`."""
    low, high = clopper_pearson(k, n)
    if low > limit:
        return Verdict("pass", k / n, low, high)
    if high <= limit:
        return Verdict("fail", k / n, low, high)
    return Verdict("undecided", k / n, low, high, "the interval straddles the threshold; needs more episodes")


def mean_below_check(values: list[float], limit: float) -> Verdict:
    mean, low, high = bootstrap_mean(values)
    status = "pass" if high < limit else "fail" if low >= limit else "undecided"
    return Verdict(status, mean, low, high, "the interval straddles the threshold" if status == "undecided" else "")


def auroc_check(scores: list[float], labels: list[bool], limit: float) -> Verdict:
    if not any(labels) or all(labels):
        return Verdict("off", None, None, None, "no reference collision (or no clean episode) among these "
                                                "episodes: AUROC undefined")
    value = float(binary_auroc(torch.tensor(scores), torch.tensor(labels).long()))
    return Verdict("pass" if value > limit else "fail", value, value, value, f"{sum(labels)} of {len(labels)} "
                                                                              "episodes collided (reference)")


def thresholds_for(rows_by_perturbation: dict[str, Rows], types: dict[str, tuple[str, ...]], thresholds: Thresholds,
                   hazard: tuple[list[float], list[bool]] | None) -> dict[str, Verdict]:
    """Every absolute threshold of one policy's rows. `types`: episode name -> scenario types;
    `hazard`: (the learned hazard head's highest probability, the reference's collision) per episode."""
    out: dict[str, Verdict] = {}
    nominal = rows_by_perturbation.get("none", [])
    if thresholds.max_collision_rate is not None and nominal:
        out["nominal_collision_rate"] = upper_bound_check(sum(bool(r["collision"]) for r in nominal), len(nominal),
                                                          thresholds.max_collision_rate)
    if thresholds.min_success_rate is not None:
        for name, rows in rows_by_perturbation.items():
            if name != "none":
                wins = sum(success(r, thresholds.success_min_pdms) for r in rows)
                out[f"success_under/{name}"] = lower_bound_check(wins, len(rows), thresholds.min_success_rate)
    if thresholds.min_type_coverage is not None and nominal and any(types.values()):
        out["long_tail_coverage"] = coverage(nominal, types, thresholds)
    if thresholds.max_l2_3s_m is not None and nominal and all(r.get("l2_3s") is not None for r in nominal):
        out["planning_consistency_l2_3s"] = mean_below_check([r["l2_3s"] for r in nominal], thresholds.max_l2_3s_m)
    if thresholds.min_hazard_auroc is not None:
        out["failure_prediction_auroc"] = (auroc_check(*hazard, thresholds.min_hazard_auroc) if hazard else
                                           Verdict("off", None, None, None, "needs the learned simulator's hazard "
                                                   "head and the reference outcome (sim=CKPT reference=true)"))
    return out


def coverage(rows: Rows, types: dict[str, tuple[str, ...]], thresholds: Thresholds) -> Verdict:
    """Share of the suite's scenario types whose success rate passes the floor (point estimates)."""
    per_type: dict[str, list[bool]] = {}
    for row in rows:
        for kind in types.get(row["episode"], ()):
            per_type.setdefault(kind, []).append(success(row, thresholds.success_min_pdms))
    handled = {k: float(np.mean(v)) for k, v in per_type.items()}
    share = sum(v >= thresholds.min_success_rate for v in handled.values()) / len(handled)
    note = ", ".join(f"{k} {v:.2f} ({len(per_type[k])})" for k, v in sorted(handled.items()))
    return Verdict("pass" if share > thresholds.min_type_coverage else "fail", share, share, share,
                   f"success by type: {note}")


def compare(candidate: Rows, baseline: Rows, metric: str, tolerance: float) -> tuple[str, str]:
    """(pass | fail, message) of `metric` on the same episodes: fail when the candidate is worse
    than the baseline by more than `tolerance` with 95% confidence."""
    sign = 1.0 if metric in HIGHER_IS_BETTER else -1.0  # worse = sign * (baseline - candidate)
    if metric in RATE_METRICS:
        key = RATE_METRICS[metric]
        k_c, k_b = sum(bool(r[key]) for r in candidate), sum(bool(r[key]) for r in baseline)
        low, high = rate_difference_interval(k_c, len(candidate), k_b, len(baseline))  # candidate - baseline
        worse = -sign * (k_c / len(candidate) - k_b / len(baseline))
        worse_low, worse_high = sorted((-sign * low, -sign * high))
        figures = f"candidate {k_c}/{len(candidate)}, baseline {k_b}/{len(baseline)}"
    else:
        pairs = {r["episode"]: r[metric] for r in baseline if r.get(metric) is not None}
        matched = [(r[metric], pairs[r["episode"]]) for r in candidate if r.get(metric) is not None
                   and r["episode"] in pairs]
        if not matched:
            return "skip", f"{metric}: no episode has it in both runs"
        diff, low, high = bootstrap_mean_difference([m[1] for m in matched], [m[0] for m in matched])  # base - cand
        worse, (worse_low, worse_high) = sign * diff, sorted((sign * low, sign * high))
        figures = (f"candidate {np.mean([m[0] for m in matched]):.4f}, baseline {np.mean([m[1] for m in matched]):.4f}"
                   f" over {len(matched)} episodes")
    status = "fail" if worse_low > tolerance else "pass"
    return status, (f"worse by {worse:+.4f} (95% {worse_low:+.4f}..{worse_high:+.4f}), tolerance {tolerance}; "
                    f"{figures}")


def threshold_checks(candidate: dict[str, Verdict], baseline: dict[str, Verdict],
                     simulator: str) -> tuple[list[Check], list[str]]:
    """JUnit checks of the candidate's thresholds, and the names of those it fails while the baseline
    passes them (regressions)."""
    checks, regressions = [], []
    for name, verdict in candidate.items():
        base = baseline.get(name)
        also = f"; baseline {base.status}: {base.text()}" if base is not None else ""
        if verdict.status == "off":
            checks.append(Check(name, f"thresholds.{simulator}", "skip", verdict.note))
        elif verdict.status == "undecided":
            checks.append(Check(name, f"thresholds.{simulator}", "skip", f"undecided: {verdict.text()}{also}"))
        else:
            status = "pass" if verdict.status == "pass" else "fail"
            message = verdict.text() + (also if status == "fail" else "")
            if status == "fail" and base is not None and base.status == "fail":
                message += " (the baseline fails it too: not a regression)"
            elif status == "fail" and base is not None and base.status == "pass":
                regressions.append(f"thresholds.{simulator}.{name}")
            checks.append(Check(name, f"thresholds.{simulator}", status, message))
    return checks, regressions


def comparison_checks(candidate: dict[str, Rows], baseline: dict[str, Rows], tolerances: dict[str, float],
                      simulator: str) -> list[Check]:
    checks = []
    for perturbation in candidate:
        for metric, tolerance in tolerances.items():
            status, message = compare(candidate[perturbation], baseline[perturbation], metric, tolerance)
            checks.append(Check(f"{perturbation}/{metric}", f"candidate_vs_baseline.{simulator}", status, message))
    return checks


def gate(checks: list[Check], threshold_regressions: list[str], strict: bool) -> int:
    """The exit code: 1 on a regression (a failing candidate_vs_baseline check, or a threshold the
    candidate fails and the baseline passes); strict: also on any failing or undecided threshold."""
    if threshold_regressions:
        return 1
    for check in checks:
        kind = check.classname.split(".")[0]
        if check.status == "fail" and kind == "candidate_vs_baseline":
            return 1
        if strict and kind in ("thresholds", "sim_to_sim") and (check.status == "fail"
                                                                 or check.message.startswith("undecided")):
            return 1
    return 0
