"""`lwm evaluate`: score a world model's rollouts on a dataset split and report them.

Loads the world model (and the IDM), checks every input against the data before any rollout
(ego-motion head, the IDM's rig and fps, context length, window vs clip length), runs
`evaluation.evaluator.Evaluator` over the split, writes metrics.json + summary.md, and logs an
MLflow run tagged with the training run of the checkpoint.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from omegaconf import OmegaConf

from datamodules.shard_datamodule import ShardDataModule
from datamodules.shard_set import open_shard_set
from lightning_wm import tracking
from lightning_wm.config import compose_config, to_object, to_plain
from lightning_wm.evaluation.config import EvaluateConfig
from lightning_wm.evaluation.evaluator import Evaluator, RolloutSettings, check_inputs
from lightning_wm.evaluation.report import flat_metrics, metrics_json, summary_markdown
from lightning_wm.metrics.trajectory import horizon_steps
from lightning_wm.models.cameras import rig_mismatch
from lightning_wm.models.loading import load_idm, load_world_model, resolve_world_model, training_run
from lightning_wm.models.registry import FAMILIES
from lightning_wm.report_folder import write_outputs
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

    # ---- everything is checked before the first rollout ----------------------------------
    ckpt = resolve_world_model(cfg.ckpt, Path(cfg.runs_dir))
    model, checkpoint = load_world_model(ckpt)
    idm = load_idm(Path(cfg.idm_ckpt)) if cfg.idm_ckpt else None
    hparams = checkpoint["hyper_parameters"]
    family = FAMILIES[hparams["model_family"]]
    data_config = cfg.data
    if family.single_view:
        data_config.cameras = data_config.cameras or [cfg.default_camera]
    data_config.actions = list(hparams["action_names"])
    data = ShardDataModule(data_config, bev_grid=model.config.bev if getattr(model, "bev_head", None) else None)
    data.prepare_data()
    manifest, where = _open(data), data.dataset_path
    horizons = horizon_steps(cfg.horizons_s, manifest.fps)
    settings = RolloutSettings(cfg.context, horizons, tuple(hparams["action_names"]), cfg.steer_yaw_rate, cfg.steer_rad)
    check_inputs(model, idm, settings, manifest.chunk_steps, where)
    data.config.window = settings.window
    data.setup()  # checks cameras and actions against the manifest
    if family.single_view and len(data.camera_names) != 1:
        raise ConfigError(f"data.cameras={data.camera_names}: the {family.name} model reads one camera")
    camera = manifest.cameras[manifest.camera_names.index(data.camera_names[0])]
    if [camera.height, camera.width] != list(hparams["image_size"]):
        raise ConfigError(f"ckpt={ckpt}: the model was trained on {hparams['image_size']} frames, camera "
                          f"{camera.name!r} of {where} has {[camera.height, camera.width]}; evaluate on data of its size")
    idm_view = 0  # the view the IDM reads, among the evaluated cameras
    if idm is not None:
        if family.single_view or idm.camera["name"] not in data.camera_names:
            camera = manifest.cameras[manifest.camera_names.index(data.camera_names[0])]
        else:
            idm_view = data.camera_names.index(idm.camera["name"])
            camera = manifest.cameras[manifest.camera_names.index(idm.camera["name"])]
        if why := rig_mismatch(idm.camera, idm.fps, camera, manifest.fps):
            raise ConfigError(f"idm_ckpt={cfg.idm_ckpt}: refused, {why}; train an IDM on this data "
                              f"(`lwm fit model=idm data.path=...`)")

    # ---- rollouts ------------------------------------------------------------------------
    run_name, run_id = training_run(checkpoint, ckpt)
    eval_name = f"eval-{run_name}-{uuid.uuid4().hex[:6]}"
    model.to(device)
    if idm is not None:
        idm.to(device)
    evaluator = Evaluator(model, idm, settings, seed=cfg.seed, idm_view=idm_view)
    evaluator.metrics.to(device)
    start = time.perf_counter()
    loader = data.val_dataloader() if cfg.split == "val" else data.train_dataloader()
    batches = (data.on_after_batch_transfer(_to(batch, device), 0) for batch in loader)
    results = evaluator.run(batches, cfg.max_batches)
    seconds = time.perf_counter() - start

    info: dict[str, Any] = {
        "checkpoint": str(ckpt), "idm_checkpoint": cfg.idm_ckpt, "training_run_name": run_name,
        "training_run_id": run_id, "model_family": hparams["model_family"], "dataset": where,
        "dataset_fingerprint": manifest.fingerprint, "split": cfg.split, "camera": camera.name, "fps": manifest.fps,
        "context": cfg.context, "horizon_steps": settings.horizon, "horizons": horizons,
        "steer_yaw_rate": cfg.steer_yaw_rate, "steer_rad": cfg.steer_rad,
        "implied_motion": "idm" if idm is not None else "ego_head", "seconds": round(seconds, 2),
        "bev": getattr(model, "bev_head", None) is not None,
        "evaluation_run_name": eval_name,
    }
    summary = summary_markdown(results, info)
    files = {"metrics.json": metrics_json(results, info), "summary.md": summary}
    out = Path(cfg.out) if cfg.out else Path(cfg.runs_dir) / run_name / "evaluations" / eval_name
    write_outputs(out, files)
    if cfg.logger.enabled:
        _log_to_mlflow(cfg, cfg_node, workdir, eval_name, info, results, out)
    print(summary)
    print(f"evaluation {eval_name}: {results['windows']} windows in {seconds:.1f} s; report in {out}")
    return 0


def _open(data: ShardDataModule):
    """The manifest, read before the window size is known (setup() would refuse a long window
    with a data-loader message; check_inputs says it in evaluation terms first)."""
    return open_shard_set(data.dataset_path).manifest


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


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
    }
    logger = tracking.make_logger(cfg.logger, workdir, eval_name, tags)
    plain = to_plain(cfg_node)
    logger.log_hyperparams(plain)
    logger.log_metrics(flat_metrics(results))
    client = logger.experiment
    client.log_text(logger.run_id, yaml.safe_dump(plain, sort_keys=False), "config/evaluate.yaml")
    for name in ("metrics.json", "summary.md"):
        client.log_artifact(logger.run_id, str(out / name))
    logger.finalize("success")
