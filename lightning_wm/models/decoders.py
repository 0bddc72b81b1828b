"""Transposed-CNN image decoder of the single-camera world model (mirror of `ImageEncoder`).

It maps the model feature (deter ++ flat stoch) to the mean image in [0, 1] space (not
clamped during training); the loss is DreamerV3's sum of squared errors per image.
"""

import torch
from einops import rearrange
from torch import nn

from lightning_wm.models.encoders import cnn_stages
from lightning_wm.models.layers import ChannelNorm


class ImageDecoder(nn.Module):
    """Features -> mean images: [N, F] -> [N, 3, H, W], centred on 0.5.

    Linear to a (depth * 2**(stages-1), H / 2**stages, W / 2**stages) map, then stride-2
    transposed convs (kernel 4) halving the channels each stage, the last one to RGB.
    """

    def __init__(self, feature_dim: int, depth: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        stages = cnn_stages(image_size)
        self.h, self.w = (s // 2**stages for s in image_size)
        self.channels = depth * 2 ** (stages - 1)
        self.project = nn.Linear(feature_dim, self.channels * self.h * self.w)
        layers: list[nn.Module] = []
        in_ch = self.channels
        for i in reversed(range(stages - 1)):
            out_ch = depth * 2**i
            layers += [nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False),
                       ChannelNorm(out_ch), nn.SiLU()]
            in_ch = out_ch
        layers.append(nn.ConvTranspose2d(in_ch, 3, 4, stride=2, padding=1))
        self.deconvs = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = rearrange(self.project(features), "n (c h w) -> n c h w", c=self.channels, h=self.h, w=self.w)
        return self.deconvs(x) + 0.5  # [N, 3, H, W]; the encoder's -0.5 shift, undone


def image_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum of squared errors per image, averaged over images: [N, 3, H, W] x2 -> scalar.

    DreamerV3 uses this unnormalised sum (the log-likelihood of a unit Gaussian), so the image
    term outweighs the KL terms at their 1-nat free-bits floor by design.
    """
    return (pred - target).square().flatten(1).sum(1).mean()
