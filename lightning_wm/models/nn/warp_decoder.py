"""Reference-conditioned image decoder: predict a frame by warping the last observed one.

A plain decoder must paint every pixel from the latent alone, and at 64x64 after a short
budget that gives a blurry mean scene, worse than simply repeating the last frame. Most of a
driving frame is the previous frame moved by the ego motion, so this decoder (in the spirit
of flow-based video predictors such as DVF and the context conditioning of GAIA-1's video
decoder) takes a *reference* frame and outputs, per pixel,

    pred = mask * warp(reference, flow) + (1 - mask) * generated

with `flow` (pixels), `mask` in (0, 1) and `generated` all decoded from the latent feature,
U-Net skip features of the reference (the image encoder's stage outputs) and the reference's
age (steps between the reference and the predicted frame). The latent says how the scene
moved; the skips say where things were. At initialisation flow is zero and mask ~0.88, so
the prediction starts close to copy-last-frame. Images are float in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from lightning_wm.models.nn.encoders import cnn_stages
from lightning_wm.models.nn.layers import ChannelNorm

HEAD_CHANNELS = 2 + 4 * 1 + 4 * 3  # flow at half resolution; mask and RGB per full-resolution sub-pixel
AGE_FEATURES = 2  # [age / 8, log1p(age)]: smooth, so ages beyond training still make sense


def age_features(age: torch.Tensor) -> torch.Tensor:
    """Steps since the reference [N] -> [N, AGE_FEATURES]."""
    age = age.float()
    return torch.stack([age / 8, torch.log1p(age)], -1)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: out(x) = image(x + flow(x)), bilinear, border padding.

    image [N, C, H, W]; flow [N, 2, H, W] in pixels (x right, y down) -> [N, C, H, W].
    """
    n, _, h, w = image.shape
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=image.device, dtype=flow.dtype)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=image.device, dtype=flow.dtype)
    base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)  # [H, W, 2] as (x, y)
    scale = torch.tensor([2 / w, 2 / h], device=image.device, dtype=flow.dtype)
    grid = base + rearrange(flow, "n c h w -> n h w c") * scale
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=False)


class WarpDecoder(nn.Module):
    """(features [N, F], reference [N, 3, H, W], reference maps, age [N]) -> frames [N, 3, H, W].

    `reference_maps` are `ImageEncoder.forward_maps(reference)[1]`: stage i is
    [N, depth * 2**i, H / 2**(i+1), W / 2**(i+1)]. The trunk mirrors the encoder: a linear
    layer to the coarsest map, then one stride-2 transposed conv per stage up to half
    resolution, each reading the trunk plus (added, not concatenated: same cost as a plain
    decoder) the reference's map of the same resolution. The head runs at half resolution (a
    full-resolution conv costed 3x the rest of the decoder on CPU): flow, which is smooth, is
    upsampled bilinearly; mask and generated colour come out at full resolution through a
    pixel shuffle (4 sub-pixels per half-resolution cell), so new content is not blurred.
    """

    def __init__(self, feature_dim: int, depth: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        stages = cnn_stages(image_size)
        self.h, self.w = (s // 2**stages for s in image_size)
        self.channels = depth * 2 ** (stages - 1)
        self.project = nn.Linear(feature_dim + AGE_FEATURES, self.channels * self.h * self.w)
        self.ups = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(depth * 2**i, depth * 2 ** (i - 1), 4, stride=2, padding=1, bias=False),
                          ChannelNorm(depth * 2 ** (i - 1)), nn.SiLU())
            for i in reversed(range(1, stages)))
        # Half resolution: trunk + reference skip -> flow (2), then mask logit (1) and generated
        # RGB (3) for each of the 2x2 full-resolution pixels of a cell (4 + 12).
        self.head = nn.Conv2d(depth, HEAD_CHANNELS, 3, padding=1)
        with torch.no_grad():
            self.head.weight[:2].zero_()  # flow starts at zero ...
            self.head.bias.zero_()
            self.head.bias[2:6] = 2.0  # ... and the mask near 1: the first predictions copy the reference

    def forward(self, features: torch.Tensor, reference: torch.Tensor, reference_maps: list[torch.Tensor],
                age: torch.Tensor, base_flow: torch.Tensor | None = None) -> torch.Tensor:
        """base_flow [N, 2, H, W] (pixels), if given, is added to the predicted flow: motion the
        caller knows from geometry (the ego's turn, `geometry.rotation_flow`)."""
        x = self.project(torch.cat([features, age_features(age).to(features.dtype)], -1))
        x = rearrange(x, "n (c h w) -> n c h w", c=self.channels, h=self.h, w=self.w)
        skips = reference_maps[::-1]  # coarsest first
        for up, skip in zip(self.ups, skips):
            x = up(x + skip.to(x.dtype))  # [N, C_i / 2, 2h, 2w]
        out = self.head(x + skips[-1].to(x.dtype))  # [N, 18, H/2, W/2]
        flow, mask, generated = out.split([2, 4, 12], 1)
        flow = 2 * F.interpolate(flow, size=reference.shape[-2:], mode="bilinear", align_corners=False)  # in pixels
        if base_flow is not None:
            flow = flow + base_flow.to(flow.dtype)
        mask = torch.sigmoid(F.pixel_shuffle(mask, 2))  # [N, 1, H, W]
        generated = F.pixel_shuffle(generated, 2)  # [N, 3, H, W]
        return mask * warp(reference.to(flow.dtype), flow) + (1 - mask) * (generated + 0.5)  # [N, 3, H, W]


def image_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum of squared errors per image, averaged over images: [N, 3, H, W] x2 -> scalar.

    DreamerV3 uses this unnormalised sum (the log-likelihood of a unit Gaussian), so the image
    term outweighs the KL terms at their 1-nat free-bits floor by design.
    """
    return (pred - target).square().flatten(1).sum(1).mean()
