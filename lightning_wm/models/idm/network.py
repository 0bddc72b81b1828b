"""The inverse-dynamics network: a short stack of consecutive frames -> the ego motion between
the last two. Images are float in [0, 1] on input.

The frames and their temporal differences go in as channels: ego motion shows as image motion
(forward travel expands the scene from the vanishing point, a yaw shifts it sideways), which the
differences expose at the first layer. The last feature map is flattened rather than pooled, so
the MLP knows *where* in the image each motion cue was seen.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from lightning_wm.models.nn.encoders import cnn_stages, conv_stages
from lightning_wm.models.nn.layers import MLP


class MotionEstimator(nn.Module):
    """Frame stacks -> ego motion: [N, K, 3, H, W] in [0, 1] -> [N, 3] = [dx m, dy m, dyaw rad].

    The motion is that from frame K-2 to frame K-1, in the ego frame of frame K-2 (x forward,
    y left, yaw counter-clockwise), like `geometry.pose_deltas`. The network's raw outputs are in
    units of `motion_scale` (per component), so a unit error weighs alike in every component.
    """

    def __init__(self, frames: int, image_size: tuple[int, int], cnn_depth: int, units: int, mlp_layers: int,
                 motion_scale: list[float]) -> None:
        super().__init__()
        stages = cnn_stages(image_size)
        self.convs = conv_stages(3 * frames + 3 * (frames - 1), cnn_depth, stages)  # the frames, then the K-1 differences
        h, w = (s // 2**stages for s in image_size)
        self.mlp = MLP(cnn_depth * 2 ** (stages - 1) * h * w, 3, units, mlp_layers)
        self.register_buffer("motion_scale", torch.tensor(motion_scale, dtype=torch.float32), persistent=False)

    def normalized(self, stacks: torch.Tensor) -> torch.Tensor:
        """[N, K, 3, H, W] -> [N, 3] motion in units of `motion_scale` (what the loss compares)."""
        diffs = stacks[:, 1:] - stacks[:, :-1]  # [N, K-1, 3, H, W]
        x = torch.cat([rearrange(stacks - 0.5, "n k c h w -> n (k c) h w"),
                       rearrange(diffs, "n k c h w -> n (k c) h w")], dim=1)  # [N, 3K + 3(K-1), H, W]
        return self.mlp(self.convs(x).flatten(1))

    def forward(self, stacks: torch.Tensor) -> torch.Tensor:
        return self.normalized(stacks) * self.motion_scale
