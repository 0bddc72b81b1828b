"""Two checkpoints of the tiny world model on the tiny world: one trained 40 steps, one after a single step."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from lightning_wm.cli import main
from lightning_wm.commands.fit import RUN_NAME_ENV
from tests.lightning_wm.conftest import TINY_FIT


def train(world: Path, runs: Path, name: str, steps: int) -> Path:
    os.environ.pop(RUN_NAME_ENV, None)  # set by the previous fit of this process (for DDP ranks)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        overrides = [o for o in TINY_FIT if not o.startswith(("trainer.max_steps", "trainer.val_check_interval"))]
        assert main(["fit", f"data.path={world}", f"runs_dir={runs}", f"logger.run_name={name}", *overrides,
                     f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}"]) == 0
    finally:
        torch.set_num_threads(threads)
    return runs / name / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def good_and_bad(synthetic_world, tmp_path_factory) -> tuple[Path, Path]:
    runs = tmp_path_factory.mktemp("registry-runs")
    return train(synthetic_world, runs, "trained", 40), train(synthetic_world, runs, "one-step", 1)
