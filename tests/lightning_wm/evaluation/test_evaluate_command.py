"""`lwm fit model=idm` then `lwm evaluate` end to end on a tiny dataset made by the real shard
writer, read back through MlflowClient; and every bad input refused before any rollout."""

import functools
import json
import os
import re

import pytest
import torch
from mlflow.tracking import MlflowClient

from lightning_wm.checkpoints import RUN_KEY
from lightning_wm.cli import main
from lightning_wm.evaluation.evaluator import RolloutSettings, check_inputs
from lightning_wm.models.cameras import camera_dict
from lightning_wm.models.idm.config import IDMConfig
from lightning_wm.models.idm.module import InverseDynamicsModel
from lightning_wm.models.single_cam.config import SingleCamConfig
from lightning_wm.models.single_cam.module import SingleCamWorldModel
from sharding.errors import ConfigError
from sharding.writer import SceneTask, plan_shards, write_dataset
from tests import helpers

TINY_FIT = [
    "data.window=8", "data.batch_size=2", "data.num_workers=0", "trainer.accelerator=cpu", "trainer.devices=1",
    "trainer.val_check_interval=4", "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false", "logger.system_metrics=false",
    "callbacks=none",  # rollout videos and sweeps are tested with the callbacks; here they would only cost time
]
# 2 val scenes of one 32-step chunk each; 4 context + 2 s at 10 Hz = 24 steps: one window per scene
EVALUATE = ["data.num_workers=0", "data.batch_size=2", "context=4", "horizons_s=[1,2]"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny world model and a tiny IDM trained by `lwm fit` on the same small dataset."""
    root = tmp_path_factory.mktemp("evaluate")
    data = root / "data"
    helpers.make_dataset(data, train_scenes=4, val_scenes=2, steps=32, chunk_steps=32, size=32)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        for family_args in (["model=idm", "model.size=tiny"],
                            ["model.size=tiny", "model.context_steps=4", "model.psnr_horizons=[1]"]):
            patch.delenv("LWM_RUN_NAME", raising=False)  # fit sets it for its DDP ranks
            assert main(["fit", *family_args, f"data.path={data}", *TINY_FIT, "trainer.max_steps=4"]) == 0
        patch.delenv("LWM_RUN_NAME", raising=False)
        runs = root / "lwm_runs"
        yield {
            "root": root, "data": data,
            "idm": next(runs.glob("idm-*/checkpoints/last.ckpt")),
            "world": next(runs.glob("single_cam-*/checkpoints/last.ckpt")),
            "client": MlflowClient(f"sqlite:///{root / 'mlflow.db'}"),
        }


def evaluate(trained, *overrides):
    return main(["evaluate", f"ckpt={trained['world']}", f"data.path={trained['data']}", *EVALUATE, *overrides])


def runs_of(client, command):
    experiment = client.get_experiment_by_name("lightning-wm")
    return client.search_runs([experiment.experiment_id], filter_string=f"tags.lwm_command = '{command}'")


def test_idm_checkpoint_stores_its_rig_and_logs_val_metrics(trained):
    checkpoint = torch.load(trained["idm"], weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    assert hparams["model_family"] == "idm" and hparams["fps"] == 10.0
    assert hparams["rig"] == [camera_dict(helpers.camera_infos(32, ["front"])[0])]
    run = trained["client"].get_run(checkpoint[RUN_KEY]["mlflow_run_id"])
    for name in ("val/idm/ade", "val/idm/fde", "val/idm/mae_dyaw", "val/loss/total", "train/loss/dyaw"):
        assert name in run.data.metrics, name


def test_evaluate_with_idm_writes_reports_and_an_mlflow_run_tagged_with_the_training_run(trained, tmp_path):
    out = tmp_path / "report"
    assert evaluate(trained, f"idm_ckpt={trained['idm']}", f"out={out}") == 0
    results = json.loads((out / "metrics.json").read_text())
    assert results["windows"] == 2 and results["info"]["implied_motion"] == "idm"
    assert results["info"]["horizons"] == {"1s": 10, "2s": 20}
    trajectory = results["trajectory"]
    assert set(trajectory) == {"generated", "ego_head", "idm_on_ground_truth", "idm_on_copy_last"}
    for values in trajectory.values():
        assert set(values) == {"ade/1s", "ade/2s", "fde/1s", "fde/2s"} and min(values.values()) >= 0
    assert trajectory["generated"] != trajectory["idm_on_ground_truth"]  # generated frames are not the true ones
    assert 0 <= results["action_following"]["generated"]["accuracy"] <= 1
    video = results["video"]["at_horizon"]
    assert set(video) == {"model", "copy_last", "shuffled_actions"}
    assert len(results["video"]["per_step"]["model"]["psnr"]) == 20
    assert results["hazard"]["examples"] == 2 * 20
    summary = (out / "summary.md").read_text()
    assert "IDM on ground-truth video (floor)" in summary and "| 2s |" in summary

    client = trained["client"]
    training_id = torch.load(trained["world"], weights_only=True)[RUN_KEY]["mlflow_run_id"]
    [run] = [r for r in runs_of(client, "evaluate") if r.data.tags["idm_checkpoint"] == str(trained["idm"])
             and r.info.run_name == results["info"]["evaluation_run_name"]]
    assert run.info.status == "FINISHED"
    assert run.data.tags["training_run_id"] == training_id
    assert client.get_run(training_id).data.tags["model_family"] == "single_cam"
    assert run.data.metrics["eval/ade_2s/generated"] == pytest.approx(trajectory["generated"]["ade/2s"])
    assert run.data.metrics["eval/psnr_1s/copy_last"] == pytest.approx(video["copy_last"]["psnr"]["1s"])
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"metrics.json", "summary.md"}


def test_without_idm_the_ego_head_implies_the_motion_and_the_summary_says_so(trained, tmp_path):
    out = tmp_path / "report"
    assert evaluate(trained, f"out={out}", "logger.enabled=false") == 0
    results = json.loads((out / "metrics.json").read_text())
    assert results["info"]["implied_motion"] == "ego_head"
    assert results["trajectory"]["generated"] == results["trajectory"]["ego_head"]
    assert set(results["trajectory"]) == {"generated", "ego_head"}
    assert "no IDM checkpoint was given" in (out / "summary.md").read_text()


def test_ckpt_last_picks_the_newest_world_model_not_an_idm(trained, tmp_path):
    newest = trained["world"].stat().st_mtime + 60
    os.utime(trained["idm"], (newest, newest))  # the IDM run is now the newest run
    out = tmp_path / "report"
    assert main(["evaluate", "ckpt=last", f"runs_dir={trained['root'] / 'lwm_runs'}", f"data.path={trained['data']}",
                 *EVALUATE, "logger.enabled=false", f"out={out}"]) == 0
    assert json.loads((out / "metrics.json").read_text())["info"]["checkpoint"] == str(trained["world"])


def without_ego_head(trained, tmp_path):
    checkpoint = torch.load(trained["world"], weights_only=True)
    checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("ego_head.")}
    path = tmp_path / "no-ego-head.ckpt"
    torch.save(checkpoint, path)
    return [f"ckpt={path}"]


def at_12_fps(trained, tmp_path):
    """The same kind of data recorded at 12 Hz (the IDM was trained at 10 Hz)."""
    data = tmp_path / "data12"
    fields = dict(source="test", fps=12.0, chunk_steps=32, action_names=helpers.ACTIONS, agent_fields=["a", "b", "c"],
                  cameras=helpers.camera_infos(32), fingerprint="test-12fps")
    encode = functools.partial(helpers._encode, steps=32, size=32, chunk_steps=32, cameras=helpers.CAMERAS)
    tasks = [SceneTask(f"scene-{i:03d}", "train" if i == 0 else "val", i) for i in range(2)]
    write_dataset(data, plan_shards(tasks, 1), encode, fields, workers=1, progress=False)
    return [f"idm_ckpt={trained['idm']}", f"data.path={data}", "horizons_s=[1]"]


@pytest.mark.parametrize("make_overrides, message", [
    (without_ego_head, r"ckpt=.*no-ego-head.ckpt: the single_cam checkpoint has no ego-motion head \(ego_head\.\* missing\)"),
    (lambda t, p: [f"ckpt={t['idm']}"], r"ckpt=.*: an IDM checkpoint, not a world model"),
    (lambda t, p: [f"idm_ckpt={t['world']}"], r"idm_ckpt=.*: a 'single_cam' checkpoint, not an IDM"),
    (lambda t, p: [f"idm_ckpt={t['idm']}", "data.cameras=[front_left]"],
     r"idm_ckpt=.*: refused, it was trained on camera 'front', the evaluation reads 'front_left'"),
    (at_12_fps, r"idm_ckpt=.*: refused, it was trained at 10 fps, the data is at 12 fps"),
    (lambda t, p: ["context=0"], r"context=0 is fewer context frames than needed"),
    (lambda t, p: [f"idm_ckpt={t['idm']}", "horizons_s=[3]"],
     r"context=4 \+ horizon 30 steps = 34 steps is longer than the clips of .* \(32 steps\)"),
    (lambda t, p: ["horizons_s=[0.25]"], r"horizons_s: 0.25 s at 10 fps is 2.5 steps"),
], ids=["no-ego-head", "idm-as-world-model", "world-model-as-idm", "other-camera", "other-fps", "no-context",
        "horizon-beyond-clip", "horizon-between-steps"])
def test_bad_inputs_fail_in_one_line_before_any_rollout(trained, tmp_path, capsys, make_overrides, message):
    before = len(runs_of(trained["client"], "evaluate"))
    out = tmp_path / "report"
    assert evaluate(trained, *make_overrides(trained, tmp_path), f"out={out}") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lwm evaluate: error: "), err
    assert re.search(message, err), err
    assert not out.exists() and len(runs_of(trained["client"], "evaluate")) == before


def test_an_idm_that_needs_more_frames_than_the_context_is_refused():
    camera = helpers.camera_infos(32, ["front"])[0]
    idm = InverseDynamicsModel(IDMConfig(size="tiny", frames=3), ["speed"], (32, 32), rig=[camera_dict(camera)], fps=10.0)
    settings = RolloutSettings(context=1, horizons={"1s": 10}, action_names=("speed", "yaw_rate"))
    world = SingleCamWorldModel(SingleCamConfig(size="tiny"), ["speed", "yaw_rate"], (32, 32))
    with pytest.raises(ConfigError, match=r"context=1 is fewer context frames than needed \(2: the IDM reads 3 frames"):
        check_inputs(world, idm, settings, chunk_steps=32, dataset="data")
    with pytest.raises(ConfigError, match="InverseDynamicsModel is not a world model"):
        check_inputs(idm, None, settings, chunk_steps=32, dataset="data")
    check_inputs(world, idm, RolloutSettings(2, {"1s": 10}, ("speed", "yaw_rate")), chunk_steps=32, dataset="data")
