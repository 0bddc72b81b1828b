"""The promotion gate: the gated metrics of an evaluation, and the candidate against the champion.

`gated_metrics` reads from an evaluation's results (`Evaluator.run`) the figures a release
depends on, each with the direction that is better:

    psnr/<h>                 PSNR of the generated frame at each horizon (dB, higher)
    ade/<h>, fde/<h>         displacement error of the motion the rollout implies (m, lower)
    action_following         share of left/right counterfactuals that turn the commanded way (higher)
    hazard_auroc             hazard head on the imagined states vs the logged hazards (higher)
    bev_iou/<when>           mean BEV IoU over the classes measured (observed state, each horizon; higher)
    sim_to_sim/<figure>      agreement of the learned simulator with the reference world on a suite's
                             episodes: event recall and Cohen's kappa (collision or off-road), PDMS
                             Pearson correlation (`lightning_wm.testing.sim_to_sim`; higher)

`compare` gates the candidate against the champion: a metric regresses when it is worse by more
than its tolerance (`tolerances`, keyed by the name before the first "/"); a metric the champion
or the candidate cannot measure (no hazard events in the split: AUROC undefined) is skipped, said
so, never passed silently. Each comparison is one JUnit check (classname `promote`).
"""

from __future__ import annotations

from typing import Any

from lightning_wm.testing.junit import Check

HIGHER_IS_BETTER = {"psnr": True, "ade": False, "fde": False, "action_following": True, "hazard_auroc": True,
                    "bev_iou": True, "sim_to_sim": True}
DEFAULT_TOLERANCES = {"psnr": 0.5, "ade": 0.25, "fde": 0.5, "action_following": 0.05, "hazard_auroc": 0.02,
                      "bev_iou": 0.02, "sim_to_sim": 0.1}


def gated_metrics(results: dict[str, Any]) -> dict[str, float | None]:
    """{name: value or None (not measurable)} of one evaluation's results."""
    out: dict[str, float | None] = {}
    for label, value in results["video"]["at_horizon"]["model"]["psnr"].items():
        if label != "1step":
            out[f"psnr/{label}"] = value
    for key, value in results["trajectory"]["generated"].items():  # "ade/1s", "fde/3s", ...
        out[key] = value
    out["action_following"] = results["action_following"]["generated"]["accuracy"]
    out["hazard_auroc"] = results["hazard"].get("auroc")
    for when, classes in results["bev_iou"].items():
        measured = [v for v in classes.values() if v is not None]
        out[f"bev_iou/{when}"] = sum(measured) / len(measured) if measured else None
    return out


def kind(metric: str) -> str:
    return metric.split("/")[0]


def compare(candidate: dict[str, float | None], champion: dict[str, float | None] | None,
            tolerances: dict[str, float]) -> list[Check]:
    """One check per gated metric; with no champion every measurable metric passes (first version)."""
    checks = []
    for metric, value in candidate.items():
        tolerance = tolerances[kind(metric)]
        higher = HIGHER_IS_BETTER[kind(metric)]
        better = "higher" if higher else "lower"
        if champion is None:
            status = "pass" if value is not None else "skip"
            checks.append(Check(metric, "promote", status, "no champion: nothing to compare with" if value is not None
                                else "not measurable on this protocol's data", f"candidate {_fmt(value)}"))
            continue
        old = champion.get(metric)
        if value is None or old is None:
            who = "candidate" if value is None else "champion"
            checks.append(Check(metric, "promote", "skip", f"not measurable for the {who} on this protocol's data",
                                f"candidate {_fmt(value)}, champion {_fmt(old)}"))
            continue
        worse_by = (old - value) if higher else (value - old)
        change = f"worse by {_fmt(worse_by)}" if worse_by > 0 else f"better by {_fmt(-worse_by)}" if worse_by else "equal"
        details = f"candidate {_fmt(value)}, champion {_fmt(old)}, {change} (tolerance {tolerance:g}; {better} is better)"
        if worse_by > tolerance:
            checks.append(Check(metric, "promote", "fail", f"{metric} regressed: {details}", details))
        else:
            checks.append(Check(metric, "promote", "pass", "", details))
    return checks


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
