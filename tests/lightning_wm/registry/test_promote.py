"""`lwm promote` against a real MLflow server and the local SQLite store; `models:/` URIs everywhere."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from lightning_wm.cli import main
from lightning_wm.models.loading import load_world_model
from lightning_wm.models.rollout import rollout_arrays
from tests.mlflow_server import browser_page, mlflow_server

EVAL = ["data.num_workers=0", "logger.system_metrics=false", "device=cpu"]


def promote(world, ckpt, uri, *extra):
    return main(["promote", f"ckpt={ckpt}", f"data.path={world}", f"logger.tracking_uri={uri}", *EVAL,
                 "sim_to_sim.episodes=0", *extra])


def test_the_better_checkpoint_becomes_champion_the_worse_stays_challenger_on_a_server(
        synthetic_world, good_and_bad, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    good, bad = good_and_bad
    with mlflow_server(tmp_path) as uri:
        assert promote(synthetic_world, good, uri, "sim_to_sim.episodes=4") == 0
        assert promote(synthetic_world, bad, uri, "sim_to_sim.episodes=4") == 1
        out = capsys.readouterr().out
        assert "driving-wm v2 stays challenger" in out and "psnr" in out.split("stays challenger")[1]
        client = MlflowClient(uri, registry_uri=uri)
        model = client.get_registered_model("driving-wm")
        assert {k: int(v) for k, v in model.aliases.items()} == {"champion": 1, "challenger": 2}
        v1, v2 = client.get_model_version("driving-wm", "1"), client.get_model_version("driving-wm", "2")
        assert v1.tags["gate"] == "passed" and v2.tags["gate"] == "failed" and v2.tags["gated_against"] == "v1"
        assert "stays challenger" in v2.description and v1.tags["protocol_hash"] in v2.description
        assert v1.tags["protocol_hash"] == v2.tags["protocol_hash"]
        assert {"eval/sim_to_sim/event_recall", "eval/sim_to_sim/event_kappa", "eval/psnr/3s"} <= set(v1.tags)
        failed = v2.tags["gate_failed"].split(",")
        assert all(float(v2.tags[f"eval/{m}"]) != float(v1.tags[f"eval/{m}"]) for m in failed)
        # the report: one JUnit testcase per gated metric, the failures named
        (report,) = (tmp_path / "lwm_runs" / "promotions").glob("promote-driving-wm-one-step-*")
        suite = ET.parse(report / "junit.xml").getroot().find("testsuite")
        failures = [case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None]
        assert failures == failed and int(suite.get("failures")) == len(failed)
        # the champion is what `models:/...@champion` evaluates
        assert main(["evaluate", "ckpt=models:/driving-wm@champion", f"data.path={synthetic_world}",
                     f"logger.tracking_uri={uri}", *EVAL]) == 0
        (evaluation,) = (tmp_path / "lwm_runs" / "trained" / "evaluations").glob("eval-*/metrics.json")
        info = json.loads(evaluation.read_text())["info"]
        assert info["protocol_hash"] == v1.tags["protocol_hash"] and info["model_uri"] == "models:/driving-wm@champion"
        assert "registry/driving-wm/v1" in info["checkpoint"]
        runs = client.search_runs([client.get_experiment_by_name("lightning-wm").experiment_id])
        assert {r.data.tags.get("lwm_command") for r in runs} == {"promote", "evaluate"}
        assert all("None" not in r.data.params.values() and r.data.params["name"] == "driving-wm"
                   for r in runs if r.data.tags["lwm_command"] == "promote")  # flat params, null as empty
        # what a user sees in the registry pages of MLflow's UI, in a real browser
        with browser_page() as page:
            page.goto(f"{uri}/#/models/driving-wm")
            page.get_by_text("Version 2").first.wait_for(timeout=30_000)
            versions = page.get_by_role("row").filter(has_text="Version 2").first.inner_text()
            assert "challenger" in versions and "eval/psnr/1s" in versions
            assert "champion" in page.get_by_role("row").filter(has_text="Version 1").first.inner_text()
            page.goto(f"{uri}/#/models/driving-wm/versions/2")
            page.get_by_text("stays challenger").first.wait_for(timeout=30_000)
            body = page.locator("body").inner_text()
            assert "world_model" in body and "promote-driving-wm-one-step" in body  # source model and run


def test_registered_model_rolls_out_like_its_checkpoint_and_reevaluation_agrees_with_its_tags(
        synthetic_world, good_and_bad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good, _ = good_and_bad
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert promote(synthetic_world, good, uri) == 0
    # promoting the same checkpoint again, re-evaluating the champion: identical figures, so it passes
    assert promote(synthetic_world, good, uri, "reuse_champion_results=false") == 0
    client = MlflowClient(uri, registry_uri=uri)
    v1, v2 = client.get_model_version("driving-wm", "1"), client.get_model_version("driving-wm", "2")
    assert {k: v for k, v in v1.tags.items() if k.startswith("eval/")} == {
        k: v for k, v in v2.tags.items() if k.startswith("eval/")}
    assert {k: int(v) for k, v in client.get_registered_model("driving-wm").aliases.items()} == {"champion": 2}
    # the pyfunc model (an MLflow LoggedModel) rolls out exactly like the checkpoint
    mlflow.set_tracking_uri(uri)
    pyfunc = mlflow.pyfunc.load_model("models:/driving-wm@champion")
    rng = np.random.default_rng(0)
    window = {"frames": rng.random((2, 4, 1, 3, 32, 32), dtype=np.float32),
              "actions": rng.normal(size=(2, 9, 2)).astype(np.float32)}
    predicted = pyfunc.predict(window, params={"seed": 3})
    model, _ = load_world_model(good)
    assert predicted.shape == (2, 6, 1, 3, 32, 32)
    np.testing.assert_array_equal(predicted, rollout_arrays(model, window, seed=3))
    assert not np.array_equal(predicted, pyfunc.predict(window, params={"seed": 4}))
    logged = client.get_logged_model(v2.model_id) if v2.model_id else None
    assert logged is None or any(m.key.startswith("gate/") for m in logged.metrics or [])


def test_simulate_and_rollout_take_registered_models(synthetic_world, good_and_bad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good, _ = good_and_bad
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert promote(synthetic_world, good, uri) == 0
    assert main(["simulate", "sim=models:/driving-wm/1", f"data.path={synthetic_world}", "logger=none",
                 "episodes=2", "videos=0", "device=cpu", f"logger.tracking_uri={uri}"]) == 0
    videos = {}
    for steer in ("left", "right"):
        assert main(["rollout", "model=models:/driving-wm@champion", f"steer={steer}", f"data.path={synthetic_world}",
                     f"logger.tracking_uri={uri}", "horizon_s=2", f"out={tmp_path / steer}"]) == 0
        videos[steer] = (tmp_path / f"{steer}.gif").read_bytes()
        assert (tmp_path / f"{steer}.mp4").stat().st_size > 0
    assert videos["left"] != videos["right"]


@pytest.mark.parametrize("uri_suffix, message", [
    ("driving-wm@nope", "no such version or alias of 'driving-wm' (aliases: ['champion']"),
    ("other@champion", "no registered model 'other'"),
])
def test_a_registered_model_that_is_not_there_is_one_line(synthetic_world, good_and_bad, tmp_path, monkeypatch,
                                                          capsys, uri_suffix, message):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert promote(synthetic_world, good_and_bad[0], uri) == 0
    capsys.readouterr()
    assert main(["evaluate", f"ckpt=models:/{uri_suffix}", f"data.path={synthetic_world}",
                 f"logger.tracking_uri={uri}", *EVAL]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "lwm promote" in err[0]


def test_fit_fine_tunes_a_registered_model_in_a_new_run(synthetic_world, good_and_bad, tmp_path, monkeypatch):
    import torch

    from lightning_wm.commands.fit import RUN_NAME_ENV
    from tests.lightning_wm.conftest import TINY_FIT

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(RUN_NAME_ENV, raising=False)
    good, _ = good_and_bad
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert promote(synthetic_world, good, uri) == 0
    overrides = [o for o in TINY_FIT if o != "logger=none"]
    # lr 1e-30 (below float32 resolution): the fine-tuned weights stay exactly the registered ones
    assert main(["fit", f"data.path={synthetic_world}", "ckpt_path=models:/driving-wm@champion", "logger.run_name=tuned",
                 f"logger.tracking_uri={uri}", "logger.system_metrics=false", *overrides, "model.lr=1e-30"]) == 0
    tuned = torch.load(tmp_path / "lwm_runs" / "tuned" / "checkpoints" / "last.ckpt", weights_only=True)
    start = torch.load(good, weights_only=True)
    assert tuned["global_step"] == 2  # from step 0: a new run, not a resume of the registered one at step 40
    assert tuned["state_dict"].keys() == start["state_dict"].keys()
    assert all(torch.equal(tuned["state_dict"][k], v) for k, v in start["state_dict"].items())
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("lightning-wm").experiment_id],
                                "tags.fine_tuned_from = 'models:/driving-wm@champion'")
    assert run.info.run_name == "tuned"
    # promoting it marks its training run (in this store) with the version it became
    tuned_ckpt = tmp_path / "lwm_runs" / "tuned" / "checkpoints" / "last.ckpt"
    assert promote(synthetic_world, tuned_ckpt, uri) == 0  # the same weights as the champion: nothing regresses
    assert client.get_run(run.info.run_id).data.tags["registered/driving-wm/v2"] == "champion"
