"""Build a model from its checkpoint (world model, IDM), refusing the wrong ones.

Checkpoints are opened with `weights_only=True` (`lightning_wm.checkpoints`); the model is
rebuilt from its stored hyperparameters through the family registry, and its weights must
cover every module: a world model saved without its ego-motion head cannot be scored.
Checkpoints written before the camera rig was one argument of every family (single_cam's
`camera`, the IDM's one-camera `rig` dict) are read too (`upgrade_hparams`).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import lightning as L

from lightning_wm import checkpoints
from lightning_wm.models.idm.module import InverseDynamicsModel
from lightning_wm.models.registry import FAMILIES
from sharding.errors import ConfigError

# Module names whose weights carry a head the evaluation reads, and what to call them.
HEAD_MODULES = {"ego_head": "ego-motion head", "hazard_head": "hazard head", "bev_head": "BEV head"}


def upgrade_hparams(hparams: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments of today's families from hyperparameters of any version: the rig is
    a list of cameras for every family (single_cam stored one `camera`, the IDM one `rig` dict)."""
    hparams = dict(hparams)
    camera = hparams.pop("camera", None)
    if hparams.get("model_family") == "single_cam" and "rig" not in hparams:
        hparams["rig"] = [camera] if camera else None
    if isinstance(hparams.get("rig"), dict):
        hparams["rig"] = [hparams["rig"]]
    return hparams


def load_model(path: Path, key: str, family: str | None = None,
               optional: tuple[str, ...] = ()) -> tuple[L.LightningModule, dict[str, Any]]:
    """The model of the checkpoint at `path` (eval mode, frozen) and the checkpoint dict.

    key: the config key that named it (for messages); family: refuse other families; optional:
    modules the checkpoint may lack (set to None on the model, e.g. the BEV head of a world model
    trained before it existed).
    """
    if not path.is_file():
        raise ConfigError(f"{key}={path}: no such file; give a .ckpt written by `lwm fit`")
    checkpoint = checkpoints.load_checkpoint(path)
    hparams = upgrade_hparams(checkpoint.get("hyper_parameters") or {})
    name = hparams.get("model_family")
    if name not in FAMILIES:
        raise ConfigError(f"{key}={path}: not a checkpoint of an lwm model (model_family={name!r}); "
                          f"give one written by `lwm fit` (families: {sorted(FAMILIES)})")
    if family is not None and name != family:
        raise ConfigError(f"{key}={path}: a {name!r} checkpoint, not a {family!r} one; train one with "
                          f"`lwm fit model={family}`")
    module_class = FAMILIES[name].module_class
    accepted = inspect.signature(module_class.__init__).parameters
    module = module_class(**{k: v for k, v in hparams.items() if k in accepted})
    try:
        result = module.load_state_dict(checkpoint.get("state_dict", {}), strict=False)
    except RuntimeError as error:  # shapes differ: written by another version of the model code
        first = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line), str(error))
        raise ConfigError(f"{key}={path}: its weights do not fit this version of the {name} model ({first}); "
                          "evaluate it with the code that trained it, or retrain") from error
    missing = sorted({k.split(".")[0] for k in result.missing_keys} - set(optional))
    if missing:
        heads = [HEAD_MODULES[m] for m in missing if m in HEAD_MODULES]
        what = f"has no {' and no '.join(heads)}" if heads else f"lacks the weights of {missing}"
        raise ConfigError(f"{key}={path}: the {name} checkpoint {what} ({', '.join(m + '.*' for m in missing)} "
                          "missing); give a checkpoint of a model trained with it")
    for absent in {k.split(".")[0] for k in result.missing_keys} & set(optional):
        setattr(module, absent, None)
    if result.unexpected_keys:
        raise ConfigError(f"{key}={path}: weights this {name} model does not have "
                          f"({sorted({k.split('.')[0] for k in result.unexpected_keys})}); it was written by "
                          "another version of the model")
    return module.eval().requires_grad_(False), checkpoint


def resolve_world_model(ckpt: str, runs_dir: Path, tracking_uri: str | None = None, key: str = "ckpt") -> Path:
    """`ckpt=last`: the newest last/on_exception checkpoint under `runs_dir` that is not an IDM's
    (IDM runs share the runs folder); `models:/NAME@ALIAS|VERSION`: the registered version's
    checkpoint (`lightning_wm.registry.uris`); otherwise `checkpoints.resolve_ckpt_path`."""
    if ckpt != "last":
        return checkpoints.resolve_ckpt_path(ckpt, runs_dir, tracking_uri, key)
    found = [p for name in ("last.ckpt", "on_exception.ckpt") for p in runs_dir.glob(f"*/checkpoints/{name}")]
    for path in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True):
        hparams = checkpoints.load_checkpoint(path).get("hyper_parameters") or {}
        if hparams.get("model_family") not in (None, "idm"):
            return path
    raise ConfigError(f"ckpt=last: no world-model last.ckpt under {runs_dir}/*/checkpoints; train one with `lwm fit` "
                      "or give ckpt=PATH")


def load_world_model(path: Path, key: str = "ckpt") -> tuple[L.LightningModule, dict[str, Any]]:
    """The world model of `ckpt` (eval mode, frozen) and its checkpoint dict. One trained before the
    BEV head existed loads with `bev_head = None` (it can be evaluated, not scored in closed loop)."""
    model, checkpoint = load_model(path, key, optional=("bev_head",))
    if isinstance(model, InverseDynamicsModel):
        raise ConfigError(f"{key}={path}: an IDM checkpoint, not a world model; give the world model as {key}= "
                          "and the IDM as idm_ckpt=")
    if not hasattr(model, "imagine"):
        raise ConfigError(f"{key}={path}: a {checkpoint['hyper_parameters'].get('model_family')!r} checkpoint, not a "
                          "world model; give the checkpoint of `lwm fit` (model=single_cam or multicam)")
    return model, checkpoint


def load_idm(path: Path) -> InverseDynamicsModel:
    """The frozen IDM of `idm_ckpt`."""
    if not path.is_file():
        raise ConfigError(f"idm_ckpt={path}: no such file; give the .ckpt of `lwm fit model=idm`")
    model, checkpoint = load_model(path, "idm_ckpt")
    if not isinstance(model, InverseDynamicsModel):
        raise ConfigError(f"idm_ckpt={path}: a {checkpoint['hyper_parameters'].get('model_family')!r} checkpoint, "
                          "not an IDM; train one with `lwm fit model=idm`")
    return model


def training_run(checkpoint: dict[str, Any], path: Path) -> tuple[str, str | None]:
    """(run name, MLflow run id) of the training run that wrote the checkpoint (see
    `checkpoints.RunInfoInCheckpoint`); the file's stem and None when it does not say."""
    info = checkpoint.get(checkpoints.RUN_KEY) or {}
    return str(info.get("run_name") or path.stem), info.get("mlflow_run_id")
