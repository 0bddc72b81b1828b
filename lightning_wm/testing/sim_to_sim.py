"""Sim-to-sim: when can the learned simulator be trusted? The same episodes and policies in both.

For each policy: every summary metric in the learned and the reference simulator and the gap;
pooled over the policies, episode by episode: agreement on collisions, on off-road events and on
either (precision and recall of the learned simulator finding the reference's events, Cohen's
kappa: collisions are rare, so plain agreement says little), the correlation of PDMS; over the
policies: whether the learned simulator ranks them by mean PDMS as the reference does (Kendall
tau). Rows are `simulation.runner` episode rows, matched by episode name.
"""

from __future__ import annotations

from typing import Any

from lightning_wm.simulation.report import COLUMNS
from lightning_wm.simulation.runner import summarise
from lightning_wm.testing.junit import Check
from lightning_wm.testing.stats import binary_agreement, kendall_tau, pearson
from lightning_wm.testing.suites import Thresholds

Rows = list[dict[str, Any]]
EVENTS = {"collision": lambda r: bool(r["collision"]), "off_road": lambda r: bool(r.get("off_road")),
          "collision_or_off_road": lambda r: bool(r["collision"]) or bool(r.get("off_road"))}


def matched(learned: Rows, reference: Rows) -> list[tuple[dict, dict]]:
    by_name = {r["episode"]: r for r in reference}
    return [(r, by_name[r["episode"]]) for r in learned if r["episode"] in by_name]


def sim_to_sim(learned: dict[str, Rows], reference: dict[str, Rows]) -> dict[str, Any]:
    """{policies: {policy: {metric: {learned, reference, gap}}}, agreement: {event: binary_agreement},
    pdms_pearson, ranking: {learned, reference, kendall_tau}} over the policies run in both."""
    policies = [p for p in learned if p in reference]
    per_policy = {}
    for policy in policies:
        a, b = summarise(learned[policy]), summarise(reference[policy])
        per_policy[policy] = {key: {"learned": a.get(key), "reference": b.get(key),
                                    "gap": None if a.get(key) is None or b.get(key) is None else a[key] - b[key]}
                              for key, _ in COLUMNS}
    pairs = [pair for p in policies for pair in matched(learned[p], reference[p])]
    agreement = {name: binary_agreement([event(a) for a, _ in pairs], [event(b) for _, b in pairs])
                 for name, event in EVENTS.items()}
    pdms = [(a["pdms"], b["pdms"]) for a, b in pairs if a.get("pdms") is not None and b.get("pdms") is not None]
    ranks = {"learned": {p: per_policy[p]["pdms"]["learned"] for p in policies},
             "reference": {p: per_policy[p]["pdms"]["reference"] for p in policies}}
    ranks["kendall_tau"] = kendall_tau(list(ranks["learned"].values()), list(ranks["reference"].values()))
    return {"policies": per_policy, "episodes": len(pairs), "agreement": agreement,
            "pdms_pearson": pearson([x for x, _ in pdms], [y for _, y in pdms]) if pdms else None, "ranking": ranks}


def sim_to_sim_checks(report: dict[str, Any], thresholds: Thresholds) -> list[Check]:
    """JUnit checks of the agreement figures (classname sim_to_sim); they gate only under --strict."""
    events = report["agreement"]["collision_or_off_road"]
    figures = {"event_recall": (events["recall"], thresholds.min_event_recall),
               "event_precision": (events["precision"], thresholds.min_event_precision),
               "event_kappa": (events["kappa"], thresholds.min_event_kappa),
               "ranking_kendall_tau": (report["ranking"]["kendall_tau"], thresholds.min_rank_tau)}
    counts = (f"{events['tp'] + events['fn']} reference events, {events['tp'] + events['fp']} learned, "
              f"{events['tp']} both, over {events['n']} episodes")
    checks = []
    for name, (value, limit) in figures.items():
        if limit is None:
            continue
        where = counts if name != "ranking_kendall_tau" else f"{len(report['policies'])} policies"
        if value is None:
            checks.append(Check(name, "sim_to_sim", "skip", f"undefined ({where})"))
        else:
            status = "pass" if value >= limit else "fail"
            checks.append(Check(name, "sim_to_sim", status, f"{value:.3f} against >= {limit} ({where})"))
    return checks
