"""`lwm fit model=multicam` end to end on a tiny 3-camera synthetic world (the real renderer and
shard writer), what it logs, the checkpoint it leaves, and the refusals of wrong rigs."""

import pytest
import torch
from mlflow.tracking import MlflowClient

from lightning_wm.cli import main
from lightning_wm.models.loading import load_world_model
from lightning_wm.models.multicam.module import MultiCamWorldModel
from tests.helpers import make_dataset

TINY = [
    "model=multicam", "model.size=tiny", "model.context_steps=4", "model.psnr_horizons=[1,4]", "model.warmup_steps=2",
    "data.window=8", "data.batch_size=2", "data.num_workers=0",
    "trainer.accelerator=cpu", "trainer.devices=1", "trainer.val_check_interval=4", "trainer.limit_val_batches=1",
    "trainer.num_sanity_val_steps=0", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
    "logger.system_metrics=false",
]
# The synthetic default at a tiny scale: 3 train + 1 val scenes of 24 steps, 3 cameras at 32x32.
SYNTHETIC = ["data.synthetic.train_scenes=3", "data.synthetic.val_scenes=1", "data.synthetic.world.steps=24",
             "data.synthetic.chunk_steps=24", "data.synthetic.rig.width=32", "data.synthetic.rig.height=32"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("synthetic_cache")


def test_fit_multicam_on_the_synthetic_world_logs_psnr_and_cross_view_metrics(workdir, cache):
    assert main(["fit", *TINY, *SYNTHETIC, f"data.cache_dir={cache}", "trainer.max_steps=4"]) == 0
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("lightning-wm").experiment_id])
    assert run.info.run_name.startswith("multicam-tiny-") and run.data.tags["model_family"] == "multicam"
    metrics = run.data.metrics
    for name in ("train/loss/total", "train/loss/kl_dyn", "train/loss/open_loop_image", "val/loss/total",
                 "val/psnr_h1/model", "val/psnr_h4/model", "val/psnr_h4/copy_last", "val/psnr_h4/shuffled_actions",
                 "val/xview_h1/model", "val/xview_h4/model", "val/xview_h1/ground_truth", "val/xview_h4/ground_truth"):
        assert name in metrics, name
    # The synthetic rig overlaps by 25 degrees: ground truth agrees across views, up to JPEG and resampling.
    assert 0 < metrics["val/xview_h1/ground_truth"] < 0.05 and metrics["val/xview_h1/model"] > 0
    # The default callbacks drive the model through the rollout Protocol only: videos and sweeps exist.
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"rollouts", "robustness"}
    assert "z_summary/robustness/success/all" in metrics
    checkpoint = next((workdir / "lwm_runs" / run.info.run_name / "checkpoints").glob("last.ckpt"))
    model, _ = load_world_model(checkpoint)  # what `lwm evaluate` and the benchmarks do
    assert isinstance(model, MultiCamWorldModel)
    assert model.camera_names == ["front", "front_left", "front_right"]
    frames, actions = torch.rand(1, 6, 3, 3, 32, 32), torch.zeros(1, 6, 2)
    with torch.no_grad():  # no calibration passed: the rig stored in the checkpoint is used
        video = model.decode(model.imagine(model.observe(frames[:, :4], actions[:, :4]), actions[:, 3:5]))
    assert video.shape == (1, 2, 3, 3, 32, 32)


def test_resuming_on_data_with_other_cameras_is_refused_naming_them(workdir, cache, capsys):
    assert main(["fit", *TINY, *SYNTHETIC, f"data.cache_dir={cache}", "trainer.max_steps=1", "logger=none"]) == 0
    checkpoint = next((workdir / "lwm_runs").glob("*/checkpoints/last.ckpt"))
    other = workdir / "other"
    make_dataset(other, train_scenes=2, val_scenes=1, steps=16, chunk_steps=8, size=32, cameras=["CAM_A", "CAM_B"])
    capsys.readouterr()
    resume = [f"data.path={other}", f"ckpt_path={checkpoint}", "trainer.max_steps=2", "logger=none"]
    assert main(["fit", *TINY, *resume]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("lwm fit: error: cameras ['CAM_A', 'CAM_B'] of the data are not among the cameras the "
                            "model was trained on ['front', 'front_left', 'front_right']"), error


def test_a_single_camera_dataset_is_refused_naming_the_camera(workdir, capsys):
    one = workdir / "one"
    make_dataset(one, train_scenes=2, val_scenes=1, steps=16, chunk_steps=8, size=32, cameras=["front"])
    assert main(["fit", *TINY, f"data.path={one}", "trainer.max_steps=1", "logger=none"]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == ("lwm fit: error: data.cameras=['front']: the multi-camera model needs at least 2 cameras, got "
                     "['front']; use data.cameras=null (all cameras) or model=single_cam for one camera"), error
