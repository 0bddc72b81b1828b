"""One evaluation of one world-model checkpoint: every input checked, then the rollouts scored.

`evaluate_checkpoint` is what `lwm evaluate` and `lwm promote` (the gate scores the candidate and
the champion with it) run: it loads the world model (and the IDM), refuses before any rollout
what would give wrong or no numbers (ego-motion head, the IDM's rig and fps, context length,
window vs clip length, frame size), runs `Evaluator` over the split and returns the results with
what was evaluated on what (`info`, including the evaluation protocol and its hash).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from datamodules.shard_datamodule import ShardDataModule
from datamodules.shard_set import open_shard_set
from lightning_wm.evaluation.config import EvaluateConfig
from lightning_wm.evaluation.evaluator import Evaluator, RolloutSettings, check_inputs
from lightning_wm.evaluation.protocol import protocol_hash, protocol_of
from lightning_wm.metrics.trajectory import horizon_steps
from lightning_wm.models.cameras import rig_mismatch
from lightning_wm.models.loading import load_idm, load_world_model, training_run
from lightning_wm.models.registry import FAMILIES
from sharding.errors import ConfigError


@dataclass
class Evaluation:
    """results: nested plain floats (`Evaluator.run`); info: checkpoint, data, settings, protocol."""

    results: dict[str, Any]
    info: dict[str, Any]


def evaluate_checkpoint(cfg: EvaluateConfig, ckpt: Path, device: torch.device) -> Evaluation:
    """Score the world model of `ckpt` under `cfg` (its data, split, context, horizons, seed)."""
    # ---- everything is checked before the first rollout ----------------------------------
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
    # the manifest, read before the window size is known (setup() would refuse a long window
    # with a data-loader message; check_inputs says it in evaluation terms first)
    manifest, where = open_shard_set(data.dataset_path).manifest, data.dataset_path
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
    model.to(device)
    if idm is not None:
        idm.to(device)
    evaluator = Evaluator(model, idm, settings, seed=cfg.seed, idm_view=idm_view)
    evaluator.metrics.to(device)
    start = time.perf_counter()
    loader = data.val_dataloader() if cfg.split == "val" else data.train_dataloader()
    batches = (data.on_after_batch_transfer({k: v.to(device) for k, v in batch.items()}, 0) for batch in loader)
    results = evaluator.run(batches, cfg.max_batches)
    seconds = time.perf_counter() - start

    protocol = protocol_of(cfg, manifest.fingerprint)
    info: dict[str, Any] = {
        "checkpoint": str(ckpt), "idm_checkpoint": cfg.idm_ckpt, "training_run_name": run_name,
        "training_run_id": run_id, "model_family": hparams["model_family"], "dataset": where,
        "dataset_fingerprint": manifest.fingerprint, "split": cfg.split, "camera": camera.name, "fps": manifest.fps,
        "context": cfg.context, "horizon_steps": settings.horizon, "horizons": horizons,
        "steer_yaw_rate": cfg.steer_yaw_rate, "steer_rad": cfg.steer_rad,
        "implied_motion": "idm" if idm is not None else "ego_head", "seconds": round(seconds, 2),
        "bev": getattr(model, "bev_head", None) is not None,
        "protocol": protocol, "protocol_hash": protocol_hash(protocol),
    }
    return Evaluation(results, info)
