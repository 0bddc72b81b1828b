"""`lwm fit data=nuscenes data.path=OUT` trains on shards made by `lwm shard nuscenes` (tiny model, few steps)."""

import json
import xml.etree.ElementTree as ET

import pytest
from mlflow.tracking import MlflowClient

from lightning_wm.cli import main
from lightning_wm.config import compose_config, to_object
from sharding import contract
from sharding.fixtures.nuscenes import NuScenesExportConfig, export_nuscenes

RUN = ["data.window=8", "data.batch_size=2", "data.num_workers=0", "callbacks=none",
       "trainer.max_steps=4", "trainer.log_every_n_steps=1", "trainer.accelerator=cpu", "trainer.devices=1",
       "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0",
       "trainer.enable_progress_bar=false", "logger.system_metrics=false"]
TINY = ["experiment=quick", "model.size=tiny", "model.context_steps=4", "model.psnr_horizons=[1,4]",
        "model.warmup_steps=2", *RUN]
TINY_IDM = ["model=idm", "model.size=tiny", *RUN]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("nuscenes-fit")
    export_nuscenes(root / "raw", NuScenesExportConfig(train_scenes=2, val_scenes=1, samples_per_scene=6,
                                                       width=32, height=32, can_bus=False))
    out = root / "shards"
    assert main(["shard", "nuscenes", "--dataroot", str(root / "raw"), "--version", "v1.0-mini", "--out", str(out),
                 "--width", "32", "--height", "32", "--workers", "1", "source.chunk_steps=16", "progress=false"]) == 0
    return out


def test_fit_trains_on_nuscenes_shards_with_the_front_camera(shards, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("LWM_RUN_NAME", raising=False)
    assert main(["fit", "data=nuscenes", f"data.path={shards}", *TINY]) == 0
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("lightning-wm").experiment_id])[0]
    manifest = contract.Manifest.from_json((shards / contract.MANIFEST_NAME).read_text(), "manifest")
    assert run.data.tags["dataset_fingerprint"] == manifest.fingerprint
    assert run.info.run_name.startswith("single_cam-tiny-shards")
    # a single-camera model on six-camera shards: only data=nuscenes' default_camera=CAM_FRONT lets this run
    assert to_object(compose_config("fit", ["data=nuscenes"]), "fit").default_camera == "CAM_FRONT"
    assert "train/loss/total" in run.data.metrics and "val/loss/total" in run.data.metrics
    assert client.get_metric_history(run.info.run_id, "train/loss/total")[-1].step >= 3


@pytest.fixture(scope="module")
def fitted(shards, tmp_path_factory):
    """A world model and an IDM, both fit on the fixture's CAM_FRONT: (world ckpt, idm ckpt)."""
    root = tmp_path_factory.mktemp("nuscenes-models")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        for family in (TINY_IDM, TINY):
            patch.delenv("LWM_RUN_NAME", raising=False)
            assert main(["fit", "data=nuscenes", f"data.path={shards}", *family]) == 0
    return (next((root / "lwm_runs").glob("single_cam-*/checkpoints/last.ckpt")),
            next((root / "lwm_runs").glob("idm-*/checkpoints/last.ckpt")))


def test_evaluate_scores_a_checkpoint_trained_on_nuscenes_shards(shards, fitted, tmp_path):
    """The whole evaluation path on real-loader data: world model and IDM both fit on the
    nuScenes-layout fixture's CAM_FRONT, then `lwm evaluate` reads generated video with the IDM."""
    world, idm = fitted
    out = tmp_path / "report"
    # 16-step chunks: 4 context frames + 1 s at 10 Hz fit
    assert main(["evaluate", "data=nuscenes", f"data.path={shards}", f"ckpt={world}", f"idm_ckpt={idm}",
                 "context=4", "horizons_s=[1]", "data.num_workers=0", "data.batch_size=2", f"out={out}"]) == 0
    results = json.loads((out / "metrics.json").read_text())
    assert results["info"]["implied_motion"] == "idm" and results["windows"] >= 1
    assert set(results["trajectory"]["generated"]) == {"ade/1s", "fde/1s"}
    assert all(v >= 0 for v in results["trajectory"]["idm_on_ground_truth"].values())
    assert 0 <= results["action_following"]["generated"]["accuracy"] <= 1
    assert "| 1s |" in (out / "summary.md").read_text()


def test_regress_runs_a_suite_of_nuscenes_val_windows_in_the_learned_simulator(shards, fitted, tmp_path, capsys):
    """`suite=from_shards`: the real loader's val windows become the suite, scored by the world model
    alone, DAC unscored (the shards carry no road geometry); the reference world is refused."""
    world, _ = fitted
    out = tmp_path / "report"
    common = ["regress", "data=nuscenes", f"data.path={shards}", f"sim={world}", "suite=from_shards",
              "suite.context=4", "logger=none", "videos=0"]
    assert main([*common, f"out={out}", "suite.horizon=10"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    rows = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    info = metrics["info"]
    assert info["simulators"] == ["learned"] and info["episode_source"].startswith(f"val windows of {shards} (dataset ")
    assert len(rows) == info["episodes"] >= 1 and all(r["dac"] is None for r in rows)
    assert all(r["episode"].startswith("val-") and r["pdms"] is not None for r in rows)
    cases = {f"{c.get('classname')}.{c.get('name')}" for c in ET.parse(out / "junit.xml").getroot().iter("testcase")}
    assert {"thresholds.learned.nominal_collision_rate", "candidate_vs_baseline.learned.none/pdms"} <= cases
    # the suite's hash names the data and the windows: shorter windows are another suite
    assert main([*common, f"out={tmp_path / 'short'}", "suite.horizon=8"]) == 0
    assert json.loads((tmp_path / "short" / "metrics.json").read_text())["info"]["suite_hash"] != info["suite_hash"]
    capsys.readouterr()
    assert main([*common, f"out={tmp_path / 'refused'}", "suite.horizon=10", "reference=true"]) == 2
    assert "re-creates synthetic scenes only" in capsys.readouterr().err and not (tmp_path / "refused").exists()
