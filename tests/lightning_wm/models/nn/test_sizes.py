"""Size presets, CNN shapes per image size, and DreamerV3 size S's parameter count."""

import pytest
import torch

from lightning_wm.models.nn.encoders import ImageEncoder, cnn_stages
from lightning_wm.models.nn.sizes import SIZES, get_size
from lightning_wm.models.nn.warp_decoder import WarpDecoder, image_loss
from lightning_wm.models.single_cam.module import SingleCamWorldModel
from sharding.errors import ConfigError


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_size_s_matches_dreamerv3_size_s():
    size = get_size("s")
    assert (size.cnn_depth, size.deter, size.stoch, size.classes, size.units) == (32, 512, 32, 32, 512)
    model = SingleCamWorldModel({"size": "s"}, ["speed", "yaw_rate"], (64, 64))
    # Measured: encoder 0.69M, RSSM 5.78M, decoder 7.00M, ego + hazard heads 2.10M: 15.57M, DreamerV3 S's
    # size. Without a camera rig there is no BEV head (it projects the grid into the cameras); with
    # one it adds 0.64M, which DreamerV3 does not have.
    assert model.bev_head is None and 14_000_000 < _count(model) < 17_000_000
    assert _count(model.encoder) == pytest.approx(0.69e6, rel=0.01)
    assert model.encoder.embed_dim == 4096  # 256 channels x 4 x 4, as in DreamerV3


def test_presets_grow_and_unknown_name_lists_choices():
    counts = [_count(SingleCamWorldModel({"size": name}, ["speed"], (32, 32))) for name in ("tiny", "xs", "s")]
    assert counts == sorted(counts)
    assert set(SIZES) == {"tiny", "xs", "s", "m"}
    with pytest.raises(ConfigError, match="model.size='huge'.*'m', 's', 'tiny', 'xs'"):
        get_size("huge")


@pytest.mark.parametrize(("image_size", "stages", "embed"), [
    ((64, 64), 4, 32 * 4 * 4),  # depth 4: channels 4, 8, 16, 32, then 4x4
    ((32, 32), 3, 16 * 4 * 4),
    ((32, 64), 3, 16 * 4 * 8),
])
def test_encoder_decoder_shapes(image_size, stages, embed):
    assert cnn_stages(image_size) == stages
    encoder = ImageEncoder(depth=4, image_size=image_size)
    images = torch.rand(5, 3, *image_size)
    assert encoder(images).shape == (5, embed) and encoder.embed_dim == embed
    decoder = WarpDecoder(feature_dim=10, depth=4, image_size=image_size)
    _, maps = encoder.forward_maps(images)
    out = decoder(torch.randn(5, 10), images, maps, torch.ones(5, dtype=torch.long))
    assert out.shape == (5, 3, *image_size)
    assert image_loss(out, out).item() == 0.0


def test_image_loss_is_a_sum_per_image():
    pred = torch.zeros(2, 3, 8, 8)
    assert image_loss(pred, torch.full_like(pred, 0.5)).item() == pytest.approx(0.25 * 3 * 64)


@pytest.mark.parametrize("image_size", [(50, 50), (4, 4), (64, 48), (2, 2)])
def test_unsupported_image_size_raises_config_error(image_size):
    with pytest.raises(ConfigError, match="image_size"):
        cnn_stages(image_size)
