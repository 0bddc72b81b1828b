"""What `lwm regress` leaves behind, written all at once (`report_folder.staged`).

junit.xml (one testcase per check), summary.md (the verdict, the checks, the tables per simulator
and perturbation, the sim-to-sim figures), metrics.json (summaries, checks, sim-to-sim, suite and
its hash), episodes.jsonl (one row per episode, policy, perturbation and simulator) and videos/ of
the candidate's worst nominal episodes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datamodules.bev import BevGrid
from lightning_wm.report_folder import staged
from lightning_wm.simulation.report import COLUMNS, _num
from lightning_wm.simulation.runner import summarise
from lightning_wm.simulation.video import write_episode_video
from lightning_wm.testing.junit import Check, junit_xml
from lightning_wm.testing.regression import SuiteRuns

VERDICTS = {0: "PASS", 1: "REGRESSION"}


def summaries(runs: SuiteRuns) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """[spec][simulator][perturbation] -> `runner.summarise` of its rows (+ episodes/s)."""
    return {spec: {sim: {name: summarise(result.rows) | {"episodes_per_s": round(len(result.rows) / result.seconds, 2)}
                         for name, result in by_pert.items()} for sim, by_pert in by_sim.items()}
            for spec, by_sim in runs.results.items()}


def summary_markdown(info: dict[str, Any], checks: list[Check], code: int, tables: dict, sim2sim: dict) -> str:
    counts = {s: sum(c.status == s for c in checks) for s in ("pass", "fail", "skip")}
    lines = [f"# Regression suite `{info['suite']}` ({info['suite_hash']}): **{VERDICTS[code]}** (exit {code})", "",
             f"- candidate `{info['candidate']}`, baseline `{info['baseline']}`",
             f"- simulators: {', '.join(info['simulators'])}; world model `{info['sim']}`",
             f"- {info['episodes']} episodes ({info['episode_source']}), {info['context']} + {info['horizon']} steps; "
             f"perturbations: {', '.join(info['perturbations'])}",
             f"- checks: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped or undecided", "",
             "| check | status | figures |", "|---|---|---|"]
    lines += [f"| {c.classname}.{c.name} | {c.status} | {c.message} |" for c in checks]
    for spec, by_sim in tables.items():
        for sim, by_pert in by_sim.items():
            lines += ["", f"## `{spec}` in the {sim} simulator", "",
                      "| perturbation | " + " | ".join(t for _, t in COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
            lines += [f"| {name} | " + " | ".join(_num(s.get(k)) for k, _ in COLUMNS) + " |" for name, s in by_pert.items()]
    if sim2sim:
        events = sim2sim["agreement"]["collision_or_off_road"]
        lines += ["", "## Sim-to-sim (nominal episodes, learned against reference)", "",
                  f"Collision or off-road, episode by episode over {events['n']}: reference {events['tp'] + events['fn']}, "
                  f"learned {events['tp'] + events['fp']}, both {events['tp']}; recall {_num(events['recall'])}, "
                  f"precision {_num(events['precision'])}, Cohen's kappa {_num(events['kappa'])}. PDMS correlation "
                  f"over episodes {_num(sim2sim['pdms_pearson'])}; ranking of the policies by mean PDMS, Kendall tau "
                  f"{_num(sim2sim['ranking']['kendall_tau'])}.", "",
                  "| policy | PDMS learned | PDMS reference | collision learned | collision reference | off-road learned "
                  "| off-road reference |", "|---|---:|---:|---:|---:|---:|---:|"]
        for spec, figures in sim2sim["policies"].items():
            lines.append(f"| `{spec}` | " + " | ".join(_num(figures[k][s]) for k in ("pdms", "collision_rate",
                                                                                     "off_road_rate")
                                                      for s in ("learned", "reference")) + " |")
    if info.get("videos"):
        lines += ["", "Videos of the candidate's worst episodes: " + ", ".join(f"`{v}`" for v in info["videos"])]
    return "\n".join(lines) + "\n"


def write_report(out: Path, runs: SuiteRuns, checks: list[Check], code: int, sim2sim: dict[str, Any],
                 info: dict[str, Any], grid: BevGrid, videos: int) -> str:
    """Write the report folder; -> summary.md's text."""
    tables = summaries(runs)
    info["videos"] = []
    with staged(out) as folder:
        candidate = runs.roles["candidate"]
        for sim, by_pert in runs.results[candidate].items():
            records = [r for r in by_pert["none"].records if r.frames is not None]
            for rank, record in enumerate(sorted(records, key=lambda r: (r.row["pdms"], r.row["episode"]))[:videos]):
                stem = f"videos/{sim}_worst{rank}_{record.row['episode'].replace('@', '_')}"
                (folder / "videos").mkdir(exist_ok=True)
                write_episode_video(folder / stem, record.frames, record.occupancy, grid,
                                    f"{sim} {record.row['episode']} PDMS {record.row['pdms']:.2f}", info["fps"])
                info["videos"] += [f"{stem}.mp4", f"{stem}.gif"]
        summary = summary_markdown(info, checks, code, tables, sim2sim)
        metrics = {"info": info, "exit_code": code, "verdict": VERDICTS[code], "summaries": tables,
                   "checks": [c.__dict__ for c in checks], "sim_to_sim": sim2sim}
        (folder / "junit.xml").write_text(junit_xml(f"lwm regress {info['suite']}", checks,
                                                    {k: str(info[k]) for k in ("suite", "suite_hash", "candidate",
                                                                               "baseline", "sim")}))
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=1, allow_nan=False) + "\n")
        rows = [row for by_sim in runs.results.values() for by_pert in by_sim.values() for result in by_pert.values()
                for row in result.rows]
        (folder / "episodes.jsonl").write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in rows))
        (folder / "summary.md").write_text(summary)
    return summary


def flat_metrics(tables: dict, sim2sim: dict[str, Any], roles: dict[str, str]) -> dict[str, float]:
    """MLflow metrics `<role>/<simulator>/<perturbation>/<metric>` and `sim_to_sim/...`."""
    flat = {}
    for role, spec in roles.items():
        for sim, by_pert in tables.get(spec, {}).items():
            for name, summary in by_pert.items():
                flat |= {f"{role}/{sim}/{name}/{k}": float(v) for k, v in summary.items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if sim2sim:
        events = sim2sim["agreement"]["collision_or_off_road"]
        flat |= {f"sim_to_sim/{k}": float(events[k]) for k in ("recall", "precision", "kappa") if events[k] is not None}
        for key, value in (("pdms_pearson", sim2sim["pdms_pearson"]), ("kendall_tau", sim2sim["ranking"]["kendall_tau"])):
            if value is not None:
                flat[f"sim_to_sim/{key}"] = float(value)
    return flat
