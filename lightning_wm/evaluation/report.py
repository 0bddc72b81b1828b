"""What an evaluation leaves behind: metrics.json, a Markdown summary, and flat MLflow metric names.

The JSON holds everything (per-step video curves included); the summary is what a person reads
first; MLflow gets the scalar metrics named like the training-time ones, `eval/<metric>_<horizon>/<source>`
(`eval/ade_3s/generated` beside its floor `eval/ade_3s/idm_on_ground_truth`, `eval/psnr_1s/model` beside
`eval/psnr_1s/copy_last`): the UI puts the part before the last `/` in one section, so a metric and
its baselines sit together (names keep to letters, digits and `/_.-`: MLflow drops other characters).
"""

from __future__ import annotations

import json
from typing import Any

SOURCE_TITLES = {
    "generated": "generated video",
    "idm_on_ground_truth": "IDM on ground-truth video (floor)",
    "ego_head": "world model's ego-motion head (imagined states)",
    "idm_on_copy_last": "IDM on a frozen video (last context frame repeated)",
}
VIDEO_TITLES = {"model": "model", "copy_last": "copy last frame", "shuffled_actions": "shuffled actions"}


def flat_metrics(results: dict[str, Any]) -> dict[str, float]:
    """Scalar results as MLflow metrics: trajectory, action following, hazard, BEV IoU and video at each horizon."""
    flat: dict[str, float] = {"eval/windows": float(results["windows"])}

    def put(name: str, value: Any) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)

    for source, values in results["trajectory"].items():  # {"ade/1s": m, ...}
        for key, value in values.items():
            kind, horizon = key.split("/")
            put(f"eval/{kind}_{horizon}/{source}", value)
    for source, values in results["action_following"].items():  # {"accuracy", "left", "right"}
        for key, value in values.items():
            put(f"eval/action_following{'' if key == 'accuracy' else '_' + key}/{source}", value)
    for key, value in results["hazard"].items():
        put(f"eval/hazard/{key}", value)
    for when, classes in results["bev_iou"].items():
        for name, value in classes.items():
            put(f"eval/bev_iou_{when}/{name}", value)
    for kind, metrics in results["video"]["at_horizon"].items():  # {"psnr": {"1step": ..., "1s": ...}, ...}
        for metric, horizons in metrics.items():
            for horizon, value in horizons.items():
                put(f"eval/{metric}_{horizon}/{kind}", value)
    return flat


def _num(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def summary_markdown(results: dict[str, Any], info: dict[str, Any]) -> str:
    """The human-readable report of one evaluation (`info`: what was evaluated, on what)."""
    horizons = list(info["horizons"])  # labels, e.g. ["1s", "2s", "3s"]
    lines = [f"# Evaluation of `{info['checkpoint']}`", ""]
    lines += [f"- training run: `{info['training_run_name']}` (MLflow run id `{info['training_run_id']}`)",
              f"- data: `{info['dataset']}` split `{info['split']}`, camera `{info['camera']}`, {info['fps']:g} fps; "
              f"{results['windows']} windows of {info['context']} context frames + {info['horizon_steps']} imagined steps",
              f"- horizons: {', '.join(f'{label} = {steps} steps' for label, steps in info['horizons'].items())}"]
    if info["idm_checkpoint"]:
        lines.append(f"- implied motion: read from the generated frames by the IDM `{info['idm_checkpoint']}`; "
                     "its error on the ground-truth frames is the floor of the generated-video ADE/FDE")
    else:
        lines.append("- implied motion: **no IDM checkpoint was given**, so the world model's own ego-motion head on "
                     "the imagined states stands in for the generated video (it does not look at the decoded frames); "
                     "pass `idm_ckpt=...` for the video-based metric")
    lines += ["", "## Trajectory error (metres, lower is better)", "",
              "| implied by | " + " | ".join(f"ADE {h} | FDE {h}" for h in horizons) + " |",
              "|---|" + "---:|---:|" * len(horizons)]
    for source, values in results["trajectory"].items():
        title = SOURCE_TITLES[source] + (" (IDM)" if source == "generated" and info["idm_checkpoint"] else "")
        cells = " | ".join(f"{_num(values[f'ade/{h}'])} | {_num(values[f'fde/{h}'])}" for h in horizons)
        lines.append(f"| {title} | {cells} |")
    steer = info["steer_yaw_rate"]
    lines += ["", f"## Action following (same context, steering left / right: yaw_rate = +/-{steer:g} rad/s, speed kept)",
              "", "Share of rollouts whose implied total yaw over the horizon turns the commanded way.", "",
              "| implied by | accuracy | left | right |", "|---|---:|---:|---:|"]
    for source, values in results["action_following"].items():
        lines.append(f"| {SOURCE_TITLES[source]} | {_num(values['accuracy'])} | {_num(values['left'])} | "
                     f"{_num(values['right'])} |")
    video = results["video"]["at_horizon"]
    kinds = [k for k in VIDEO_TITLES if k in video]
    lines += ["", "## Video quality of the frame at each horizon (higher is better)", "",
              "| horizon | " + " | ".join(f"PSNR {VIDEO_TITLES[k]}" for k in kinds) + " | "
              + " | ".join(f"SSIM {VIDEO_TITLES[k]}" for k in kinds) + " |",
              "|---|" + "---:|" * (2 * len(kinds))]
    for label in ["1step", *horizons]:
        psnr = " | ".join(_num(video[k]["psnr"][label], 2) for k in kinds)
        ssim = " | ".join(_num(video[k]["ssim"][label], 3) for k in kinds)
        lines.append(f"| {label} | {psnr} | {ssim} |")
    if results["bev_iou"]:
        classes = list(next(iter(results["bev_iou"].values())))
        lines += ["", "## BEV occupancy IoU (inside the cameras' field of view)", "",
                  "| state | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
        for when, values in results["bev_iou"].items():
            lines.append(f"| {when if when == 'observed' else 'imagined ' + when} | "
                         + " | ".join(_num(values[c]) for c in classes) + " |")
    elif info.get("bev") is False:
        lines += ["", "BEV head: none (a checkpoint trained before it existed), so no BEV IoU."]
    hazard = results["hazard"]
    undefined = "; undefined: the evaluated steps hold only one class" if hazard["auroc"] is None else ""
    lines += ["", "## Hazard head (collision or near-collision within the horizon, per imagined step)", "",
              f"AUROC {_num(hazard['auroc'])}, average precision {_num(hazard['average_precision'])} "
              f"({int(hazard['positives'])} positive of {int(hazard['examples'])} steps{undefined})"]
    return "\n".join(lines) + "\n"


def metrics_json(results: dict[str, Any], info: dict[str, Any]) -> str:
    return json.dumps({"info": info, **results}, indent=1, allow_nan=False) + "\n"
