"""The report of `lwm stress`: failures table, budget curve, failure rate, confirmation, files.

Folder layout: `summary.md`, `metrics.json`, `episodes.jsonl` (every evaluated episode: id,
name, perturbation, scores, objective, failed), `failures/<rank>_<episode>.json` (replay files),
`videos/<rank>_<episode>_{learned,reference}.{mp4,gif}` (policy view | BEV).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datamodules.bev import BevGrid
from lightning_wm.simulation.video import write_episode_video
from lightning_wm.testing.stress.explore import SearchResult
from lightning_wm.testing.stress.runner import Evaluated
from lightning_wm.testing.stress.space import PerturbationSpace


def _num(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def describe(point: dict[str, Any]) -> str:
    """The coordinates that differ from 'no perturbation', briefly."""
    parts = []
    if point["latent_eps"] > 0:
        parts.append(f"latent {point['latent_eps']:.2f}@{point['latent_step']}")
    if point["action_noise"] > 0:
        parts.append(f"noise {point['action_noise']:.2f}")
    if point["action_delay"]:
        parts.append(f"delay {point['action_delay']}")
    parts.append(f"bias {point['speed_bias_mps']:+.1f} m/s {point['yaw_bias']:+.3f} rad/s")
    if point["yaw_limit"] < 1.0:
        parts.append(f"|yaw| <= {point['yaw_limit']:.2f}")
    if point["speed_limit_mps"] < 40.0:
        parts.append(f"speed <= {point['speed_limit_mps']:.1f}")
    if point["agent"] != "none":
        parts.append(f"{point['agent']} {point['agent_ahead_m']:.0f} m ahead {point['agent_lateral_m']:+.1f} m "
                     f"{point['agent_speed_mps']:.1f} m/s {point['agent_heading_rad']:+.2f} rad @{point['agent_step']}")
    for key in ("lighting", "weather"):
        if point[key] != "scene":
            parts.append(point[key])
    return ", ".join(parts)


def summary_markdown(info: dict[str, Any], result: SearchResult, top: list[Evaluated], confirmations: list[dict],
                     space: PerturbationSpace) -> str:
    rate = result.failure_rate()
    lines = [f"# lwm stress: {info['policy']}", "",
             f"search {info['search']}, budget {info['budget']} episodes of {info['base_episodes']} base episodes "
             f"(suite {info['suite']}), objective {info['objective']}, simulator {info['sim']}", "",
             f"**Failures: {rate['failures']} of {rate['episodes']}** episodes (rate {_num(rate['rate'], 3)}, 95% "
             f"{_num(rate['low'], 3)}..{_num(rate['high'], 3)}; for random search the policy's failure rate under "
             "the space's uniform distribution, for CEM the share of its biased samples)", ""]
    if confirmations:
        confirmed = sum(c["confirmed"] for c in confirmations)
        noise = sum(c["artefact_cause"] == "latent noise" for c in confirmations)
        lines += [f"**Confirmed in the reference world: {confirmed} of {len(confirmations)}** top failures; of the "
                  f"{len(confirmations) - confirmed} simulator artefacts, {noise} vanish without their latent noise, "
                  f"{len(confirmations) - confirmed - noise} are the learned simulator's own (BEV head, ego motion)", ""]
    lines += ["| episodes | failures |", "|---:|---:|"] + [f"| {n} | {k} |" for n, k in result.curve] + [""]
    by_id = {c["id"]: c for c in confirmations}
    lines += ["| rank | episode | PDMS | collision | off-road | objective | reference | perturbation |",
              "|---:|---|---:|---:|---:|---:|---|---|"]
    for rank, failure in enumerate(top):
        row, check = failure.row, by_id.get(failure.id)
        verdict = f"{check['verdict']} ({check['why']})" if check else "-"
        lines.append(f"| {rank} | {failure.name} | {_num(row.get('pdms'))} | {int(bool(row['collision']))} | "
                     f"{int(bool(row.get('off_road')))} | {_num(failure.objective)} | {verdict} | "
                     f"{describe(space.as_dict(failure.vector))} |")
    return "\n".join(lines) + "\n"


def episode_row(e: Evaluated, space: PerturbationSpace) -> dict[str, Any]:
    return {"id": e.id, "episode": e.name, "failed": e.failed, "objective": e.objective,
            "perturbation": space.as_dict(e.vector), **{k: v for k, v in e.row.items() if k != "episode"}}


def write_report(out: Path, info: dict[str, Any], result: SearchResult, top: list[Evaluated],
                 confirmations: list[dict], space: PerturbationSpace, replay_files: list[dict],
                 filmed: list[Evaluated], grid: BevGrid, fps: float) -> str:
    """Write the folder; returns the Markdown summary."""
    (out / "failures").mkdir(parents=True, exist_ok=True)
    for rank, (failure, spec) in enumerate(zip(top, replay_files)):
        (out / "failures" / f"{rank:02d}_{failure.name.replace('@', '_').replace('#', '_')}.json").write_text(
            json.dumps(spec, indent=1))
    videos = []
    if filmed:
        (out / "videos").mkdir(exist_ok=True)
        by_id = {c["id"]: c for c in confirmations}
        for rank, failure in enumerate(filmed):
            stem = f"{rank:02d}_{failure.name.replace('@', '_').replace('#', '_')}"
            pairs = [("learned", failure.record)]
            if failure.id in by_id and by_id[failure.id]["record"].frames is not None:
                pairs.append(("reference", by_id[failure.id]["record"]))
            for simulator, record in pairs:
                title = f"{failure.name} {simulator} PDMS {_num(record.row.get('pdms'))}"
                paths = write_episode_video(out / "videos" / f"{stem}_{simulator}", record.frames, record.occupancy,
                                            grid, title, fps)
                videos += [str(p.relative_to(out)) for p in paths]
    summary = summary_markdown(info, result, top, confirmations, space)
    (out / "summary.md").write_text(summary)
    (out / "episodes.jsonl").write_text("".join(json.dumps(episode_row(e, space)) + "\n" for e in result.evaluated))
    metrics = {"info": info | {"videos": videos}, "failure_rate": result.failure_rate(), "curve": result.curve,
               "top_failures": [episode_row(e, space) for e in top],
               "confirmation": [{k: v for k, v in c.items() if k != "record"} for c in confirmations]}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return summary
