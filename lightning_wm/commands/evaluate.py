"""`lwm evaluate`: score a world model's rollouts on a dataset split and report them.

`ckpt=` is a .ckpt path, `last`, or a registered model (`models:/NAME@ALIAS`, `models:/NAME/VERSION`).
`evaluation.session.evaluate_checkpoint` checks every input against the data before any rollout
and scores the split; this command writes metrics.json + summary.md and logs an MLflow run tagged
with the training run of the checkpoint and the evaluation protocol's hash.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from omegaconf import OmegaConf

from lightning_wm import tracking
from lightning_wm.config import compose_config, to_object, to_plain
from lightning_wm.evaluation.config import EvaluateConfig
from lightning_wm.evaluation.report import flat_metrics, metrics_json, summary_markdown
from lightning_wm.evaluation.session import evaluate_checkpoint
from lightning_wm.models.loading import resolve_world_model
from lightning_wm.registry.uris import is_model_uri
from lightning_wm.report_folder import write_outputs
from lightning_wm.tracking import run_page
from sharding.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    evaluate = subparsers.add_parser(
        "evaluate",
        help="score a world model: ADE/FDE from generated video, action following, PSNR/SSIM, hazard AUROC",
        description="Evaluate a world-model checkpoint on a dataset split. Options are Hydra overrides of "
        "conf/evaluate.yaml, e.g. `lwm evaluate ckpt=last idm_ckpt=lwm_runs/idm-xs-.../checkpoints/last.ckpt`, "
        "`lwm evaluate ckpt=PATH data.path=DATASET context=8 horizons_s=[1,2,3]`.",
    )
    evaluate.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    evaluate.add_argument("overrides", nargs="*", help="Hydra overrides key=value (see --print-config for keys)")
    evaluate.set_defaults(run=run_evaluate)


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available; use device=cpu or device=auto")
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else ("cpu" if name == "auto" else name))


def run_evaluate(args: argparse.Namespace) -> int:
    cfg_node = compose_config("evaluate", args.overrides)
    if args.print_config:
        print(OmegaConf.to_yaml(cfg_node))
        return 0
    cfg: EvaluateConfig = to_object(cfg_node, "evaluate")
    warnings.filterwarnings("ignore", message=r".*IterableDataset.*has `__len__` defined")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    workdir, device = Path.cwd(), pick_device(cfg.device)
    if cfg.logger.enabled:  # an unreachable tracking server fails now, not after the rollouts
        tracking.check_reachable(tracking.tracking_uri(cfg.logger, workdir))

    ckpt = resolve_world_model(cfg.ckpt, Path(cfg.runs_dir), tracking.tracking_uri(cfg.logger, workdir))
    evaluation = evaluate_checkpoint(cfg, ckpt, device)
    results, info = evaluation.results, evaluation.info
    run_name = info["training_run_name"]
    eval_name = info["evaluation_run_name"] = f"eval-{run_name}-{uuid.uuid4().hex[:6]}"
    if is_model_uri(cfg.ckpt):
        info["model_uri"] = cfg.ckpt
    summary = summary_markdown(results, info)
    files = {"metrics.json": metrics_json(results, info), "summary.md": summary}
    out = Path(cfg.out) if cfg.out else Path(cfg.runs_dir) / run_name / "evaluations" / eval_name
    write_outputs(out, files)
    if cfg.logger.enabled:
        _log_to_mlflow(cfg, cfg_node, workdir, eval_name, info, results, out)
    print(summary)
    print(f"evaluation {eval_name}: {results['windows']} windows in {info['seconds']:.1f} s (protocol "
          f"{info['protocol_hash']}); report in {out}")
    return 0


def _log_to_mlflow(cfg: EvaluateConfig, cfg_node: Any, workdir: Path, eval_name: str, info: dict[str, Any],
                   results: dict[str, Any], out: Path) -> None:
    """One MLflow run per evaluation, tagged with the training run it scores."""
    tags = {
        **tracking.git_state(Path(__file__).resolve().parent),
        "lwm_command": "evaluate", "command": shlex.join(["lwm", *sys.argv[1:]]),
        "training_run_id": info["training_run_id"] or "", "training_run_name": info["training_run_name"],
        "checkpoint": info["checkpoint"], "idm_checkpoint": info["idm_checkpoint"] or "",
        "implied_motion": info["implied_motion"], "model_family": info["model_family"],
        "dataset": info["dataset"], "dataset_fingerprint": info["dataset_fingerprint"],
        "protocol_hash": info["protocol_hash"], **({"model_uri": info["model_uri"]} if "model_uri" in info else {}),
    }
    logger = tracking.make_logger(cfg.logger, workdir, eval_name, tags)
    plain = to_plain(cfg_node)
    run_page.log_params(logger, run_page.flat_params(plain))  # one param per leaf, null as empty
    logger.log_metrics(flat_metrics(results))
    client = logger.experiment
    client.log_text(logger.run_id, yaml.safe_dump(plain, sort_keys=False), "config/evaluate.yaml")
    for name in ("metrics.json", "summary.md"):
        client.log_artifact(logger.run_id, str(out / name))
    logger.finalize("success")
