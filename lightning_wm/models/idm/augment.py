"""Training-time changes of IDM clips that the motion estimate must not depend on.

64 training scenes are few enough to memorise by their look, and generated video is softer and
turns at other rates than the data, so each clip is mirrored, turned, blurred and re-lit at
random (`IDMConfig`: mirror, yaw_augment, blur, photometric). Frames [B, T, 1, 3, H, W] in [0, 1];
motion [B, T', 3] = [dx m, dy m, dyaw rad] per step.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from lightning_wm.geometry import rotation_flow
from lightning_wm.models.idm.config import IDMConfig
from lightning_wm.models.nn.warp_decoder import warp


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


def augmented(frames: torch.Tensor, motion: torch.Tensor, config: IDMConfig, camera: dict[str, Any],
              image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Random per-clip changes: frames [B, T, 1, 3, H, W], motion [B, T', 3] -> the same shapes.

    Mirroring left-right turns a left turn into a right one (dy, dyaw negated); an extra turn is
    rendered by the rotation homography of `camera`; gain and offset change the lighting.
    """
    cfg, batch = config, frames.shape[0]
    shape = (batch, 1, 1, 1, 1, 1)
    if cfg.mirror:
        flip = torch.rand(batch, device=frames.device) < 0.5
        frames = torch.where(flip.view(shape), frames.flip(-1), frames)
        motion = motion * torch.where(flip[:, None, None], motion.new_tensor([1.0, -1.0, -1.0]), motion.new_ones(3))
    if cfg.yaw_augment > 0:
        rate = cfg.yaw_augment * (2 * torch.rand(batch, device=frames.device) - 1)
        frames, motion = turned(frames, motion, rate, camera, image_size)
    if cfg.blur > 0:
        frames = gaussian_blur(frames, cfg.blur * torch.rand(batch, device=frames.device))
    if cfg.photometric > 0:
        gain = 1 + cfg.photometric * (2 * torch.rand(shape, device=frames.device) - 1)
        offset = 0.5 * cfg.photometric * (2 * torch.rand(shape, device=frames.device) - 1)
        frames = (frames * gain + offset).clamp(0, 1)
    return frames, motion


def turned(frames: torch.Tensor, motion: torch.Tensor, rate: torch.Tensor, camera: dict[str, Any],
           image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The clips as seen by a camera that also turns `rate` [B] rad per step about the ego z
    axis: frame t is re-projected by the rotation homography of angle rate * t (exact for a
    pure rotation), and each step's dyaw grows by `rate`. Teaches yaw beyond the data's range."""
    batch, steps = frames.shape[:2]
    angles = rate[:, None] * torch.arange(steps, device=frames.device)  # [B, T]
    flow = rotation_flow(torch.tensor(camera["intrinsics"]), torch.tensor(camera["ego_from_camera"]),
                         angles.flatten(), image_size)  # [B*T, 2, H, W]
    turned_frames = warp(frames.flatten(0, 2), flow).view_as(frames)
    return turned_frames, motion + F.pad(rate[:, None, None], (2, 0))
