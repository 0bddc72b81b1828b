"""The ADE/FDE callback: the numbers of `lwm evaluate` at every validation of a tiny `lwm fit`,
read back from MLflow, horizons fitted to the window, and exact under two-process gloo DDP."""

from __future__ import annotations

import json
import re
import socket
import warnings
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from callbacks.ade_fde import AdeFdeCallback, fitting_horizons
from datamodules.batch import make_random_batch
from datamodules.shard_datamodule import ShardDataConfig, ShardDataModule
from lightning_wm.evaluation.evaluator import Evaluator, RolloutSettings
from lightning_wm.models.cameras import camera_dict
from lightning_wm.models.idm.module import InverseDynamicsModel
from lightning_wm.models.loading import load_idm, load_world_model
from lightning_wm.models.single_cam.module import SingleCamWorldModel
from sharding.errors import ConfigError
from tests.callbacks.tiny_fit import CONTEXT, SIZE, WINDOW, client_and_run, fit, make_tiny_dataset, workdir_at

NAMES = ["speed", "yaw_rate"]
SOURCES = ["ego_head", "generated", "idm_on_ground_truth", "idm_on_copy_last"]
HORIZONS = {"0.2s": 2, "0.4s": 4}  # what a window of 8 steps leaves after 4 observed ones, at 10 fps
ONLY = ["callbacks.rollout_video=null", "callbacks.robustness_sweep=null"]


# ---- horizons that fit the window ------------------------------------------------------------------
def test_horizons_that_fit_are_kept_and_the_rest_named_with_the_fix():
    assert fitting_horizons([1.0, 2.0, 3.0], 10.0, 38, 8) == ({"1s": 10, "2s": 20, "3s": 30}, None)
    horizons, warning = fitting_horizons([1.0, 2.0, 3.0], 10.0, 24, 8)
    assert horizons == {"1s": 10} and "ADE/FDE at 2s, 3s skipped" in warning and "set data.window=38" in warning


def test_by_default_a_short_window_is_scored_over_all_it_imagines():
    horizons, warning = fitting_horizons(None, 10.0, 16, 8)  # the default data.window and context
    assert horizons == {"0.8s": 8} and "scored at 0.8s; set data.window=38 to score them all" in warning


def test_explicit_horizons_of_which_none_fits_are_refused_naming_the_key():
    with pytest.raises(ConfigError, match=re.escape("horizons_s=[1.0, 2.0] needs 28 steps per validation window "
                                                    "(context 8 + 20 at 10 fps), data.window=16 leaves 8 to imagine; "
                                                    "set data.window=28 or shorter horizons_s")):
        fitting_horizons([1.0, 2.0], 10.0, 16, 8)


@pytest.mark.parametrize("settings, message", [
    ({"max_batches": 0}, "max_batches=0 must be an integer >= 1 or null"),
    ({"context": 1.5}, "context=1.5 must be an integer >= 1 or null"),
    ({"horizons_s": []}, "horizons_s=[] must be a non-empty list of seconds > 0, or null"),
])
def test_bad_settings_are_refused_when_built(settings, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        AdeFdeCallback(**settings)


# ---- one implementation, and exact under DDP ------------------------------------------------------
BATCHES = 4  # of 2 windows each: rank 0 gets batches 0 and 2, rank 1 gets 1 and 3


def tiny_model() -> SingleCamWorldModel:
    torch.manual_seed(0)
    return SingleCamWorldModel({"size": "tiny", "context_steps": CONTEXT}, NAMES, (SIZE, SIZE)).eval()


def make_batch(index: int) -> dict[str, torch.Tensor]:
    """Batch `index` of 2 windows, the same in every process; the ego drives ~1 m per step and turns."""
    g = torch.Generator().manual_seed(10 + index)
    batch = make_random_batch(2, WINDOW, 1, SIZE, SIZE, generator=g)
    yaw = torch.linspace(0, 0.3, WINDOW) * torch.rand(2, 1, generator=g)  # [B, T]
    batch["ego"][..., 0, 0], batch["ego"][..., 0, 1] = yaw.cos(), -yaw.sin()
    batch["ego"][..., 1, 0], batch["ego"][..., 1, 1] = yaw.sin(), yaw.cos()
    batch["ego"][..., 0, 3] = torch.arange(WINDOW) * (1 + torch.rand(2, 1, generator=g))
    return batch


def scored(indices: list[int], rank: int = 0, world: int = 1) -> dict[str, float]:
    callback = AdeFdeCallback(horizons_s=[0.2, 0.4])
    callback.fps = 10.0
    model = tiny_model()
    for local, index in enumerate(indices):
        callback.score(model, make_batch(index), local, rank, world)
    return {k: v.item() for k, v in callback.compute().items()}


def test_the_callback_scores_what_the_evaluator_scores():
    model = tiny_model()
    evaluator = Evaluator(model, None, RolloutSettings(CONTEXT, HORIZONS, tuple(NAMES)), seed=0)
    trajectory = evaluator.run(make_batch(i) for i in range(BATCHES))["trajectory"]["ego_head"]
    logged = scored(list(range(BATCHES)))
    assert set(logged) == {f"val/{k}_{h}/ego_head" for k in ("ade", "fde") for h in HORIZONS}
    for key, value in trajectory.items():  # "ade/0.2s"
        kind, label = key.split("/")
        assert logged[f"val/{kind}_{label}/ego_head"] == pytest.approx(value, rel=1e-6)


def ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        values = scored([i for i in range(BATCHES) if i % world == rank], rank, world)  # compute() reduces
        Path(f"{out}.rank{rank}").write_text(json.dumps(values))
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_log_the_single_process_values(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(ddp_worker, args=(2, port, str(tmp_path / "values")), nprocs=2, join=True)
    single, rank0_alone = scored(list(range(BATCHES))), scored([0, 2])
    for rank in range(2):
        got = json.loads((tmp_path / f"values.rank{rank}").read_text())
        assert got.keys() == single.keys()
        for key, value in single.items():
            assert got[key] == pytest.approx(value, rel=1e-6), key
    assert rank0_alone["val/ade_0.4s/ego_head"] != pytest.approx(single["val/ade_0.4s/ego_head"])


# ---- end to end: a tiny fit, read back from MLflow -----------------------------------------------
class Logged(NamedTuple):
    metrics: dict[str, float]  # the run's latest metrics
    steps: list[list[int]]  # steps of val/ade_0.4s/generated and of val/loss/total
    warnings: list[str]
    dataset: Path
    workdir: Path
    idm: Path


def tiny_idm_checkpoint(dataset: Path, path: Path) -> Path:
    data = ShardDataModule(ShardDataConfig(path=str(dataset), cameras=["front"], window=WINDOW, num_workers=0))
    data.prepare_data()
    data.setup()
    torch.manual_seed(2)
    idm = InverseDynamicsModel({"size": "tiny", "frames": 3}, NAMES, (SIZE, SIZE), [camera_dict(data.manifest.cameras[0])],
                               data.manifest.fps)
    torch.save({"hyper_parameters": dict(idm.hparams), "state_dict": idm.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """Fit 2 steps (validations at 1 and 2) with an IDM; 1 s does not fit the window of 8 steps."""
    dataset = make_tiny_dataset(tmp_path_factory.mktemp("adedata"))
    idm = tiny_idm_checkpoint(dataset, tmp_path_factory.mktemp("idm") / "idm.ckpt")
    with workdir_at(tmp_path_factory.mktemp("adefit")) as workdir, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fit(dataset, "trainer.max_steps=2", *ONLY, "callbacks.ade_fde.horizons_s=[0.2,0.4,1]",
                   f"callbacks.ade_fde.idm_ckpt={idm}", "callbacks.ade_fde.own_windows=false") == 0
        client, run = client_and_run(workdir)
        steps = [[m.step for m in client.get_metric_history(run.info.run_id, name)]
                 for name in ("val/ade_0.4s/generated", "val/loss/total")]
    return Logged(run.data.metrics, steps, [str(w.message) for w in caught], dataset, workdir, idm)


def test_every_validation_logs_ade_and_fde_per_horizon_and_source(logged):
    assert {k for k in logged.metrics if k.startswith(("val/ade", "val/fde"))} == {
        f"val/{kind}_{label}/{source}" for kind in ("ade", "fde") for label in HORIZONS for source in SOURCES}
    assert len(logged.steps[0]) == 2 and logged.steps[0] == logged.steps[1]  # at each validation, as its loss
    assert all(v >= 0 for k, v in logged.metrics.items() if k.startswith(("val/ade", "val/fde")))


def test_a_horizon_longer_than_the_window_is_skipped_with_one_warning_naming_the_fix(logged):
    ours = [w for w in logged.warnings if w.startswith("AdeFdeCallback")]
    assert ours == ["AdeFdeCallback: data.window=8 with context 4 leaves 4 imagined steps at 10 fps: ADE/FDE at 1s "
                    "skipped, scored at 0.2s, 0.4s; set data.window=14 to score them all"]


def test_logged_values_are_what_lwm_evaluate_computes_on_the_same_windows(logged):
    model, _ = load_world_model(next(logged.workdir.glob("lwm_runs/*/checkpoints/last.ckpt")))
    model.bev_head = None  # trajectories do not use it, and EvaluationMetrics cannot key BEV IoU by "0.2s"
    idm = load_idm(logged.idm)
    data = ShardDataModule(ShardDataConfig(path=str(logged.dataset), cameras=["front"], window=WINDOW, batch_size=2,
                                           num_workers=0))
    data.prepare_data()
    data.setup()
    evaluator = Evaluator(model, idm, RolloutSettings(CONTEXT, HORIZONS, tuple(NAMES)), seed=0)
    batches = (data.on_after_batch_transfer(batch, 0) for batch in data.val_dataloader())
    trajectory = evaluator.run(batches, max_batches=1)["trajectory"]  # the fit validates 1 batch
    for source in SOURCES:
        for key, value in trajectory[source].items():
            kind, label = key.split("/")
            assert logged.metrics[f"val/{kind}_{label}/{source}"] == pytest.approx(value, rel=1e-5), (source, key)


def test_explicit_horizons_that_do_not_fit_stop_the_fit_with_one_line(logged, capsys):
    with workdir_at(logged.workdir):  # its MLflow store exists already: no table creation to wait for
        code = fit(logged.dataset, "trainer.max_steps=1", *ONLY, "callbacks.ade_fde.horizons_s=[1,2]",
                   "callbacks.ade_fde.own_windows=false")
    assert code == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lwm fit")]
    assert lines == ["lwm fit: error: AdeFdeCallback: horizons_s=[1.0, 2.0] needs 24 steps per validation window "
                     "(context 4 + 20 at 10 fps), data.window=8 leaves 4 to imagine; set data.window=24 or shorter "
                     "horizons_s"]


def test_own_windows_score_horizons_longer_than_the_training_window_as_lwm_evaluate_does(tmp_path):
    """Training windows of 8 steps, ADE/FDE at 1 s: the callback reads val windows of 4 + 10 steps."""
    dataset = make_tiny_dataset(tmp_path / "data")
    (tmp_path / "fit").mkdir()
    with workdir_at(tmp_path / "fit") as workdir:
        assert fit(dataset, "trainer.max_steps=1", *ONLY, "callbacks.ade_fde.horizons_s=[0.4,1]") == 0
        _, run = client_and_run(workdir)
        model, _ = load_world_model(next(workdir.glob("lwm_runs/*/checkpoints/last.ckpt")))
    model.bev_head = None
    data = ShardDataModule(ShardDataConfig(path=str(dataset), cameras=["front"], window=CONTEXT + 10, batch_size=2,
                                           num_workers=0))
    data.prepare_data()
    data.setup()
    evaluator = Evaluator(model, None, RolloutSettings(CONTEXT, {"0.4s": 4, "1s": 10}, tuple(NAMES)), seed=0)
    trajectory = evaluator.run(data.on_after_batch_transfer(b, 0) for b in data.val_dataloader())["trajectory"]
    for key, value in trajectory["ego_head"].items():  # "ade/1s", ...
        kind, label = key.split("/")
        assert run.data.metrics[f"val/{kind}_{label}/ego_head"] == pytest.approx(value, rel=1e-5), key
