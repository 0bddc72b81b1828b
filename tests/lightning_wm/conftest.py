"""Fixtures of tests/lightning_wm: a tiny synthetic world (32x32 frames, 40-step scenes) sharded
once, and a tiny world model trained on it for two steps: enough for both simulators to run real
episodes, and for a policy to be trained, in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_wm.cli import main
from tests.helpers import RUN_ENVIRONMENT

WORLD = ["source.rig.width=32", "source.rig.height=32", "source.world.steps=40", "source.chunk_steps=40"]
TINY_FIT = ["model.size=tiny", "model.context_steps=4", "model.psnr_horizons=[1,4]", "model.warmup_steps=1",
            "data.window=8", "data.batch_size=2", "data.num_workers=0", "trainer.max_steps=2",
            "trainer.accelerator=cpu", "trainer.devices=1", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
            "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false", "logger=none", "callbacks=none"]


@pytest.fixture(scope="session")
def synthetic_world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "synthetic"
    assert main(["shard", "synthetic", "--out", str(out), "--scenes", "2", "--val-scenes", "1", "--workers", "1",
                 "progress=false", *WORLD]) == 0
    return out


@pytest.fixture(scope="session")
def world_model(synthetic_world, tmp_path_factory) -> Path:
    """last.ckpt of a tiny single-camera world model (with its BEV head) on the tiny world."""
    runs = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["fit", f"data.path={synthetic_world}", f"runs_dir={runs}", *TINY_FIT]) == 0
    finally:
        torch.set_num_threads(threads)
    (ckpt,) = runs.glob("*/checkpoints/last.ckpt")
    return ckpt


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh working directory (./mlflow.db, ./lwm_runs), with no store or run name from the environment."""
    monkeypatch.chdir(tmp_path)
    for key in RUN_ENVIRONMENT:
        monkeypatch.delenv(key, raising=False)
    return tmp_path
