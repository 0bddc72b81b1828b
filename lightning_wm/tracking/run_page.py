"""What a fit's run page in the MLflow UI shows beyond Lightning's metrics: the config as params
(each key once, nulls empty), the dataset as an input (the Dataset column and filter), a
description with the headline figures, and the page's address printed at the end.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import MLFlowLogger

PARAM_CHARS = 6000  # MLflow 3's limit on a param value


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """{"model": {"size": "xs", "bev": None}} -> {"model/size": "xs", "model/bev": ""}: one param per
    leaf (lists stay one value), null as the empty string (MLflow shows "None" otherwise)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat |= flat_params(value, f"{name}/")
        else:
            flat[name] = ("" if value is None else str(value))[:PARAM_CHARS]
    return flat


def log_params(logger: MLFlowLogger, params: dict[str, str]) -> None:
    """Log already flat params as they are (Lightning's `log_hyperparams` cuts values at 250 chars)."""
    from mlflow.entities import Param

    items = [Param(key, value) for key, value in params.items()]
    for start in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
        logger.experiment.log_batch(logger.run_id, params=items[start:start + 100])


def log_dataset(logger: MLFlowLogger, path: str, name: str, digest: str, context: str = "training") -> None:
    """The dataset as the run's input: digest = the manifest fingerprint, source = its path or URL."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    if "://" not in path:
        path = str(Path(path).expanduser().resolve())
    with warnings.catch_warnings():  # "can be interpreted in multiple ways": a local folder, either way
        warnings.simplefilter("ignore")
        source = resolve_dataset_source(path)
    entity = MetaDataset(source, name=name, digest=digest)._to_mlflow_entity()
    logger.experiment.log_inputs(logger.run_id, [DatasetInput(entity, [InputTag(MLFLOW_DATASET_CONTEXT, context)])])


EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # the UI's experiment type selector (MLflow 3's UI bundle)


def mark_model_training(logger: MLFlowLogger) -> None:
    """Make the experiment a model-training one in the UI (MLflow 3 otherwise may open it on GenAI
    traces), unless someone chose its type already."""
    experiment = logger.experiment.get_experiment(logger.experiment_id)
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        logger.experiment.set_experiment_tag(logger.experiment_id, EXPERIMENT_KIND_TAG, "custom_model_development")


# Today's names (`val/psnr/h8`, `val/psnr_copy_last/h8`) and the grouped ones (`val/psnr_h8/model`, ...).
PSNR_NAME = re.compile(r"^val/psnr(?:_h(?P<h>\d+)/(?P<kind>\w+)|(?:_(?P<old_kind>[a-z_]+))?/h(?P<old_h>\d+))$")
TRAJECTORY_NAME = re.compile(r"^val/(?P<what>ade|fde)_(?P<seconds>[\d.]+)s/(?P<source>\w+)$")
HEADLINE_SECONDS = 3.0  # the ADE/FDE horizon of the description (the longest logged when 3 s is not)


def psnr_by_horizon(metrics: dict[str, float]) -> dict[int, dict[str, float]]:
    """{horizon: {"model" | "copy_last" | "shuffled_actions": PSNR dB}} from a run's latest metrics."""
    table: dict[int, dict[str, float]] = {}
    for name, value in metrics.items():
        if found := PSNR_NAME.match(name):
            horizon = int(found["h"] or found["old_h"])
            kind = found["kind"] or found["old_kind"] or "model"
            table.setdefault(horizon, {})[kind] = value
    return table


def describe_run(metrics: dict[str, float], steps: int, dataset: str, fingerprint: str) -> str:
    """The run's description (Markdown): PSNR against copy-last at the longest horizon, ADE/FDE at
    3 s (the longest horizon logged when shorter windows give no 3 s), action following when
    logged, steps and dataset."""
    rows: list[tuple[str, str]] = []
    if psnr := psnr_by_horizon(metrics):
        horizon = max(psnr)
        scores = psnr[horizon]
        for kind, label in (("model", "model"), ("copy_last", "copy-last frame"), ("shuffled_actions", "shuffled actions")):
            if kind in scores:
                rows.append((f"PSNR at h{horizon}, {label}", f"{scores[kind]:.2f} dB"))
        if "model" in scores and "copy_last" in scores:
            rows.append((f"PSNR gain over copy-last at h{horizon}", f"{scores['model'] - scores['copy_last']:+.2f} dB"))
    trajectory = {name: found for name in sorted(metrics) if (found := TRAJECTORY_NAME.match(name))}
    if trajectory:
        horizons = {float(found["seconds"]) for found in trajectory.values()}
        seconds = HEADLINE_SECONDS if HEADLINE_SECONDS in horizons else max(horizons)
        for name, found in trajectory.items():
            if float(found["seconds"]) == seconds:
                rows.append((f"{found['what'].upper()} at {seconds:g} s ({found['source']})", f"{metrics[name]:.2f} m"))
    for name, value in sorted(metrics.items()):
        if "action_following" in name:
            rows.append((f"action following ({name.split('/', 1)[-1]})", f"{value:.3f}"))
    rows += [("steps", str(steps)), ("dataset", f"`{dataset}` (fingerprint `{fingerprint}`)")]
    lines = ["**Headline figures** (latest validation)", "", "| figure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines) + "\n"


def write_description(logger: MLFlowLogger, steps: int, dataset: str, fingerprint: str) -> str:
    """Set the run's description (`mlflow.note.content`) from its latest metrics; returns it."""
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

    metrics = logger.experiment.get_run(logger.run_id).data.metrics
    text = describe_run(metrics, steps, dataset, fingerprint)
    logger.experiment.set_tag(logger.run_id, MLFLOW_RUN_NOTE, text)
    return text


def run_address(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """Where the run's page is: the server's URL, or for a local store how to start the UI first."""
    page = f"#/experiments/{experiment_id}/runs/{run_id}"
    if urlparse(tracking_uri).scheme in ("http", "https"):
        return f"{tracking_uri.rstrip('/')}/{page}"
    return f"`mlflow ui --backend-store-uri {tracking_uri}`, then http://127.0.0.1:5000/{page}"
