"""`lwm promote`: a checkpoint becomes a registered model version, champion only if it is no worse.

Evaluates the checkpoint with the evaluation protocol (`lightning_wm.evaluation.session`), gets
the champion's results on the same protocol (its version tags, or a fresh evaluation), compares
every gated metric (`lightning_wm.registry.gate`), then logs the checkpoint as an MLflow model
(pyfunc rolling out the world model) in a `promote-...` run, registers a new version and gives it
the champion alias when nothing regressed, the challenger alias otherwise. Writes junit.xml +
summary.md; exit 0 promoted, 1 a gated metric regressed, 2 a usage error.
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
from omegaconf import OmegaConf

from lightning_wm import tracking
from lightning_wm.commands.evaluate import pick_device
from lightning_wm.config import compose_config, to_object, to_plain
from lightning_wm.evaluation.report import flat_metrics
from lightning_wm.evaluation.session import evaluate_checkpoint
from lightning_wm.models.loading import load_world_model, resolve_world_model
from lightning_wm.registry.config import PromoteConfig
from lightning_wm.registry.gate import compare, gated_metrics
from lightning_wm.registry.promotion import (
    find_champion,
    tag_and_alias,
    tag_training_run,
    tagged_metrics,
    version_tags,
)
from lightning_wm.registry.report import headline, promotion_markdown
from lightning_wm.registry.sim_to_sim_gate import gate_settings, sim_to_sim_metrics
from lightning_wm.registry.uris import client_for, file_sha256, is_model_uri, resolve_model_uri
from lightning_wm.report_folder import staged
from lightning_wm.testing.junit import write_junit
from lightning_wm.tracking import run_page
from sharding.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    promote = subparsers.add_parser(
        "promote",
        help="register a checkpoint in the MLflow model registry; champion only when no gated metric regresses",
        description="Evaluate a world-model checkpoint with the evaluation protocol, compare it with the version "
        "holding the champion alias (PSNR per horizon, ADE/FDE, action following, hazard AUROC, BEV IoU, the "
        "sim-to-sim agreement on a suite, each within its tolerance), log it as an MLflow model and register a new version: champion if nothing "
        "regressed (exit 0), challenger otherwise (exit 1, the report names the metric). Options are Hydra "
        "overrides of conf/promote.yaml, e.g. `lwm promote ckpt=PATH name=driving-wm tolerances.psnr=1.0 "
        "logger.tracking_uri=http://127.0.0.1:5000`.",
    )
    promote.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    promote.add_argument("overrides", nargs="*", help="Hydra overrides key=value (see --print-config for keys)")
    promote.set_defaults(run=run_promote, usage_exit=2)


def run_promote(args: argparse.Namespace) -> int:
    cfg_node = compose_config("promote", args.overrides)
    if args.print_config:
        print(OmegaConf.to_yaml(cfg_node))
        return 0
    cfg: PromoteConfig = to_object(cfg_node, "promote")
    if not cfg.logger.enabled:
        raise ConfigError("logger=none: lwm promote registers the model in MLflow; drop logger=none")
    if is_model_uri(cfg.ckpt):
        raise ConfigError(f"ckpt={cfg.ckpt}: already a registered version; give the .ckpt file to promote (move "
                          "an alias by hand with MlflowClient.set_registered_model_alias)")
    warnings.filterwarnings("ignore", message=r".*IterableDataset.*has `__len__` defined")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    workdir, device = Path.cwd(), pick_device(cfg.device)
    uri = tracking.tracking_uri(cfg.logger, workdir)
    tracking.check_reachable(uri)
    ckpt = resolve_world_model(cfg.ckpt, Path(cfg.runs_dir), uri)

    # ---- measure: the candidate, then the champion on the same protocol ---------------------
    candidate = evaluate_checkpoint(cfg, ckpt, device)
    info = candidate.info
    metrics = gated_metrics(candidate.results) | sim_to_sim_metrics(cfg, ckpt, device)
    settings = gate_settings(cfg.sim_to_sim)
    client = client_for(uri)
    champion = find_champion(client, cfg.name, cfg.champion_alias)
    champion_metrics, champion_source = None, None
    if champion is not None:
        same = (champion.tags.get("protocol_hash") == info["protocol_hash"]
                and champion.tags.get("sim_to_sim_settings") == settings)
        if cfg.reuse_champion_results and same:
            champion_metrics, champion_source = tagged_metrics(champion.tags), "its version tags (same protocol)"
        else:
            local = resolve_model_uri(f"models:/{cfg.name}/{champion.version}", uri, Path(cfg.runs_dir) / "registry")
            champion_metrics = (gated_metrics(evaluate_checkpoint(cfg, local.checkpoint, device).results)
                                | sim_to_sim_metrics(cfg, local.checkpoint, device))
            champion_source = "a new evaluation with this protocol"
    checks = compare(metrics, champion_metrics, cfg.tolerances)
    failed = [c.name for c in checks if c.status == "fail"]
    passed = not failed

    run_name = f"promote-{cfg.name}-{info['training_run_name']}-{uuid.uuid4().hex[:6]}"
    logger = tracking.make_logger(cfg.logger, workdir, run_name, run_tags(cfg, info, ckpt))
    try:
        version, model_uri = register(cfg, cfg_node, logger, ckpt, candidate.results, metrics, info)
        alias = cfg.champion_alias if passed else cfg.challenger_alias
        on_version = version_tags(metrics, info, file_sha256(ckpt), passed, failed, champion)
        tag_and_alias(client, cfg.name, version, on_version | {"sim_to_sim_settings": settings}, alias)
        tag_training_run(client, info["training_run_id"], cfg.name, version, alias)

        out = Path(cfg.out) if cfg.out else Path(cfg.runs_dir) / "promotions" / run_name
        decision = {"name": cfg.name, "version": version, "alias": alias, "passed": passed, "failed": failed,
                    "champion": f"v{champion.version}" if champion else None, "champion_source": champion_source,
                    "model_uri": model_uri, "run_name": run_name}
        summary = promotion_markdown(decision, info, checks)
        client.update_model_version(cfg.name, version, description=f"{headline(decision)} Protocol "
                                    f"{info['protocol_hash']}; training run {info['training_run_name']}.")
        properties = {"checkpoint": str(ckpt), "protocol_hash": info["protocol_hash"], "version": version,
                      "champion": decision["champion"] or ""}
        with staged(out) as folder:
            write_junit(folder / "junit.xml", f"promote {cfg.name}", checks, properties)
            (folder / "summary.md").write_text(summary)
        logger.experiment.log_artifacts(logger.run_id, str(out), "promotion")
        logger.finalize("success")
    except BaseException:
        logger.finalize("failed")  # never a run left RUNNING
        raise

    print(summary)
    verdict = (f"{cfg.name} v{version} is the new {alias}" if passed else
               f"{cfg.name} v{version} stays {alias}: {', '.join(failed)} regressed against v{champion.version}")
    print(f"promote: {verdict}; report in {out}")
    return 0 if passed else 1


def run_tags(cfg: PromoteConfig, info: dict[str, Any], ckpt: Path) -> dict[str, str]:
    return {**tracking.git_state(Path(__file__).resolve().parent), "lwm_command": "promote",
            "command": shlex.join(["lwm", *sys.argv[1:]]), "checkpoint": str(ckpt), "registered_model": cfg.name,
            "protocol_hash": info["protocol_hash"], "training_run_id": info["training_run_id"] or "",
            "dataset_fingerprint": info["dataset_fingerprint"]}


def register(cfg: PromoteConfig, cfg_node: Any, logger: Any, ckpt: Path, results: dict[str, Any],
             metrics: dict[str, float | None], info: dict[str, Any]) -> tuple[str, str]:
    """Log the candidate's evaluation and the model in the promote run, register a new version of
    `cfg.name`; -> (version, logged model URI)."""
    import mlflow

    from lightning_wm.registry.pyfunc_model import log_world_model  # imports mlflow.pyfunc: only here

    run_page.log_params(logger, run_page.flat_params(to_plain(cfg_node)))  # one param per leaf, null as empty
    logger.log_metrics(flat_metrics(results))
    model, checkpoint = load_world_model(ckpt)
    uri = tracking.tracking_uri(cfg.logger, Path.cwd())
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    with mlflow.start_run(run_id=logger.run_id):
        config = {"hyper_parameters": _plain(checkpoint["hyper_parameters"]), "protocol": info["protocol"]}
        model_info = log_world_model(ckpt, model, cfg.name, config, cfg.context)
        measured = {k: v for k, v in metrics.items() if v is not None}
        mlflow.log_metrics({f"gate/{k}": v for k, v in measured.items()}, model_id=model_info.model_id)
    return str(model_info.registered_model_version), model_info.model_uri


def _plain(value: Any) -> Any:
    """Checkpoint hyperparameters as JSON-ready values (tuples -> lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
