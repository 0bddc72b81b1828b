"""The cross-view consistency metric: ground homographies between made cameras, and the
disagreement of views rendered from one textured ground (low) versus views that do not match."""

import math

import pytest
import torch

from lightning_wm.geometry import ground_homography
from lightning_wm.metrics.cross_view import overlap_grid, view_disagreement
from sharding.synthetic.camera import CameraConfig, RigConfig

SIZE = 48


def camera(yaw_deg: float, position: tuple[float, float, float], pitch_deg: float = 20.0, fov_deg: float = 80.0):
    """(intrinsics [3, 3], ego_from_camera [4, 4]) float64 of a camera at `position` (ego frame, metres)."""
    rig = RigConfig(cameras=[CameraConfig("c", yaw_deg, fov_deg, pitch_deg)], width=SIZE, height=SIZE)
    ego_from_camera = rig.ego_from_camera()[0]
    ego_from_camera[:3, 3] = position
    return torch.tensor(rig.intrinsics()[0]), torch.tensor(ego_from_camera)


def project(intrinsics: torch.Tensor, ego_from_camera: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
    """Pinhole projection of an ego-frame point [3] -> pixel (u, v)."""
    in_camera = torch.linalg.inv(ego_from_camera)[:3] @ torch.cat([point, torch.ones(1, dtype=point.dtype)])
    assert in_camera[2] > 0, "the test point must be in front of the camera"
    pixel = intrinsics @ in_camera
    return pixel[:2] / pixel[2]


def render_ground(intrinsics: torch.Tensor, ego_from_camera: torch.Tensor) -> torch.Tensor:
    """Views of one textured ground plane (sky grey): [V, 3, H, W] in [0, 1], float32."""
    axis = torch.arange(SIZE, dtype=torch.float64)
    v, u = torch.meshgrid(axis, axis, indexing="ij")
    pixels = torch.stack([u, v, torch.ones_like(u)], -1).reshape(-1, 3)
    frames = []
    for k, e in zip(intrinsics, ego_from_camera):
        rays = pixels @ (e[:3, :3] @ torch.linalg.inv(k)).T  # [N, 3] ego-frame directions
        scale = -e[2, 3] / rays[:, 2]
        x, y = e[0, 3] + scale * rays[:, 0], e[1, 3] + scale * rays[:, 1]
        texture = torch.stack([0.5 + 0.4 * torch.sin(x / 1.3), 0.5 + 0.4 * torch.cos(y / 0.9),
                               0.5 + 0.4 * torch.sin((x + y) / 2.1)], 0)  # smooth, so bilinear sampling is exact-ish
        ground = (rays[:, 2] < 0)[None]
        frames.append(torch.where(ground, texture, torch.full_like(texture, 0.7)).reshape(3, SIZE, SIZE))
    return torch.stack(frames).float()


# Two cameras of a nuScenes-like rig: different mount points and headings, overlapping views.
FRONT = camera(0.0, (1.7, 0.0, 1.5))
FRONT_LEFT = camera(55.0, (1.5, 0.5, 1.55))


def test_homography_maps_a_ground_point_between_two_cameras():
    h = ground_homography(FRONT[0], FRONT[1], FRONT_LEFT[0], FRONT_LEFT[1])
    for point in ([8.0, 3.0, 0.0], [5.0, 2.0, 0.0], [12.0, 6.5, 0.0]):
        point = torch.tensor(point, dtype=torch.float64)
        src, dst = project(*FRONT, point), project(*FRONT_LEFT, point)
        mapped = h @ torch.cat([src, torch.ones(1, dtype=src.dtype)])
        torch.testing.assert_close(mapped[:2] / mapped[2], dst, atol=1e-6, rtol=0)
    # A point above the ground (a car roof at 1.5 m) is *not* mapped to where it appears: the plane is z = 0.
    roof = torch.tensor([8.0, 3.0, 1.5], dtype=torch.float64)
    mapped = h @ torch.cat([project(*FRONT, roof), torch.ones(1, dtype=torch.float64)])
    assert (mapped[:2] / mapped[2] - project(*FRONT_LEFT, roof)).norm() > 1.0


def test_overlap_is_where_both_cameras_see_the_ground():
    k = torch.stack([FRONT[0], FRONT_LEFT[0]])[None]
    e = torch.stack([FRONT[1], FRONT_LEFT[1]])[None]
    _, valid = overlap_grid(k, e, 0, 1, SIZE, SIZE, max_distance_m=40.0)
    columns = valid[0].any(0).nonzero().flatten()
    rows = valid[0].any(1).nonzero().flatten()
    assert 0 < valid.sum() < SIZE * SIZE / 2
    assert columns.max() < SIZE / 2  # the left camera overlaps the left part of the front view
    horizon = SIZE / 2 - 0.5 - k[0, 0, 1, 1].item() * math.tan(math.radians(20.0))
    assert rows.min() > horizon  # sky pixels are never compared


def test_disagreement_is_low_for_views_of_one_ground_and_high_otherwise():
    cameras = [CameraConfig(name, yaw, 80.0, 20.0) for name, yaw in (("f", 0.0), ("l", 55.0), ("r", -55.0))]
    rig = RigConfig(width=SIZE, height=SIZE, cameras=cameras)
    k = torch.tensor(rig.intrinsics())
    e = torch.tensor(rig.ego_from_camera())
    e[:, :3, 3] += torch.tensor([[0.2, 0.0, 0.0], [0.0, 0.4, 0.05], [0.0, -0.4, -0.05]], dtype=torch.float64)
    frames = render_ground(k, e)[None, None].expand(2, 3, -1, -1, -1, -1)  # [B=2, T=3, V=3, 3, H, W]
    k, e = k[None].expand(2, -1, -1, -1), e[None].expand(2, -1, -1, -1)
    # Within 10 m a pixel covers less than the texture's period; farther, point-sampled views alias
    # (0.017 at 40 m), which is why the metric has a distance limit.
    consistent = view_disagreement(frames, k, e, max_distance_m=10.0)
    assert consistent.shape == (2, 3) and consistent.max() < 0.003
    swapped = frames[:, :, [0, 2, 1]]  # left and right images exchanged
    assert view_disagreement(swapped, k, e, max_distance_m=10.0).min() > 10 * consistent.max()
    shifted = frames.roll(3, dims=-1)  # every view 3 pixels off
    assert view_disagreement(shifted, k, e, max_distance_m=10.0).min() > 10 * consistent.max()


def test_disagreement_is_per_step_and_nan_for_rigs_without_overlap():
    k = torch.stack([FRONT[0], FRONT_LEFT[0]])
    e = torch.stack([FRONT[1], FRONT_LEFT[1]])
    frames = render_ground(k, e)[None, None].repeat(1, 2, 1, 1, 1, 1)  # [1, 2, 2, 3, H, W]
    frames[:, 1, 1] = frames[:, 1, 1].flip(-1)  # step 1 disagrees
    values = view_disagreement(frames, k[None], e[None])[0]
    assert values[1] > values[0] + 0.02
    # A rig looking forward and backward with narrow lenses: no overlap, NaN (validation leaves it out).
    back = camera(180.0, (-1.0, 0.0, 1.5), fov_deg=40.0)
    apart_k = torch.stack([camera(0.0, (1.7, 0.0, 1.5), fov_deg=40.0)[0], back[0]])
    apart_e = torch.stack([FRONT[1], back[1]])
    assert view_disagreement(frames, apart_k[None], apart_e[None]).isnan().all()


@pytest.mark.parametrize("max_distance_m", [10.0, 40.0])
def test_far_ground_is_left_out(max_distance_m):
    k = torch.stack([FRONT[0], FRONT_LEFT[0]])[None]
    e = torch.stack([FRONT[1], FRONT_LEFT[1]])[None]
    _, valid = overlap_grid(k, e, 0, 1, SIZE, SIZE, max_distance_m)
    v, u = valid[0].nonzero().double().unbind(-1)
    rays = torch.stack([u, v, torch.ones_like(u)], -1) @ (e[0, 0, :3, :3] @ torch.linalg.inv(k[0, 0])).T
    distance = (-e[0, 0, 2, 3] / rays[:, 2]) * rays[:, :2].norm(dim=-1)
    assert distance.max() <= max_distance_m + 1e-6
