"""Checkpoints that are safe to open and that know which MLflow run they belong to.

Every checkpoint is read with `torch.load(weights_only=True)` first: a checkpoint carrying
pickled objects (which could run code on load) is refused. `ckpt_path=last` finds the newest
`last.ckpt` or `on_exception.ckpt` under the runs folder.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import OnExceptionCheckpoint

from sharding.errors import ConfigError

RUN_KEY = "lwm_run"  # our entry in the checkpoint dict: run name, MLflow run id


def resolve_ckpt_path(ckpt_path: str | None, runs_dir: Path, tracking_uri: str | None = None,
                      key: str = "ckpt_path") -> Path | None:
    """`null` -> None; `last` -> the newest last/on_exception checkpoint in `runs_dir`;
    `models:/NAME@ALIAS` or `models:/NAME/VERSION` -> that registered version's checkpoint, downloaded
    into `<runs_dir>/registry/` (from `tracking_uri`, default $MLFLOW_TRACKING_URI or ./mlflow.db);
    else a path."""
    if ckpt_path is None:
        return None
    if ckpt_path.startswith("models:/"):
        from lightning_wm.registry.uris import resolve_model_uri

        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"
        return resolve_model_uri(ckpt_path, uri, runs_dir / "registry", key).checkpoint
    if ckpt_path == "last":
        found = [p for name in ("last.ckpt", "on_exception.ckpt") for p in runs_dir.glob(f"*/checkpoints/{name}")]
        if not found:
            raise ConfigError(f"ckpt_path=last: no last.ckpt under {runs_dir}/*/checkpoints; train first or give a path")
        return max(found, key=lambda p: p.stat().st_mtime)
    path = Path(ckpt_path)
    if not path.is_file():
        raise ConfigError(f"{key}={ckpt_path}: no such file; give a .ckpt path, `last` or models:/NAME@ALIAS")
    return path


TRAINING_STATE = ("global_step", "epoch", "state_dict", "optimizer_states", "loops")  # what a resume restores


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint dict, loaded without executing any code from it; anything else is refused
    (a text file, a bare tensor, a list) in one line naming the file."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" not in str(error):
            raise ConfigError(f"{path}: not a PyTorch checkpoint (cannot be unpickled); give a .ckpt written by "
                              "`lwm fit`") from error
        raise ConfigError(
            f"{path}: refused, it holds pickled Python objects (loading would run code from the file); "
            "only checkpoints of plain tensors and containers are loaded (weights_only=True)"
        ) from error
    except PermissionError as error:
        raise ConfigError(f"{path}: permission denied reading the checkpoint; make it readable "
                          f"(chmod u+r {path}) or copy it somewhere readable") from error
    except Exception as error:  # torch's legacy loader fails on non-checkpoints with KeyError, ValueError...
        raise ConfigError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error}); "
                          "give a .ckpt written by `lwm fit`") from error
    if not isinstance(checkpoint, dict):
        raise ConfigError(f"{path}: holds a {type(checkpoint).__name__}, not a checkpoint dict; give a .ckpt "
                          "written by `lwm fit` (torch.save of a bare tensor or list is not one)")
    if not isinstance(checkpoint.get("hyper_parameters", {}), dict) or not isinstance(checkpoint.get("state_dict", {}), dict):
        raise ConfigError(f"{path}: its hyper_parameters / state_dict are not dicts; give a .ckpt written by `lwm fit`")
    return checkpoint


def check_resumable(checkpoint: dict[str, Any], path: Path) -> None:
    """A resume restores the step, the optimiser and the loops: refuse a dict without them."""
    missing = [key for key in TRAINING_STATE if key not in checkpoint]
    if missing:
        raise ConfigError(f"{path}: no training state to resume ({', '.join(missing)} missing: weights only?); "
                          "resume from a last.ckpt or on_exception.ckpt written by `lwm fit`, or register the "
                          "weights (`lwm promote`) and fine-tune with ckpt_path=models:/NAME@ALIAS")


def check_compatible(checkpoint: dict[str, Any], path: Path, family: str, model_config: dict[str, Any]) -> None:
    """Refuse a checkpoint of another model family or of a model config with other shapes."""
    hparams = checkpoint.get("hyper_parameters", {})
    found = hparams.get("model_family")
    if found is None:
        raise ConfigError(f"{path}: not a checkpoint of an lwm model (no hyper_parameters.model_family); "
                          "give a .ckpt written by `lwm fit`")
    if found != family:
        raise ConfigError(f"{path}: a {found!r} checkpoint, but model={family!r} was asked; "
                          f"pick model={found} or another checkpoint")
    saved = hparams.get("config", {})
    shape_keys = [k for k in ("size", "views") if k in saved or k in model_config]
    differing = [k for k in shape_keys if saved.get(k) != model_config.get(k)]
    if differing:
        key = differing[0]
        raise ConfigError(f"{path}: trained with model.{key}={saved.get(key)!r}, this run asks "
                          f"model.{key}={model_config.get(key)!r}; drop the override or start a new run")


def load_weights(model: L.LightningModule, checkpoint: dict[str, Any], source: str) -> None:
    """The checkpoint's weights into `model` (every module; fine-tuning starts a new run from them)."""
    try:
        model.load_state_dict(checkpoint.get("state_dict", {}), strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise ConfigError(f"ckpt_path={source}: its weights do not fit this model ({first}); fine-tune with the "
                          "model config it was trained with (drop the model.* overrides)") from error


class RunInfoInCheckpoint(L.Callback):
    """Stores the run name and MLflow run id in each checkpoint, so a resume continues that run."""

    def __init__(self, run_name: str) -> None:
        self.run_name = run_name

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        run_id = getattr(trainer.logger, "run_id", None)
        checkpoint[RUN_KEY] = {"run_name": self.run_name, "mlflow_run_id": run_id}


class ExceptionCheckpoint(OnExceptionCheckpoint):
    """On Ctrl-C or a crash, save `on_exception.ckpt` — once training has taken a step.

    An error before the first step (bad config, unreadable data) leaves nothing behind, so a
    later `ckpt_path=last` does not resume from an empty checkpoint of a run that never ran.
    """

    def on_exception(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.global_step > 0:
            super().on_exception(trainer, *args, **kwargs)
