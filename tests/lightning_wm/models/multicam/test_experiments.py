"""`experiment=nuscenes_multicam` (6 cameras) and `experiment=waymo_multicam` (5 cameras) train on
fixtures in the real layouts: the synthetic world exported as nuScenes (read by nuscenes-devkit)
and as Waymo v2 parquet (read by pyarrow), sharded by `lwm shard`, then `lwm fit`."""

import pytest
import torch

from lightning_wm.checkpoints import load_checkpoint
from lightning_wm.cli import main
from sharding.fixtures.nuscenes import NuScenesExportConfig, export_nuscenes
from sharding.fixtures.waymo import WaymoExportConfig, export_waymo

SIZE = 32
FIT = ["model.size=tiny", "model.context_steps=4", "model.psnr_horizons=[1,4]", "model.warmup_steps=1",
       "data.window=8", "data.batch_size=2", "data.num_workers=0", "trainer.accelerator=cpu", "trainer.devices=1",
       "trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=1",
       "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false", "logger=none"]


@pytest.fixture(scope="module")
def nuscenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("nuscenes")
    export_nuscenes(root / "raw", NuScenesExportConfig(train_scenes=1, val_scenes=1, width=SIZE, height=SIZE,
                                                       samples_per_scene=6, can_bus=False, lidar=False))
    assert main(["shard", "nuscenes", "--dataroot", str(root / "raw"), "--version", "v1.0-mini", "--out",
                 str(root / "shards"), "--width", str(SIZE), "--height", str(SIZE), "--workers", "1",
                 "source.chunk_steps=16", "progress=false"]) == 0
    return root / "shards"


@pytest.fixture(scope="module")
def waymo(tmp_path_factory):
    root = tmp_path_factory.mktemp("waymo")
    export_waymo(root / "raw", WaymoExportConfig(train_segments=1, val_segments=1, steps=24, width=SIZE, height=SIZE))
    assert main(["shard", "waymo", "--root", str(root / "raw"), "--out", str(root / "shards"), "--width", str(SIZE),
                 "--height", str(SIZE), "--workers", "1", "source.chunk_steps=16", "progress=false"]) == 0
    return root / "shards"


@pytest.mark.parametrize("experiment, dataset, cameras", [
    ("nuscenes_multicam", "nuscenes", ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT",
                                       "CAM_FRONT_LEFT"]),
    ("waymo_multicam", "waymo", ["FRONT", "FRONT_LEFT", "FRONT_RIGHT", "SIDE_LEFT", "SIDE_RIGHT"]),
])
def test_experiment_trains_on_every_camera_of_the_made_fixture(experiment, dataset, cameras, request, tmp_path,
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LWM_RUN_NAME", raising=False)
    path = request.getfixturevalue(dataset)
    assert main(["fit", f"experiment={experiment}", f"data.path={path}", *FIT]) == 0
    checkpoint = load_checkpoint(next(tmp_path.glob("lwm_runs/*/checkpoints/last.ckpt")))
    hparams = checkpoint["hyper_parameters"]
    assert hparams["model_family"] == "multicam" and checkpoint["global_step"] == 2
    assert [c["name"] for c in hparams["rig"]] == cameras  # every camera of the rig, in the manifest's order
    # The calibration comes from the source: every camera looks another way (optical axes apart).
    forward = torch.tensor([c["ego_from_camera"] for c in hparams["rig"]])[:, :3, 2]
    cosines = forward @ forward.T - 2 * torch.eye(len(cameras))
    assert cosines.max() < 0.99
