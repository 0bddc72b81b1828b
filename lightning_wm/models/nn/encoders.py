"""CNN image encoder of the single-camera world model (DreamerV3's image encoder).

Images are float in [0, 1] on input; the encoder shifts them to [-0.5, 0.5]. Stride-2 convs
halve the resolution until the smaller side is 4 pixels (4 stages at 64x64, 3 at 32x32).
"""

import math

import torch
from torch import nn

from lightning_wm.models.nn.layers import ChannelNorm
from sharding.errors import ConfigError

MIN_RES = 4  # DreamerV3 stops downsampling at 4x4


def cnn_stages(image_size: tuple[int, int]) -> int:
    """Number of stride-2 stages that bring (H, W) down to a smaller side of `MIN_RES`.

    The smaller side must be `MIN_RES * 2**k` (k >= 1) and the other side divisible by `2**k`,
    so the decoder can mirror the encoder exactly.
    """
    h, w = image_size
    k = math.log2(min(h, w) / MIN_RES) if min(h, w) >= MIN_RES else -1.0
    if k < 1 or not k.is_integer() or h % 2 ** int(k) or w % 2 ** int(k):
        raise ConfigError(
            f"image_size={tuple(image_size)} is not supported by the CNN: the smaller side must be "
            f"{MIN_RES} * 2**k (8, 16, 32, 64, 128, ...) and the other a multiple of 2**k; "
            "resize the frames in the data config (e.g. 64x64)")
    return int(k)


def conv_stages(in_channels: int, depth: int, stages: int) -> nn.Sequential:
    """DreamerV3's CNN trunk: per stage i, Conv(kernel 4, stride 2, `depth * 2**i` channels) ->
    channel LayerNorm -> SiLU, so each stage halves the resolution. [N, in, H, W] -> [N, depth *
    2**(stages-1), H / 2**stages, W / 2**stages]. No conv bias: the norm right after has one."""
    layers: list[nn.Module] = []
    for i in range(stages):
        out_channels = depth * 2**i
        layers += [nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1, bias=False),
                   ChannelNorm(out_channels), nn.SiLU()]
        in_channels = out_channels
    return nn.Sequential(*layers)


class ImageEncoder(nn.Module):
    """Frames -> embeddings: [N, 3, H, W] in [0, 1] -> [N, E].

    Stage i: Conv(kernel 4, stride 2) with `depth * 2**i` channels -> channel LayerNorm -> SiLU.
    E = depth * 2**(stages-1) * (H / 2**stages) * (W / 2**stages), e.g. 4096 for depth 32 at 64x64.
    """

    def __init__(self, depth: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        stages = cnn_stages(image_size)
        self.convs = conv_stages(3, depth, stages)
        h, w = (s // 2**stages for s in image_size)
        channels = depth * 2 ** (stages - 1)
        self.out_shape = (channels, h, w)  # (C, h, w) of the last feature map, mirrored by the decoder
        self.embed_dim = channels * h * w

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.convs(images - 0.5)  # [N, C, h, w]
        return x.flatten(1)  # [N, E]

    def forward_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Embeddings plus every stage's output: [N, 3, H, W] -> ([N, E], maps).

        maps[i] is [N, depth * 2**i, H / 2**(i+1), W / 2**(i+1)], the skip features a
        reference-conditioned decoder (`WarpDecoder`) reads at the matching resolution.
        """
        x, maps = images - 0.5, []
        for stage in range(0, len(self.convs), 3):  # conv, norm, SiLU per stage
            x = self.convs[stage + 2](self.convs[stage + 1](self.convs[stage](x)))
            maps.append(x)
        return x.flatten(1), maps
