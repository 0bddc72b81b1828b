"""A tiny `lwm fit` on a made dataset, run once per test module, and its MLflow run read back."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from lightning_wm.cli import main
from tests.helpers import make_dataset

# 32x32 frames, windows of 8 steps with 4 observed: a validation run (one batch of 2 windows) every step.
TINY = [
    "model.size=tiny", "model.context_steps=4", "model.psnr_horizons=[1,4]", "model.warmup_steps=2",
    "data.window=8", "data.batch_size=2", "data.num_workers=0",
    "trainer.accelerator=cpu", "trainer.devices=1", "trainer.val_check_interval=1", "trainer.limit_val_batches=1",
    "trainer.num_sanity_val_steps=0", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
    "logger.system_metrics=false", "callbacks.throughput=null",
]
SIZE, WINDOW, CONTEXT = 32, 8, 4


def make_tiny_dataset(root: Path) -> Path:
    make_dataset(root, train_scenes=2, val_scenes=2, steps=16, chunk_steps=16, size=SIZE)
    return root


@contextlib.contextmanager
def workdir_at(path: Path):
    """cd into `path` with no tracking server or run name inherited from the environment."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(path)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("LWM_RUN_NAME", raising=False)
        yield path


def fit(dataset: Path, *overrides: str) -> int:
    return main(["fit", f"data.path={dataset}", *TINY, *overrides])


def client_and_run(workdir: Path) -> tuple[MlflowClient, Run]:
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lightning-wm")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return client, runs[0]

