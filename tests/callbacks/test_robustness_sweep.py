"""Robustness sweeps: perturbations, success rules that hold by construction, and the JSON,
metrics and PNG a tiny `lwm fit` logs to MLflow (metrics under `z_summary/robustness/`, sorted
after the training curves in the UI)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from PIL import Image

import callbacks.robustness_sweep as robustness_sweep
from callbacks.fixed_clips import Clips
from callbacks.perturbations import Perturbation, build_settings, check_actions, perturbed_actions
from callbacks.robustness_sweep import (
    METRIC_PREFIX,
    ImpliedMotion,
    RobustnessSweepCallback,
    RobustnessSweepConfig,
    load_idm,
    score,
    sweep,
)
from datamodules.shard_datamodule import ShardDataConfig, ShardDataModule
from lightning_wm.models.cameras import camera_dict
from lightning_wm.models.idm.module import InverseDynamicsModel
from lightning_wm.models.single_cam.module import SingleCamWorldModel
from sharding.errors import ConfigError
from tests.callbacks.tiny_fit import CONTEXT, SIZE, WINDOW, client_and_run, fit, make_tiny_dataset, workdir_at

NAMES = ["speed", "yaw_rate"]
SWEEP = ["callbacks.rollout_video=null", "callbacks.robustness_sweep.every_n_val_epochs=2",
         "callbacks.robustness_sweep.latent_eps=[0.05,0.1]", "callbacks.robustness_sweep.action_noise=[0.3]",
         "callbacks.robustness_sweep.action_delays=[1]"]
SETTINGS = ["unperturbed", "latent_eps_0.05", "latent_eps_0.1", "action_noise_0.3", "action_delay_1",
            "speed_limit_mps_15", "yaw_limit_0.1"]


# ---- perturbations ----------------------------------------------------------------------------
def test_delays_shift_the_commands_and_limits_bound_one_action():
    actions = torch.arange(8.0)[None, :, None].repeat(1, 1, 2)  # [1, T=8, A=2], row t holds t
    actions[..., 1] *= 0.1
    assert perturbed_actions(Perturbation("action_delay", 0), actions, 4, NAMES, 0)[0, :, 0].tolist() == [3, 4, 5, 6]
    late = perturbed_actions(Perturbation("action_delay", 2), actions, 4, NAMES, 0)
    assert late[0, :, 0].tolist() == [2, 2, 3, 4]  # the motion into the last context step (row C-2) fills the gap
    limited = perturbed_actions(Perturbation("yaw_limit", 0.45), actions, 4, NAMES, 0)
    assert limited[0, :, 0].tolist() == [3, 4, 5, 6]  # speed untouched
    assert limited[0, :, 1].tolist() == pytest.approx([0.3, 0.4, 0.45, 0.45])
    slow = perturbed_actions(Perturbation("speed_limit_mps", 4.5), actions, 4, NAMES, 0)
    assert slow[0, :, 0].tolist() == [3, 4, 4.5, 4.5] and slow[0, :, 1].tolist() == pytest.approx([0.3, 0.4, 0.5, 0.6])


def test_action_noise_is_relative_per_action_and_seeded():
    actions = torch.stack([torch.full((64, 16), 10.0), torch.full((64, 16), 0.01)], -1)  # speed, yaw_rate
    noisy = [perturbed_actions(Perturbation("action_noise", 0.2), actions, 4, NAMES, seed=3) for _ in range(2)]
    assert torch.equal(noisy[0], noisy[1])  # same seed, same noise
    std = (noisy[0] - actions[:, 3:15]).std(dim=(0, 1))
    assert std[0].item() == pytest.approx(2.0, rel=0.1) and std[1].item() == pytest.approx(0.002, rel=0.1)


def test_settings_are_points_of_the_stress_space_and_their_names_safe_mlflow_keys():
    settings = build_settings([0.05], [0.1], [2], [15.0], [0.1], "x")
    names = [s.name for s in settings]
    assert names == ["unperturbed", "latent_eps_0.05", "action_noise_0.1", "action_delay_2", "speed_limit_mps_15",
                     "yaw_limit_0.1"]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+", n) for n in names)
    point = settings[4].point()  # the unperturbed point but for its one coordinate
    assert point.speed_limit_mps == 15.0 and point.latent_eps == 0.0 and point.agent == "none"


@pytest.mark.parametrize("settings, message", [
    ({"latent_eps": [-0.1]}, "latent_eps entry -0.1 is outside the perturbation space's [0, 0.3]"),
    ({"action_delays": [1.5]}, "action_delay entry 1.5 must be a whole number"),
    ({"yaw_limits": [5.0]}, "yaw_limit entry 5.0 is outside the perturbation space's [0.02, 1]"),
    ({"latent_eps": [0.1, 0.1]}, "settings repeat (['latent_eps_0.1'])"),
    ({"hazard_threshold": 2.0}, "hazard_threshold=2.0 must be a probability in [0, 1]"),
    ({"num_clips": 0}, "num_clips=0 must be an integer >= 1"),
])
def test_bad_settings_are_refused_when_built(settings, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        RobustnessSweepCallback(**settings)


def test_a_limit_needs_the_action_it_limits():
    settings = RobustnessSweepConfig().settings
    check_actions(settings, NAMES, "x")
    with pytest.raises(ConfigError, match=re.escape("setting speed_limit_mps_15 limits action 'speed', but the "
                                                    "model's actions are ['yaw_rate']")):
        check_actions(settings, ["yaw_rate"], "x")


def test_success_needs_the_end_within_the_threshold_and_no_new_hazard():
    reference = torch.zeros(4, 3, 3)  # [K=4, H=3, (x, y, yaw)]
    path = reference.clone()
    path[1, -1, 0] = 3.0  # ends 3 m away
    path[2, 0, 1] = 5.0  # strays 5 m midway, ends on the reference's spot
    fired = torch.zeros(4, 3, dtype=torch.bool)
    reference_fired = fired.clone()
    fired[3, 1] = reference_fired[3, 1] = True  # a hazard the reference saw too: not new
    success, final, new = score(path, fired, reference, reference_fired, threshold_m=2.0)
    assert success.tolist() == [True, False, True, True] and final.tolist() == [0, 3, 0, 0]
    fired[0, 2] = True  # a new hazard at the last step fails a rollout that stayed on the path
    success, _, new = score(path, fired, reference, reference_fired, threshold_m=2.0)
    assert success.tolist() == [False, False, True, True] and new.tolist() == [True, False, False, False]


# ---- success rules on a real (untrained) model ----------------------------------------------------
@pytest.fixture(scope="module")
def model_and_clips():
    torch.manual_seed(0)
    model = SingleCamWorldModel({"size": "tiny", "context_steps": CONTEXT}, NAMES, (SIZE, SIZE)).eval()
    g = torch.Generator().manual_seed(1)
    clips = Clips(torch.rand(3, WINDOW, 1, 3, SIZE, SIZE, generator=g),
                  torch.stack([10 + torch.rand(3, WINDOW, generator=g), 0.1 * torch.randn(3, WINDOW, generator=g)], -1))
    return model, clips


def run(model_and_clips, idm=None, **settings):
    model, clips = model_and_clips
    config = RobustnessSweepConfig(latent_eps=[0.0, 0.1], action_noise=[0.3], action_delays=[0, 2], **settings)
    return {r["setting"]: r for r in sweep(model, clips, CONTEXT, config.settings, NAMES, config, ImpliedMotion(idm))}


def test_changing_nothing_reproduces_the_reference_exactly(model_and_clips):
    rows = run(model_and_clips, threshold_m=0.0)
    for name in ("unperturbed", "latent_eps_0", "action_delay_0"):  # eps 0 and delay 0 change nothing
        assert rows[name]["max_final_deviation_m"] == 0.0 and rows[name]["success_rate"] == 1.0, rows[name]
    assert rows["latent_eps_0.1"]["mean_final_deviation_m"] > 0  # the noise did reach the rollout
    assert rows["latent_eps_0.1"]["success_rate"] == 0.0  # so nothing is within 0 m


def test_the_sweep_is_deterministic_and_rates_grow_with_the_threshold(model_and_clips):
    assert run(model_and_clips) == run(model_and_clips)
    rates = [{k: r["success_rate"] for k, r in run(model_and_clips, threshold_m=t).items()}
             for t in (0.0, 0.05, 0.5, math.inf)]
    for name in rates[0]:
        assert [r[name] for r in rates] == sorted(r[name] for r in rates), name
    assert all(r["successes"] == round(r["success_rate"] * r["clips"]) for r in run(model_and_clips).values())


def test_hazards_count_only_where_the_reference_had_none(model_and_clips):
    # threshold 0: sigmoid > 0 fires everywhere, also in the reference -> never new
    assert all(r["new_hazard_rate"] == 0.0 for r in run(model_and_clips, hazard_threshold=0.0).values())
    # threshold 1: nothing ever fires; with no distance bound every rollout succeeds
    always = run(model_and_clips, hazard_threshold=1.0, threshold_m=math.inf)
    assert all(r["success_rate"] == 1.0 for r in always.values())


def tiny_idm(rig: dict, fps: float) -> InverseDynamicsModel:
    torch.manual_seed(2)
    return InverseDynamicsModel({"size": "tiny", "frames": 3}, NAMES, (SIZE, SIZE), [rig], fps).eval()


def test_with_an_idm_the_decoded_video_implies_the_trajectory(model_and_clips):
    from tests.helpers import camera_infos

    idm = tiny_idm(camera_dict(camera_infos(SIZE)[0]), 10.0)
    read = run(model_and_clips, idm=idm, threshold_m=0.0)
    head = run(model_and_clips, threshold_m=0.0)
    assert read["unperturbed"]["success_rate"] == 1.0 and read["latent_eps_0"]["max_final_deviation_m"] == 0.0
    assert read["latent_eps_0.1"]["mean_final_deviation_m"] > 0  # noise changed the video the IDM reads
    assert read["latent_eps_0.1"]["mean_final_deviation_m"] != head["latent_eps_0.1"]["mean_final_deviation_m"]


def test_an_idm_of_another_frame_rate_is_refused(tmp_path):
    dataset = make_tiny_dataset(tmp_path / "data")
    data = ShardDataModule(ShardDataConfig(path=str(dataset), cameras=["front"], window=WINDOW, num_workers=0))
    data.prepare_data()
    data.setup()
    rig = camera_dict(data.manifest.cameras[0])
    for fps in (10.0, 5.0):
        idm = tiny_idm(rig, fps)
        torch.save({"hyper_parameters": dict(idm.hparams), "state_dict": idm.state_dict()},
                   tmp_path / f"idm{fps:g}.ckpt")
    assert load_idm(str(tmp_path / "idm10.ckpt"), data).fps == 10.0
    with pytest.raises(ConfigError, match="does not fit this data: it was trained at 5 fps, the data is at 10 fps"):
        load_idm(str(tmp_path / "idm5.ckpt"), data)


# ---- end to end -------------------------------------------------------------------------------
class Logged(NamedTuple):
    listed: list[str]  # artifact paths under robustness/
    local: Path  # where they were downloaded
    metrics: dict[str, float]  # the run's latest metrics
    history: list  # z_summary/robustness/success/latent_eps_0.1 over steps
    root_plot: Path | None  # robustness.png at the artifact root, downloaded
    titles: list[str]  # the plots' titles, in order
    warnings: list[str]  # what the callbacks warned
    dataset: Path
    workdir: Path


@contextlib.contextmanager
def warnings_of(name: str):
    """The messages of the warnings logged under logger `name` while inside (caplog is per test)."""
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger(name).addHandler(handler)
    try:
        yield messages
    finally:
        logging.getLogger(name).removeHandler(handler)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """Fit 3 steps (validations at 1, 2, 3): sweeps at the 2nd validation and at the end. num_clips
    is 8 (the default), but a validation run here reads one batch of 2 windows."""
    dataset = make_tiny_dataset(tmp_path_factory.mktemp("sweepdata"))
    titles: list[str] = []
    plot = robustness_sweep.plot_rows

    def plot_and_keep_title(rows, title, path):  # the real plot; the title kept to read back
        titles.append(title)
        plot(rows, title, path)

    with (workdir_at(tmp_path_factory.mktemp("sweepfit")) as workdir, pytest.MonkeyPatch.context() as patch,
          warnings_of("callbacks") as warnings):
        patch.setattr(robustness_sweep, "plot_rows", plot_and_keep_title)
        assert fit(dataset, "trainer.max_steps=3", *SWEEP) == 0
        client, run = client_and_run(workdir)
        listed = sorted(a.path for a in client.list_artifacts(run.info.run_id, "robustness"))
        local = Path(client.download_artifacts(run.info.run_id, "robustness", str(workdir / "download")))
        history = client.get_metric_history(run.info.run_id, f"{METRIC_PREFIX}/success/latent_eps_0.1")
        root = [a.path for a in client.list_artifacts(run.info.run_id) if a.path == "robustness.png"]
        root_plot = Path(client.download_artifacts(run.info.run_id, root[0], str(workdir / "root"))) if root else None
        return Logged(listed, local, run.data.metrics, history, root_plot, titles, warnings, dataset, workdir)


def test_fit_logs_a_table_and_a_plot_per_sweep(logged):
    listed, local = logged.listed, logged.local
    assert listed == [f"robustness/sweep_step{s:06d}.{ext}" for s in (2, 3) for ext in ("json", "png")]
    with Image.open(local / "sweep_step000003.png") as plot:
        assert plot.format == "PNG" and plot.size[0] >= 400


def test_logged_table_has_a_rate_in_0_1_per_setting_and_1_unperturbed(logged):
    local = logged.local
    table = json.loads((local / "sweep_step000003.json").read_text())
    assert table["step"] == 3 and table["clips"] == 2 and table["context"] == CONTEXT
    assert table["horizon"] == WINDOW - CONTEXT and table["trajectory_source"] == "ego_head"
    rows = {r["setting"]: r for r in table["settings"]}
    assert list(rows) == SETTINGS
    for row in rows.values():
        assert 0.0 <= row["success_rate"] <= 1.0 and row["successes"] == round(row["success_rate"] * 2)
    assert rows["unperturbed"]["success_rate"] == 1.0 and rows["unperturbed"]["max_final_deviation_m"] == 0.0
    assert rows["latent_eps_0.1"]["mean_final_deviation_m"] > 0
    assert table["success_all"] == pytest.approx(sum(rows[n]["success_rate"] for n in SETTINGS[1:]) / 6)


def test_metrics_match_the_table_at_each_sweep(logged):
    local, metrics, history = logged.local, logged.metrics, logged.history
    table = json.loads((local / "sweep_step000003.json").read_text())
    prefix = "z_summary/robustness"
    assert {k for k in metrics if "robustness" in k} == {f"{prefix}/success/{n}" for n in SETTINGS[1:]} | {
        f"{prefix}/deviation_m/{n}" for n in SETTINGS[1:]} | {f"{prefix}/success/all"}
    for row in table["settings"][1:]:
        assert metrics[f"{prefix}/success/{row['setting']}"] == pytest.approx(row["success_rate"])
        assert metrics[f"{prefix}/deviation_m/{row['setting']}"] == pytest.approx(row["mean_final_deviation_m"])
    assert [m.step for m in history] == [2, 3]


def test_summaries_sort_after_the_training_curves_in_the_ui(logged):
    # MLflow 3.17's UI sorts chart sections (a key up to its last "/") by name, code unit by code unit
    # at first and with localeCompare when new ones appear; both put z_summary/ after train/ and val/.
    sections = {k.rsplit("/", 1)[0] for k in logged.metrics}
    curves = [s for s in sections if s.startswith(("train/", "val/"))]
    summaries = [s for s in sections if "robustness" in s]
    assert curves and summaries and max(curves) < min(summaries)


def test_the_latest_plot_is_also_at_the_artifact_root(logged):
    assert logged.root_plot is not None
    assert logged.root_plot.read_bytes() == (logged.local / "sweep_step000003.png").read_bytes()  # the last sweep's


def test_the_plot_title_counts_the_clips_used_and_the_shortfall_is_warned_once(logged):
    table = json.loads((logged.local / "sweep_step000003.json").read_text())
    assert table["clips"] == 2 and table["num_clips"] == 8  # one validation batch of 2 windows
    assert [t.split(": ")[1].split(",")[0] for t in logged.titles] == ["2 clips (of num_clips=8)"] * 2
    assert logged.warnings == [
        "RobustnessSweepCallback: num_clips=8 but the first validation run (trainer.limit_val_batches=1) gave only "
        "2 windows in 1 batch(es), so it uses 2 clips; raise trainer.limit_val_batches or give the val split more "
        "windows (more val scenes, a shorter data.window)"]
    assert table["clips_shortfall"].startswith("the first validation run")


def test_a_setting_outside_the_space_fails_before_training(logged, capsys):
    dataset, workdir = logged.dataset, logged.workdir
    with workdir_at(workdir):  # its MLflow store exists already: no table creation to wait for
        code = fit(dataset, "trainer.max_steps=2", *SWEEP, "callbacks.robustness_sweep.yaw_limits=[5.0]")
    assert code == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lwm fit")]
    assert len(lines) == 1 and lines[0].startswith(
        "lwm fit: error: callbacks.robustness_sweep: RobustnessSweepCallback: yaw_limit entry 5.0 is outside the "
        "perturbation space's [0.02, 1]")
