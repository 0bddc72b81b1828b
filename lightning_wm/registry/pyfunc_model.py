"""The world model as an MLflow pyfunc model: `predict` rolls out the rollout interface.

    import mlflow, numpy as np
    model = mlflow.pyfunc.load_model("models:/driving-wm@champion")
    video = model.predict({"frames": frames, "actions": actions}, params={"seed": 0})

Input: `frames` float32 [B, C, V, 3, H, W] in [0, 1] (the C context frames of V cameras) and
`actions` float32 [B, C - 1 + K, A] (the model's action names, in its order: see the model
version's `action_names` tag): the first C - 1 carry the context from frame to frame, the last K
drive the K imagined steps (batch contract: `actions[:, t]` is the motion from step t to t+1).
Output: the K predicted frames, float32 [B, K, V, 3, H, W] in [0, 1]. `params.seed` seeds the
latent sampling (same seed, same video). The model is logged with this module as its loader
(no pickled Python object): the checkpoint travels as the model's data file, and `_load_pyfunc`
rebuilds the world model from it with `lightning_wm.models.loading` (weights only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_wm.models.rollout import rollout_arrays


class WorldModelPredictor:
    """pyfunc face of a world-model checkpoint (see the module docstring for shapes)."""

    def __init__(self, checkpoint: Path) -> None:
        from lightning_wm.models.loading import load_world_model

        self.model, _ = load_world_model(checkpoint, "checkpoint")

    def predict(self, model_input: dict[str, np.ndarray], params: dict[str, Any] | None = None) -> np.ndarray:
        """model_input {"frames", "actions"} -> predicted frames (shapes in the module docstring)."""
        return rollout_arrays(self.model, model_input, int((params or {}).get("seed", 0)))


def _load_pyfunc(data_path: str, model_config: dict[str, Any] | None = None) -> WorldModelPredictor:
    """MLflow's loader-module entry point: `data_path` is the logged checkpoint file (`model_config`
    is unused: the checkpoint holds what rebuilds the model)."""
    return WorldModelPredictor(Path(data_path))


def example_input(model: Any, context: int, steps: int = 2) -> dict[str, np.ndarray]:
    """A zero input of the model's shapes: frames [1, context, V, 3, H, W], actions [1, context - 1 + steps, A]."""
    height, width = model.image_size
    views = len(model.rig) if getattr(model, "rig", None) else 1
    return {"frames": np.zeros((1, context, views, 3, height, width), np.float32),
            "actions": np.zeros((1, context - 1 + steps, len(model.action_names)), np.float32)}


def log_world_model(checkpoint: Path, model: Any, registered_name: str, metadata: dict[str, Any],
                    context: int) -> Any:
    """Log `checkpoint` as an MLflow LoggedModel `world_model` of the active run (pyfunc with this
    module as its loader, signature and input example of the model's shapes, `metadata`
    (hyperparameters, protocol) in its MLmodel file) and register a new version of
    `registered_name`. Returns MLflow's ModelInfo (model_id, registered version)."""
    import mlflow

    example = example_input(model, context)
    return mlflow.pyfunc.log_model(
        name="world_model", loader_module=__name__, data_path=str(checkpoint), signature=signature_of(example),
        input_example=(example, {"seed": 0}), metadata=metadata, pip_requirements=requirements(),
        registered_model_name=registered_name)


def signature_of(example: dict[str, np.ndarray]) -> Any:
    """Batch and time axes free (-1): any number of windows, context frames and imagined steps."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec, Schema, TensorSpec

    frames, actions = example["frames"].shape, example["actions"].shape
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, *frames[2:]), "frames"),
                       TensorSpec(np.dtype(np.float32), (-1, -1, actions[2]), "actions")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, -1, *frames[2:]))]),
        params=ParamSchema([ParamSpec("seed", "long", 0)]))


def requirements() -> list[str]:
    import mlflow

    return [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}", "lightning", "lightning-wm"]
