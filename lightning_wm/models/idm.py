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
import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from datamodules.batch import Batch
from lightning_wm.evaluation.trajectory import displacement, integrate
from lightning_wm.models.ego_flow import rotation_flow
from lightning_wm.models.heads import pose_deltas
from lightning_wm.models.idm_config import IDM_SIZES, IDMConfig
from lightning_wm.models.idm_network import MotionEstimator
from lightning_wm.models.schedules import adamw_warmup_cosine
from lightning_wm.models.warp_decoder import warp
from sharding.contract import CameraInfo, Manifest
from sharding.errors import ConfigError

VAL_NAMES = ("ade", "fde", "mae_dx", "mae_dy", "mae_dyaw")  # logged as val/idm/<name>


def gaussian_blur(frames: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each clip with its own sigma: frames [B, T, 1, 3, H, W], sigma [B] pixels (0: unchanged)."""
    radius = 3
    x = torch.arange(-radius, radius + 1, device=frames.device, dtype=frames.dtype)
    kernel = torch.exp(-x.square() / (2 * sigma[:, None].to(frames.dtype).clamp(min=1e-3) ** 2))
    kernel = kernel / kernel.sum(-1, keepdim=True)  # [B, 7]
    batch, steps, _, channels, h, w = frames.shape
    images = frames.reshape(1, batch * steps * channels, h, w)
    weights = kernel.repeat_interleave(steps * channels, 0)  # [B*T*3, 7]
    images = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="replicate"), weights[:, None, None, :],
                      groups=images.shape[1])
    images = F.conv2d(F.pad(images, (0, 0, radius, radius), mode="replicate"), weights[:, None, :, None],
                      groups=images.shape[1])
    return images.view_as(frames)


def camera_rig(camera: CameraInfo) -> dict[str, Any]:
    """What the IDM remembers of its camera, as plain containers (checkpoint-safe)."""
    return {"camera": camera.name, "width": int(camera.width), "height": int(camera.height),
            "intrinsics": [[float(v) for v in row] for row in camera.intrinsics],
            "ego_from_camera": [[float(v) for v in row] for row in camera.ego_from_camera]}


def manifest_args(manifest: Manifest, camera_names: list[str]) -> dict[str, Any]:
    """Constructor arguments known only from the dataset: the rig of its one camera and the fps."""
    camera = manifest.cameras[manifest.camera_names.index(camera_names[0])]
    return {"rig": camera_rig(camera), "fps": float(manifest.fps)}


def rig_mismatch(trained: dict[str, Any], trained_fps: float, camera: CameraInfo, fps: float) -> str | None:
    """Why video from `camera` at `fps` is not what an IDM trained on (`trained`, `trained_fps`)
    saw, or None when it is (intrinsics and mounting within 0.1%)."""
    seen = camera_rig(camera)
    if abs(trained_fps - fps) > 1e-6 * max(1.0, fps):
        return f"it was trained at {trained_fps:g} fps, the data is at {fps:g} fps"
    if trained["camera"] != seen["camera"]:
        return f"it was trained on camera {trained['camera']!r}, the evaluation reads {seen['camera']!r}"
    for key in ("width", "height"):
        if trained[key] != seen[key]:
            return (f"it was trained on {trained['width']}x{trained['height']} frames, "
                    f"the data has {seen['width']}x{seen['height']}")
    for key in ("intrinsics", "ego_from_camera"):
        if not np.allclose(trained[key], seen[key], rtol=1e-3, atol=1e-4):
            return (f"camera {seen['camera']!r} has other {key} than the rig it was trained on "
                    f"({trained[key]} vs {seen[key]})")
    return None


class InverseDynamicsModel(L.LightningModule):
    """`InverseDynamicsModel(config, action_names, image_size, rig, fps)`.

    config:       `IDMConfig` or a plain dict of its fields
    action_names: the datamodule's action names (unused by the network; kept so every family
                  is built alike by `lwm fit`)
    image_size:   (H, W) of the frames
    rig:          `camera_rig(...)` of the one camera it reads; fps: the data's frame rate
    Batches are `datamodules.batch.Batch` with V=1 view.
    """

    def __init__(self, config: IDMConfig | dict[str, Any], action_names: list[str],
                 image_size: tuple[int, int] | list[int], rig: dict[str, Any], fps: float) -> None:
        super().__init__()
        self.config = config if isinstance(config, IDMConfig) else IDMConfig.from_dict(dict(config))
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.rig, self.fps = dict(rig), float(fps)
        # Plain containers only: checkpoints must load with torch.load(weights_only=True).
        self.save_hyperparameters({"config": asdict(self.config), "action_names": [str(a) for a in action_names],
                                   "image_size": list(self.image_size), "rig": self.rig, "fps": self.fps,
                                   "model_family": "idm"})
        size = IDM_SIZES[self.config.size]
        self.net = MotionEstimator(self.config.frames, self.image_size, size.cnn_depth, size.units,
                                   size.mlp_layers, self.config.motion_scale)
        self.val_metrics = torch.nn.ModuleDict({name: MeanMetric() for name in VAL_NAMES})

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

        augment: mirror and re-light clips at random (`augmented`), for training.
        """
        frames, motion = batch["frames"], pose_deltas(batch["ego"])[:, self.frames - 2 :]  # motion [B, T-K+1, 3]
        if augment:
            frames, motion = self.augmented(frames, motion)
        error = (self._normalized(frames) - motion / self.net.motion_scale).square().flatten(0, 1).mean(0)  # [3]
        terms = {"dx": error[0], "dy": error[1], "dyaw": error[2], "total": error.sum()}
        return terms["total"], terms

    def augmented(self, frames: torch.Tensor, motion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Random per-clip changes the motion estimate must not depend on (64 training scenes are
        few enough to memorise by their look): frames [B, T, 1, 3, H, W], motion [B, T', 3] ->
        the same shapes. Mirroring left-right turns a left turn into a right one (dy, dyaw negated);
        gain and offset change the lighting."""
        cfg, batch = self.config, frames.shape[0]
        shape = (batch, 1, 1, 1, 1, 1)
        if cfg.mirror:
            flip = torch.rand(batch, device=frames.device) < 0.5
            frames = torch.where(flip.view(shape), frames.flip(-1), frames)
            motion = motion * torch.where(flip[:, None, None], motion.new_tensor([1.0, -1.0, -1.0]), motion.new_ones(3))
        if cfg.yaw_augment > 0:
            frames, motion = self._turned(frames, motion, cfg.yaw_augment * (2 * torch.rand(batch, device=frames.device) - 1))
        if cfg.blur > 0:
            frames = gaussian_blur(frames, cfg.blur * torch.rand(batch, device=frames.device))
        if cfg.photometric > 0:
            gain = 1 + cfg.photometric * (2 * torch.rand(shape, device=frames.device) - 1)
            offset = 0.5 * cfg.photometric * (2 * torch.rand(shape, device=frames.device) - 1)
            frames = (frames * gain + offset).clamp(0, 1)
        return frames, motion

    def _turned(self, frames: torch.Tensor, motion: torch.Tensor, rate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The clips as seen by a camera that also turns `rate` [B] rad per step about the ego z
        axis: frame t is re-projected by the rotation homography of angle rate * t (exact for a
        pure rotation), and each step's dyaw grows by `rate`. Teaches yaw beyond the data's range."""
        batch, steps = frames.shape[:2]
        angles = rate[:, None] * torch.arange(steps, device=frames.device)  # [B, T]
        flow = rotation_flow(torch.tensor(self.rig["intrinsics"]), torch.tensor(self.rig["ego_from_camera"]),
                             angles.flatten(), self.image_size)  # [B*T, 2, H, W]
        turned = warp(frames.flatten(0, 2), flow).view_as(frames)
        return turned, motion + F.pad(rate[:, None, None], (2, 0))

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        total, terms = self.losses(batch, augment=True)
        self.log_dict({f"train/loss/{k}": v for k, v in terms.items()}, batch_size=batch["frames"].shape[0])
        return total

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        size = batch["frames"].shape[0]
        _, terms = self.losses(batch)
        self.log_dict({f"val/loss/{k}": v for k, v in terms.items()}, batch_size=size, sync_dist=True)
        pred, truth = self.estimate(batch["frames"]), pose_deltas(batch["ego"])[:, self.frames - 2 :]
        error = displacement(integrate(pred), integrate(truth))  # [B, T-K+1] metres along the clip
        values = {"ade": error.mean(1), "fde": error[:, -1], "mae_dx": (pred - truth)[..., 0].abs().mean(1),
                  "mae_dy": (pred - truth)[..., 1].abs().mean(1), "mae_dyaw": (pred - truth)[..., 2].abs().mean(1)}
        for name, value in values.items():
            self.val_metrics[name].update(value)
            self.log(f"val/idm/{name}", self.val_metrics[name], batch_size=size)

    def configure_optimizers(self) -> dict[str, Any]:
        # Cosine decay to lr/10 over trainer.max_steps: a noisy regression target settles on a
        # better final estimate than at a constant rate.
        cfg = self.config
        return adamw_warmup_cosine(self, cfg.lr, cfg.weight_decay, cfg.warmup_steps, 0.1)
