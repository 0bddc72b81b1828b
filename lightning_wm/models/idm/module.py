"""`InverseDynamicsModel` (IDM): estimates the ego motion between consecutive frames of one camera.

Trained on real (ground-truth) frames only (`lwm fit model=idm`), then frozen and used by
`lwm evaluate` to read the trajectory a generated video implies (waypoints from video, as in
GAIA-1/VISTA-style evaluations). Its error on ground-truth video is the floor of that metric.
Frames are float in [0, 1]. The camera rig and frame rate it was trained on are stored in its
hyperparameters: image motion per step depends on both, so other video is refused.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import lightning as L
import torch
from torchmetrics import MeanMetric

from datamodules.batch import Batch
from lightning_wm.geometry import integrate, pose_deltas
from lightning_wm.metrics.trajectory import WHOLE, DisplacementError
from lightning_wm.models.cameras import check_rig
from lightning_wm.models.idm.augment import augmented
from lightning_wm.models.idm.config import IDM_SIZES, IDMConfig
from lightning_wm.models.idm.network import MotionEstimator
from lightning_wm.models.schedules import adamw_warmup_cosine
from sharding.errors import ConfigError

MAE_NAMES = ("mae_dx", "mae_dy", "mae_dyaw")  # logged as val/idm/<name>, beside val/idm/ade and val/idm/fde


class InverseDynamicsModel(L.LightningModule):
    """`InverseDynamicsModel(config, action_names, image_size, rig, fps)`.

    config:       `IDMConfig` or a plain dict of its fields
    action_names: the datamodule's action names (unused by the network; kept so every family
                  is built alike by `lwm fit`)
    image_size:   (H, W) of the frames
    rig:          [the one camera it reads] (`cameras.rig_from_manifest`); fps: the data's frame rate
    Batches are `datamodules.batch.Batch` with V=1 view.
    """

    family = "idm"

    def __init__(self, config: IDMConfig | dict[str, Any], action_names: list[str],
                 image_size: tuple[int, int] | list[int], rig: list[dict[str, Any]], fps: float) -> None:
        super().__init__()
        self.config = config if isinstance(config, IDMConfig) else IDMConfig.from_dict(dict(config))
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.rig, self.fps = check_rig(rig, "InverseDynamicsModel"), float(fps)
        if len(self.rig) != 1:
            raise ConfigError(f"the IDM reads one camera, the rig has {[c['name'] for c in self.rig]}; "
                              "set data.cameras to one camera")
        # Plain containers only: checkpoints must load with torch.load(weights_only=True).
        self.save_hyperparameters({"config": asdict(self.config), "action_names": [str(a) for a in action_names],
                                   "image_size": list(self.image_size), "rig": self.rig, "fps": self.fps,
                                   "model_family": self.family})
        size = IDM_SIZES[self.config.size]
        self.net = MotionEstimator(self.config.frames, self.image_size, size.cnn_depth, size.units,
                                   size.mlp_layers, self.config.motion_scale)
        self.val_displacement = DisplacementError({"clip": WHOLE})  # over each validation clip
        self.val_mae = torch.nn.ModuleDict({name: MeanMetric() for name in MAE_NAMES})

    @property
    def camera(self) -> dict[str, Any]:
        """The one camera it reads: {name, width, height, intrinsics, ego_from_camera}."""
        return self.rig[0]

    @property
    def frames(self) -> int:
        """K: frames per estimate. Estimating the motion into frame t needs frames t-K+1..t."""
        return self.config.frames

    def _stacks(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, T, 1, 3, H, W] -> [B, T-K+1, K, 3, H, W]: every run of K consecutive frames."""
        if frames.ndim != 6 or frames.shape[2] != 1:
            raise ConfigError(f"the IDM reads one camera, frames [B, T, 1, 3, H, W]; got {list(frames.shape)}")
        if tuple(frames.shape[-2:]) != self.image_size:
            raise ConfigError(f"frames are {tuple(frames.shape[-2:])} but the IDM was trained on {self.image_size}")
        if frames.shape[1] < self.frames:
            raise ConfigError(f"the IDM needs at least {self.frames} frames per clip, got {frames.shape[1]}")
        windows = frames[:, :, 0].unfold(1, self.frames, 1)  # [B, T-K+1, 3, H, W, K]
        return windows.permute(0, 1, 5, 2, 3, 4)

    def _normalized(self, frames: torch.Tensor) -> torch.Tensor:
        stacks = self._stacks(frames)
        return self.net.normalized(stacks.flatten(0, 1)).unflatten(0, stacks.shape[:2])  # [B, T-K+1, 3]

    def estimate(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [B, T, 1, 3, H, W] -> [B, T-K+1, 3]: [dx, dy, dyaw] from frame t-1 into frame t,
        for t = K-1 .. T-1 (for K=2 exactly the rows of `pose_deltas` of the clip's poses)."""
        return self._normalized(frames) * self.net.motion_scale

    def losses(self, batch: Batch, augment: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Squared error in units of `motion_scale`: batch -> (total, {dx, dy, dyaw, total}).

        augment: mirror, turn, blur and re-light clips at random (`augment.augmented`), for training.
        """
        frames, motion = batch["frames"], pose_deltas(batch["ego"])[:, self.frames - 2 :]  # motion [B, T-K+1, 3]
        if augment:
            frames, motion = augmented(frames, motion, self.config, self.camera, self.image_size)
        error = (self._normalized(frames) - motion / self.net.motion_scale).square().flatten(0, 1).mean(0)  # [3]
        terms = {"dx": error[0], "dy": error[1], "dyaw": error[2], "total": error.sum()}
        return terms["total"], terms

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        total, terms = self.losses(batch, augment=True)
        self.log_dict({f"train/loss/{k}": v for k, v in terms.items()}, batch_size=batch["frames"].shape[0])
        return total

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        size = batch["frames"].shape[0]
        _, terms = self.losses(batch)
        self.log_dict({f"val/loss/{k}": v for k, v in terms.items()}, batch_size=size, sync_dist=True)
        pred, truth = self.estimate(batch["frames"]), pose_deltas(batch["ego"])[:, self.frames - 2 :]
        self.val_displacement.update(integrate(pred), integrate(truth))  # metres along the clip
        for index, name in enumerate(MAE_NAMES):
            self.val_mae[name].update((pred - truth)[..., index].abs().mean(1))
            self.log(f"val/idm/{name}", self.val_mae[name], batch_size=size)

    def on_validation_epoch_end(self) -> None:
        if self.val_displacement.update_count:
            scores = self.val_displacement.compute()  # synchronised across DDP ranks
            self.log_dict({"val/idm/ade": scores["ade/clip"], "val/idm/fde": scores["fde/clip"]})
        self.val_displacement.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        # Cosine decay to lr/10 over trainer.max_steps: a noisy regression target settles on a
        # better final estimate than at a constant rate.
        cfg = self.config
        return adamw_warmup_cosine(self, cfg.lr, cfg.weight_decay, cfg.warmup_steps, 0.1)
