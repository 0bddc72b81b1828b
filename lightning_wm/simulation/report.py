"""What `lwm simulate` leaves behind: metrics.json, episodes.jsonl, summary.md, videos, MLflow metrics.

metrics.json holds, per simulator, the summary of `runner.summarise` (mean PDMS and sub-scores,
collision and off-road rates, L2 to the log; the controller's tracking error for the reference)
and, when both simulators ran, the gap between them; episodes.jsonl one scored row per episode
and simulator; summary.md the tables a person reads first. MLflow metric names follow
`sim/<simulator>/<metric>` (letters, digits and `/_.-` only: MLflow drops other characters).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datamodules.bev import BevGrid
from lightning_wm.report_folder import staged
from lightning_wm.simulation.runner import RunResult
from lightning_wm.simulation.video import write_episode_video

COLUMNS = [("pdms", "PDMS"), ("nc", "NC"), ("dac", "DAC"), ("ttc", "TTC"), ("ep", "EP"), ("comfort", "C"),
           ("collision_rate", "collision rate"), ("off_road_rate", "off-road rate"), ("l2_1s", "L2 1 s (m)"),
           ("l2_2s", "L2 2 s (m)"), ("l2_3s", "L2 3 s (m)")]


def _num(value: Any, digits: int = 3) -> str:
    return "unscored" if value is None else f"{value:.{digits}f}"


def gap(summaries: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """learned - reference for every metric both have (the sim-to-sim gap)."""
    if not {"learned", "reference"} <= set(summaries):
        return {}
    learned, reference = summaries["learned"], summaries["reference"]
    return {key: (learned[key] - reference[key] if learned.get(key) is not None and reference.get(key) is not None
                  else None) for key, _ in COLUMNS if key in learned and key in reference}


def summary_markdown(summaries: dict[str, dict[str, Any]], info: dict[str, Any]) -> str:
    lines = [f"# Closed-loop simulation of policy `{info['policy']}`", "",
             f"- simulators: {', '.join(summaries)}; world model `{info['sim']}`" if info["sim"] != "reference"
             else f"- simulators: {', '.join(summaries)}",
             f"- episodes: {info['episodes']} ({info['episode_source']}), {info['context']} context steps + "
             f"{info['horizon']} closed-loop steps at {info['fps']:g} fps",
             "- scores: NAVSIM v1 PDMS = NC x DAC x (5 TTC + 5 EP + 2 C) / 12, per episode, averaged; the learned "
             "simulator is scored from the world model's own outputs (ego-motion head, BEV head)"]
    if not all(s.get("dac_scored") for s in summaries.values()):
        lines.append("- DAC is **unscored** where the data has no road geometry (never counted as a pass)")
    lines += ["", "| simulator | " + " | ".join(title for _, title in COLUMNS) + " |",
              "|---|" + "---:|" * len(COLUMNS)]
    for name, summary in summaries.items():
        lines.append(f"| {name} | " + " | ".join(_num(summary.get(key)) for key, _ in COLUMNS) + " |")
    if difference := gap(summaries):
        lines.append("| learned - reference | " + " | ".join(_num(difference.get(key)) for key, _ in COLUMNS) + " |")
    if "reference" in summaries:
        reference = summaries["reference"]
        lines += ["", f"Reference controller tracking error (mean per step): speed "
                      f"{_num(reference.get('tracking_speed_mps'))} m/s, yaw rate {_num(reference.get('tracking_yaw_rate'), 4)} "
                      "rad/s."]
    if "learned" in summaries and summaries["learned"].get("hazard_max") is not None:
        lines += ["", f"Hazard head (the fourth signal): mean over episodes of its highest probability "
                      f"{_num(summaries['learned']['hazard_max'])}; in episodes the learned simulator scores a collision "
                      f"{_num(summaries['learned'].get('hazard_max_collided'))}, in the others "
                      f"{_num(summaries['learned'].get('hazard_max_clean'))}."]
    if "learned" in summaries and summaries["learned"].get("idm_l2_3s") is not None:
        lines += ["", f"Trajectory the generated video implies (IDM): L2 at 3 s {_num(summaries['learned']['idm_l2_3s'])} "
                      f"m, against {_num(summaries['learned'].get('l2_3s'))} m for the ego-motion head."]
    if info.get("videos"):
        lines += ["", "Videos of the worst episodes (policy view | BEV): " + ", ".join(f"`{v}`" for v in info["videos"])]
    return "\n".join(lines) + "\n"


def flat_metrics(summaries: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Scalar summaries as MLflow metrics `sim/<simulator>/<name>` (and `sim/gap/<name>`)."""
    flat = {f"sim/{simulator}/{key}": float(value) for simulator, summary in summaries.items()
            for key, value in summary.items() if isinstance(value, (int, float)) and not isinstance(value, bool)}
    flat |= {f"sim/gap/{key}": value for key, value in gap(summaries).items() if value is not None}
    return flat


def metrics_json(summaries: dict[str, dict[str, Any]], info: dict[str, Any]) -> str:
    return json.dumps({"info": info, **summaries, "gap": gap(summaries)}, indent=1, allow_nan=False) + "\n"


def episodes_jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows)


def write_report(out: Path, results: dict[str, RunResult], summaries: dict[str, dict[str, Any]], info: dict[str, Any],
                 grid: BevGrid, videos: int) -> str:
    """Write the report folder all at once (`report_folder.staged`): the videos of the `videos` worst
    episodes of each simulator (lowest PDMS), metrics.json, episodes.jsonl, summary.md. -> the summary."""
    info["videos"] = []
    with staged(out) as folder:
        for name, result in results.items():
            worst = sorted(result.records, key=lambda r: (r.row["pdms"], r.row["episode"]))[:videos]
            for rank, record in enumerate(worst):
                title = f"{name} {record.row['episode']} PDMS {record.row['pdms']:.2f}"
                stem = f"videos/{name}_worst{rank}_{record.row['episode'].replace('@', '_')}"
                (folder / "videos").mkdir(exist_ok=True)
                write_episode_video(folder / stem, record.frames, record.occupancy, grid, title, info["fps"])
                info["videos"] += [f"{stem}.mp4", f"{stem}.gif"]
        summary = summary_markdown(summaries, info)
        (folder / "metrics.json").write_text(metrics_json(summaries, info))
        (folder / "episodes.jsonl").write_text(episodes_jsonl([r for res in results.values() for r in res.rows]))
        (folder / "summary.md").write_text(summary)
    return summary
