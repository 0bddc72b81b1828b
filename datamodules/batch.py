"""The batch every datamodule yields and every model consumes, written down once.

Layout: `[B, T, V, C, H, W]` (batch, time, view, channel, height, width). The loader
collates uint8 frames (4x less to move between processes); the datamodule's
`on_after_batch_transfer` turns them into float32 in [0, 1] on the training device, so a
model always sees float frames.
"""

from typing import NotRequired, TypedDict

import torch


class Batch(TypedDict):
    """One batch of windows cut from shard chunks.

    frames:          float32 [B, T, V, 3, H, W] in [0, 1] (uint8 before `on_after_batch_transfer`)
    actions:         float32 [B, T, A]; row t is the motion from step t to t+1, names in
                     `DataModule.action_names` (canonical `speed` m/s, `yaw_rate` rad/s)
    ego:             float32 [B, T, 4, 4]; `first_from_ego`: the ego pose at each step in the
                     ego frame of the window's first step (x forward, y left, z up)
    hazard:          float32 [B, T]; 1 where a collision or near-collision happens within
                     the horizon
    intrinsics:      float32 [B, V, 3, 3]; pixel intrinsics at the stored resolution
    ego_from_camera: float32 [B, V, 4, 4]; OpenCV camera frame (x right, y down, z forward)
    timestamps:      int64   [B, T]; microseconds
    bev:             uint8   [B, T, 3, h, w]; only when the datamodule was given a BEV grid: occupancy
                     of vehicles, pedestrians and the drivable area in each step's ego frame
                     (`datamodules.bev`; all zeros in a channel the data does not label)
    bev_known:       bool    [B, 3]; which of those channels the data labels (no road geometry:
                     the drivable channel is not known)
    """

    frames: torch.Tensor
    actions: torch.Tensor
    ego: torch.Tensor
    hazard: torch.Tensor
    intrinsics: torch.Tensor
    ego_from_camera: torch.Tensor
    timestamps: torch.Tensor
    bev: NotRequired[torch.Tensor]
    bev_known: NotRequired[torch.Tensor]


def make_random_batch(
    batch_size: int = 2,
    steps: int = 8,
    views: int = 1,
    height: int = 64,
    width: int = 64,
    num_actions: int = 2,
    generator: torch.Generator | None = None,
) -> Batch:
    """A batch of the right shapes and dtypes with random content, for shape tests only."""
    g = generator
    eye4 = torch.eye(4).expand(batch_size, steps, 4, 4).clone()
    intr = torch.tensor([[width / 2, 0, width / 2], [0, width / 2, height / 2], [0, 0, 1.0]])
    return Batch(
        frames=torch.rand(batch_size, steps, views, 3, height, width, generator=g),
        actions=torch.randn(batch_size, steps, num_actions, generator=g),
        ego=eye4,
        hazard=(torch.rand(batch_size, steps, generator=g) > 0.9).float(),
        intrinsics=intr.expand(batch_size, views, 3, 3).clone(),
        ego_from_camera=torch.eye(4).expand(batch_size, views, 4, 4).clone(),
        timestamps=torch.arange(steps, dtype=torch.int64).expand(batch_size, steps) * 100_000,
    )
