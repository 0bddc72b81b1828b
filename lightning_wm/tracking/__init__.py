"""MLflow tracking for `lwm` runs: where the store is, what a run is called, what it records.

Default store: SQLite in the working directory plus a local artifact folder (MLflow 3 refuses
the plain file store; SQLite keeps the model registry working), so `mlflow ui` started in
the same directory shows every run. `MLFLOW_TRACKING_URI` or `logger.tracking_uri` point at a
server instead. Only rank zero talks to MLflow (Lightning's loggers are rank-zero only).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger


@dataclass
class LoggerConfig:
    """Hydra group `logger/`."""

    enabled: bool = True  # false: no MLflow (quick experiments, some tests)
    tracking_uri: str | None = None  # null: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db
    artifact_location: str | None = None  # null: <cwd>/mlartifacts for a local store, the server's default otherwise
    experiment_name: str = "lightning-wm"  # MLflow experiment
    run_name: str | None = None  # null: <model>-<size>-<data>-<short id>
    system_metrics: bool = True  # CPU/GPU/memory metrics every `system_metrics_interval_s`
    system_metrics_interval_s: float = 10.0  # seconds between system metric samples
    exact_history: bool = True  # lwm fit: metrics reach MLflow once a checkpoint covers their step (one point per
    # step after any interruption; curves move at each validation); false: at every logging step
    tags: dict[str, str] = field(default_factory=dict)  # extra tags for the run


def tracking_uri(config: LoggerConfig, workdir: Path) -> str:
    """The store to use: the config's, else the environment's, else SQLite in `workdir`."""
    return (
        config.tracking_uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{(workdir / 'mlflow.db').resolve()}"
    )


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Fail before any work when the store cannot take this run (tracking/store_check.py)."""
    from lightning_wm.tracking.store_check import check_store

    check_store(uri, timeout_s)


def git_state(directory: Path) -> dict[str, str]:
    """Commit and dirty flag of the code that runs, for the run's tags."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_dirty": str(dirty).lower()} if commit else {}


def default_run_name(family: str, size: str, data_name: str) -> str:
    return f"{family}-{size}-{data_name}-{uuid.uuid4().hex[:6]}"


def make_logger(
    config: LoggerConfig, workdir: Path, run_name: str, tags: dict[str, str], run_id: str | None = None,
    exact_history: bool = False,
) -> MLFlowLogger:
    """An MLFlowLogger for a new run, or for `run_id` when resuming (same run, same steps).

    exact_history: a training run's logger, whose metrics reach MLflow once a checkpoint covers their
    step, so that an interrupted and resumed fit has one point per step (tracking/exact_history.py;
    needs its ExactHistory callback)."""
    from lightning_wm.tracking.exact_history import ExactHistoryLogger

    uri = tracking_uri(config, workdir)
    check_reachable(uri)
    artifacts = config.artifact_location
    if artifacts is None and uri.startswith("sqlite:"):
        artifacts = (workdir / "mlartifacts").resolve().as_uri()
    return (ExactHistoryLogger if exact_history else MLFlowLogger)(
        experiment_name=config.experiment_name,
        run_name=run_name,
        tracking_uri=uri,
        tags={**tags, **config.tags},
        artifact_location=artifacts,
        run_id=run_id,
    )


def start_system_metrics(logger: MLFlowLogger, config: LoggerConfig) -> Any:
    """MLflow's system metrics monitor on the logger's run (stop it when training ends)."""
    if not config.system_metrics:
        return None
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(
        logger.run_id,
        sampling_interval=config.system_metrics_interval_s,
        resume_logging=True,
        tracking_uri=logger._tracking_uri,
    )
    monitor.start()
    return monitor


def log_report_run(config: LoggerConfig, workdir: Path, name: str, tags: dict[str, str], params: dict[str, Any],
                   metrics: dict[str, float], config_file: str, report: Path) -> None:
    """One finished MLflow run for a command's report (`lwm simulate`, `lwm regress`): its config as
    params and as `config/<config_file>`, its metrics, and the report folder as artifacts."""
    import yaml

    from lightning_wm.tracking.run_page import flat_params, log_params

    logger = make_logger(config, workdir, name, tags)
    log_params(logger, flat_params(params))  # one param per leaf, null as empty
    logger.log_metrics(metrics)
    client = logger.experiment
    client.log_text(logger.run_id, yaml.safe_dump(params, sort_keys=False), f"config/{config_file}")
    client.log_artifacts(logger.run_id, str(report))
    logger.finalize("success")
