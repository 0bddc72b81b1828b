"""The inverse-dynamics model: output alignment with pose_deltas, learning motion from pixels,
its config checks, and the rig/fps comparison that evaluation relies on."""

import copy

import pytest
import torch
import torch.nn.functional as F

from lightning_wm.geometry import pose_deltas
from lightning_wm.models.cameras import camera_dict, rig_mismatch
from lightning_wm.models.idm.augment import augmented, gaussian_blur, turned
from lightning_wm.models.idm.config import IDMConfig
from lightning_wm.models.idm.module import InverseDynamicsModel
from sharding.errors import ConfigError
from tests.helpers import forward_camera

CAMERA = forward_camera(32)


def make_idm(**config) -> InverseDynamicsModel:
    return InverseDynamicsModel(IDMConfig(size="tiny", **config), ["speed", "yaw_rate"], (32, 32),
                                rig=[camera_dict(CAMERA)], fps=10.0)


def panning_clips(batch: int, steps: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A smooth textured wall panning sideways: each clip turns at a constant rate of -2..2 px per
    step, which here stands for dyaw = 0.01 rad per pixel (the ego poses turn by that much)."""
    coarse = torch.rand(batch, 3, 8, 8 + steps, generator=generator)
    texture = F.interpolate(coarse, size=(32, 32 + 2 * 2 * steps), mode="bilinear", align_corners=False)
    rate = torch.randint(-2, 3, (batch,), generator=generator)
    frames = torch.stack([torch.stack([texture[b, :, :, 2 * steps + int(rate[b]) * t:][..., :32] for t in range(steps)])
                          for b in range(batch)])[:, :, None]  # [B, T, 1, 3, 32, 32]
    yaw = (0.01 * rate[:, None] * torch.arange(steps)).float()  # [B, T]
    ego = torch.eye(4).repeat(batch, steps, 1, 1)
    ego[..., 0, 0], ego[..., 0, 1], ego[..., 1, 0], ego[..., 1, 1] = yaw.cos(), -yaw.sin(), yaw.sin(), yaw.cos()
    return {"frames": frames, "ego": ego}


@pytest.mark.parametrize("frames", [2, 3])
def test_estimates_line_up_with_pose_deltas(frames):
    idm = make_idm(frames=frames)
    clip = torch.rand(2, 6, 1, 3, 32, 32)
    assert idm.estimate(clip).shape == (2, 6 - frames + 1, 3)
    batch = panning_clips(2, 6, torch.Generator().manual_seed(0))
    assert pose_deltas(batch["ego"])[:, frames - 2 :].shape == idm.estimate(batch["frames"]).shape
    with pytest.raises(ConfigError, match=f"needs at least {frames} frames"):
        idm.estimate(clip[:, : frames - 1])
    with pytest.raises(ConfigError, match="reads one camera"):
        idm.estimate(torch.rand(2, 6, 2, 3, 32, 32))


def test_learns_the_turn_direction_from_pixels():
    torch.manual_seed(0)
    idm = make_idm(lr=3e-3, warmup_steps=0, motion_scale=[0.5, 0.01, 0.01])
    optimizer = idm.configure_optimizers()["optimizer"]
    generator = torch.Generator().manual_seed(1)
    for _ in range(90):
        loss, _ = idm.losses(panning_clips(16, 3, generator))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    held_out = panning_clips(64, 3, torch.Generator().manual_seed(99))
    with torch.no_grad():
        estimate = idm.estimate(held_out["frames"])[..., 2]
    truth = pose_deltas(held_out["ego"])[..., 2]
    turning = truth.abs() > 1e-4
    accuracy = (torch.sign(estimate[turning]) == torch.sign(truth[turning])).float().mean().item()
    assert accuracy > 0.9, f"turn direction right in only {accuracy:.0%} of held-out steps"
    assert (estimate - truth).abs().mean() < 0.5 * truth.abs().mean()


@pytest.mark.parametrize("values, message", [
    ({"frames": 1}, "model.frames=1 must be an integer >= 2"),
    ({"motion_scale": [1.0, 1.0]}, "model.motion_scale=.* must be three numbers"),
    ({"size": "huge"}, "model.size='huge' is not a known IDM size"),
    ({"lr": 0.0}, "model.lr=0.0 must be > 0"),
])
def test_config_mistakes_name_the_key(values, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        IDMConfig(**values)


def test_rig_mismatch_names_what_differs():
    rig = camera_dict(CAMERA)
    assert rig_mismatch(rig, 10.0, CAMERA, 10.0) is None
    assert "trained at 10 fps, the data is at 12 fps" in rig_mismatch(rig, 10.0, CAMERA, 12.0)
    other = copy.deepcopy(CAMERA)
    other.name = "front_left"
    assert "trained on camera 'front'" in rig_mismatch(rig, 10.0, other, 10.0)
    zoomed = copy.deepcopy(CAMERA)
    zoomed.intrinsics = [[20.0, 0, 16], [0, 20.0, 16], [0, 0, 1]]
    assert "other intrinsics" in rig_mismatch(rig, 10.0, zoomed, 10.0)
    tilted = copy.deepcopy(CAMERA)
    tilted.ego_from_camera = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1.5], [0, 0, 0, 1]]
    assert "other ego_from_camera" in rig_mismatch(rig, 10.0, tilted, 10.0)


def test_mirrored_clips_turn_the_other_way_and_relit_clips_keep_their_motion():
    torch.manual_seed(3)
    frames, motion = torch.rand(32, 3, 1, 3, 32, 32), torch.randn(32, 2, 3)
    idm = make_idm(photometric=0.0, yaw_augment=0.0, blur=0.0)
    mirrored, mirrored_motion = augmented(frames, motion, idm.config, idm.camera, idm.image_size)
    flipped = [bool((mirrored[b] == frames[b].flip(-1)).all()) for b in range(32)]
    assert 4 < sum(flipped) < 28  # about half
    for b in range(32):
        sign = torch.tensor([1.0, -1.0, -1.0]) if flipped[b] else torch.ones(3)
        assert torch.equal(mirrored_motion[b], motion[b] * sign)
        assert flipped[b] or torch.equal(mirrored[b], frames[b])
    idm = make_idm(mirror=False, photometric=0.3, yaw_augment=0.0, blur=0.0)
    relit, relit_motion = augmented(frames, motion, idm.config, idm.camera, idm.image_size)
    assert torch.equal(relit_motion, motion) and not torch.equal(relit, frames)
    assert relit.min() >= 0 and relit.max() <= 1


def test_turned_clips_shift_the_way_the_added_yaw_says_and_carry_it_in_the_motion():
    # a vertical stripe in the middle of every frame; the camera turning left moves it right
    frames = torch.zeros(2, 3, 1, 3, 32, 32)
    frames[..., 14:18] = 1.0
    motion = torch.zeros(2, 2, 3)
    idm = make_idm()
    turned_frames, turned_motion = turned(frames, motion, torch.tensor([0.05, -0.05]), idm.camera, idm.image_size)
    column = torch.arange(32.0)
    centre = (turned_frames[:, :, 0, 0, 16] * column).sum(-1) / turned_frames[:, :, 0, 0, 16].sum(-1)  # [B, T] stripe centre
    assert torch.allclose(centre[:, 0], torch.tensor([15.5, 15.5]), atol=0.1)  # step 0: not turned yet
    assert (centre[0, 1:] > centre[0, :-1] + 0.5).all() and (centre[1, 1:] < centre[1, :-1] - 0.5).all()
    assert torch.allclose(turned_motion[..., 2], torch.tensor([[0.05, 0.05], [-0.05, -0.05]]))
    assert torch.equal(turned_motion[..., :2], motion[..., :2])


def test_blur_softens_each_clip_by_its_own_sigma():
    frames = torch.zeros(2, 1, 1, 3, 16, 16)
    frames[..., 8, 8] = 1.0
    blurred = gaussian_blur(frames, torch.tensor([0.0, 1.5]))
    assert torch.allclose(blurred[0], frames[0], atol=1e-6)  # sigma 0: unchanged
    assert blurred[1, ..., 8, 8].max() < 0.2 and torch.allclose(blurred[1].sum(), frames[1].sum(), atol=1e-4)
