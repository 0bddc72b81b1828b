"""Building blocks shared by the world-model networks.

DreamerV3 normalises every hidden layer with LayerNorm followed by SiLU, and applies
LayerNorm over channels (per pixel) in its CNNs; both are defined once here.
"""

import torch
from torch import nn


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of each pixel: [N, C, H, W] -> [N, C, H, W]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [N, C, H, W] -> [N, H, W, C] is a free view when x is channels_last.
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def dense(in_dim: int, out_dim: int) -> nn.Sequential:
    """Linear -> LayerNorm -> SiLU, DreamerV3's hidden layer (no bias: the norm has one)."""
    return nn.Sequential(nn.Linear(in_dim, out_dim, bias=False), nn.LayerNorm(out_dim), nn.SiLU())


class MLP(nn.Sequential):
    """`layers` hidden dense layers of `units`, then a linear output: [..., in] -> [..., out]."""

    def __init__(self, in_dim: int, out_dim: int, units: int, layers: int) -> None:
        hidden = [dense(in_dim if i == 0 else units, units) for i in range(layers)]
        super().__init__(*hidden, nn.Linear(units if layers else in_dim, out_dim))


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) * log(1 + |x|): DreamerV3's squashing of vector inputs of unknown scale."""
    return torch.sign(x) * torch.log1p(x.abs())

