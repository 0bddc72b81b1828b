"""`lwm fit` end to end on CPU: MLflow (SQLite and a real server), resume, refusals, DDP."""

import socket
import subprocess
import sys
import time

import pytest
import torch
from mlflow.tracking import MlflowClient

# Imported here, not inside the first test: Lightning's log handlers keep the stream of the moment
# they are made, and a capsys stream is closed after its test.
import lightning_wm.commands.fit  # noqa: F401
from lightning_wm.cli import main
from tests.helpers import lwm_environment, make_dataset

TINY = [
    "model.size=tiny", "model.context_steps=4", "model.psnr_horizons=[1,4]", "model.warmup_steps=2",
    "data.window=8", "data.batch_size=2", "data.num_workers=0",
    "trainer.accelerator=cpu", "trainer.devices=1", "trainer.val_check_interval=4", "trainer.limit_val_batches=2",
    "trainer.num_sanity_val_steps=0", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
    "logger.system_metrics=false",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("fitdata")
    make_dataset(root, train_scenes=4, val_scenes=2, steps=32, chunk_steps=16, size=32)
    return root


def fit(dataset, *overrides):
    return main(["fit", f"data.path={dataset}", *TINY, *overrides])


def local_client(workdir):
    return MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")


def only_run(client):
    experiment = client.get_experiment_by_name("lightning-wm")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


def test_fit_records_params_metrics_tags_and_artifacts(dataset, workdir, capsys):
    assert fit(dataset, "trainer.max_steps=8") == 0
    client = local_client(workdir)
    run = only_run(client)
    # the last step lands on a validation: validated once there, not twice
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/loss/total")] == [3, 7]
    assert run.info.run_name.startswith("single_cam-tiny-")
    assert run.data.params["model/size"] == "tiny" and run.data.params["data/window"] == "8"
    for metric in ("train/loss/total", "train/loss/kl_dyn", "train/loss/kl_rep", "train/loss/image",
                   "train/grad_norm", "train/lr", "train/perf/samples_per_s", "val/loss/total",
                   "val/psnr_h1/model", "val/psnr_h1/copy_last"):
        assert metric in run.data.metrics, metric
    tags = run.data.tags
    assert tags["model_family"] == "single_cam" and tags["dataset_fingerprint"].startswith("test-")
    assert "git_commit" in tags
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "config")]
    assert artifacts == ["config/fit.yaml"]
    checkpoints = workdir / "lwm_runs" / run.info.run_name / "checkpoints"
    assert {p.name for p in checkpoints.iterdir()} >= {"last.ckpt", "best.ckpt"}
    out = capsys.readouterr().out
    assert (f"mlflow ui --backend-store-uri sqlite:///{workdir / 'mlflow.db'}`, then http://127.0.0.1:5000/#/experiments/"
            f"{run.info.experiment_id}/runs/{run.info.run_id}") in out


def test_run_page_has_the_dataset_a_description_and_each_param_once(dataset, workdir):
    assert fit(dataset, "trainer.max_steps=4", "callbacks=none") == 0
    run = only_run(local_client(workdir))
    (used,) = run.inputs.dataset_inputs
    assert used.dataset.digest == run.data.tags["dataset_fingerprint"]
    assert str(dataset) in used.dataset.source
    assert {(t.key, t.value) for t in used.tags} == {("mlflow.data.context", "training")}
    experiment = local_client(workdir).get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on runs
    params = run.data.params
    assert "None" not in params.values() and params["ckpt_path"] == "" and params["data/cameras"] == ""
    assert not any(name.startswith("config/") for name in params)  # Lightning's copy of model/*
    leaves = [name for name in params if not name.startswith("run/")]
    assert len(leaves) == len(set(leaves)) and params["run/cameras"] == "['front']"
    note = run.data.tags["mlflow.note.content"]
    psnr, copy_last = run.data.metrics["val/psnr_h4/model"], run.data.metrics["val/psnr_h4/copy_last"]
    assert f"| PSNR at h4, model | {psnr:.2f} dB |" in note
    assert f"| PSNR at h4, copy-last frame | {copy_last:.2f} dB |" in note
    assert "| steps | 4 |" in note and run.data.tags["dataset_fingerprint"] in note


def test_short_fit_validates_at_its_last_step(dataset, workdir):
    """max_steps below val_check_interval: one validation at the end, before the fit-end sweep."""
    assert fit(dataset, "trainer.max_steps=3", "callbacks.ade_fde=null") == 0
    client = local_client(workdir)
    run = only_run(client)
    history = {name: [m.step for m in client.get_metric_history(run.info.run_id, name)]
               for name in ("val/loss/total", "train/loss/total")}
    assert history["val/loss/total"] == [2] == history["train/loss/total"][-1:]  # the final step
    videos = [a.path for a in client.list_artifacts(run.info.run_id, "rollouts/epoch_000")]
    assert sorted(videos) == [f"rollouts/epoch_000/clip{k}_step000003.{ext}" for k in (0, 1) for ext in ("gif", "mp4")]
    assert [a.path for a in client.list_artifacts(run.info.run_id, "robustness")] == [
        "robustness/sweep_step000003.json", "robustness/sweep_step000003.png"]


def test_resume_continues_the_same_run_and_step_counter(dataset, workdir):
    assert fit(dataset, "trainer.max_steps=4") == 0
    assert fit(dataset, "trainer.max_steps=8", "ckpt_path=last") == 0
    client = local_client(workdir)
    run = only_run(client)  # the same run, not a second one
    history = client.get_metric_history(run.info.run_id, "train/loss/total")
    steps = [m.step for m in history]
    assert steps == sorted(set(steps)) and max(steps) >= 6  # no step logged twice, counter continued
    last = workdir / "lwm_runs" / run.info.run_name / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 8
    assert {a.path for a in client.list_artifacts(run.info.run_id, "config")} == {
        "config/fit.yaml", "config/fit-resume-4.yaml"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fit_against_a_real_mlflow_server(dataset, workdir, capsys):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{workdir / 'server.db'}",
         "--artifacts-destination", str(workdir / "server-artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.time() < deadline and server.poll() is None, "mlflow server did not start"
                time.sleep(0.5)
        assert fit(dataset, "trainer.max_steps=4", f"logger.tracking_uri={uri}") == 0
        client = MlflowClient(uri)
        run = only_run(client)
        assert "train/loss/total" in run.data.metrics and run.data.params["model/size"] == "tiny"
        assert [a.path for a in client.list_artifacts(run.info.run_id, "config")] == ["config/fit.yaml"]
        assert run.inputs.dataset_inputs and "mlflow.note.content" in run.data.tags
        assert f"MLflow run page: {uri}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}" in (
            capsys.readouterr().out)
        assert not (workdir / "mlflow.db").exists()  # nothing went to the local default store
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_unreachable_tracking_server_fails_before_training(dataset, workdir, capsys):
    uri = f"http://127.0.0.1:{free_port()}"
    assert fit(dataset, f"logger.tracking_uri={uri}") == 1
    err = capsys.readouterr().err
    assert f"MLflow tracking server {uri} cannot be reached" in err and len(err.strip().splitlines()) == 1
    assert not (workdir / "lwm_runs").exists()


class Payload:
    """Any object that is not a tensor or a plain container needs pickle to load."""


def test_checkpoint_carrying_a_pickled_object_is_refused(dataset, workdir, capsys):
    path = workdir / "evil.ckpt"
    torch.save({"hyper_parameters": {"model_family": "single_cam"}, "payload": Payload()}, path)
    assert fit(dataset, f"ckpt_path={path}") == 1
    assert "holds pickled Python objects" in capsys.readouterr().err


def test_checkpoint_of_another_family_or_size_is_refused(dataset, workdir, capsys):
    path = workdir / "other.ckpt"
    torch.save({"hyper_parameters": {"model_family": "multicam", "config": {}}}, path)
    assert fit(dataset, f"ckpt_path={path}") == 1
    assert "a 'multicam' checkpoint, but model='single_cam'" in capsys.readouterr().err
    torch.save({"hyper_parameters": {"model_family": "single_cam", "config": {"size": "s"}}}, path)
    assert fit(dataset, f"ckpt_path={path}") == 1
    assert "trained with model.size='s', this run asks model.size='tiny'" in capsys.readouterr().err


def test_dataset_without_front_camera(tmp_path, workdir, capsys):
    make_dataset(tmp_path / "rear", train_scenes=2, val_scenes=1, steps=16, chunk_steps=16, size=32,
                 cameras=["rear"])
    assert fit(tmp_path / "rear") == 1
    err = capsys.readouterr().err
    assert "no 'front' camera" in err and "data.cameras=[NAME]" in err


def test_unknown_key_and_bad_type_fail_before_any_work(dataset, workdir, capsys):
    assert fit(dataset, "trainer.max_stepz=3") == 1
    assert "unknown config key 'trainer.max_stepz'" in capsys.readouterr().err
    assert fit(dataset, "data.batch_size=many") == 1
    assert "data.batch_size='many' is not a valid" in capsys.readouterr().err
    assert not any(workdir.iterdir())


def test_ddp_two_cpu_processes(dataset, workdir):
    """Two gloo ranks: one MLflow run written by rank zero, both ranks finish the same steps and
    validate together at the last one (3, between validations)."""
    env = lwm_environment()
    result = subprocess.run(
        ["lwm", "fit", f"data.path={dataset}", *TINY, "trainer=ddp", "trainer.accelerator=cpu",
         "trainer.devices=2", "trainer.max_steps=3", "callbacks=none"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    finished = sorted(line for line in result.stdout.splitlines() if line.startswith("rank "))
    assert finished == ["rank 0: 3 steps", "rank 1: 3 steps"], result.stdout[-2000:]
    client = local_client(workdir)
    run = only_run(client)
    assert "train/loss/total" in run.data.metrics
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/loss/total")] == [2]
    assert run.data.tags["mlflow.note.content"].count("| steps | 3 |") == 1


def test_dataset_without_val_split_trains_and_keeps_last(tmp_path, workdir):
    make_dataset(tmp_path / "noval", train_scenes=2, val_scenes=0, steps=16, chunk_steps=16, size=32)
    assert fit(tmp_path / "noval", "trainer.max_steps=3", "logger=none") == 0
    assert [p.name for p in workdir.glob("lwm_runs/*/checkpoints/*.ckpt")] == ["last.ckpt"]
