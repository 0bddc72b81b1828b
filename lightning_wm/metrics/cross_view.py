"""Cross-view consistency: where two cameras see the same ground, their frames must agree.

For each ordered pair of views (i, j), a pixel of view i that sees the ground plane (z = 0 in
the ego frame; camera heights come from `ego_from_camera`) is mapped into view j with the
ground homography of their calibrations, H_ij = G_j G_i^-1, where G maps ground points
(x, y, 1) to pixels (Hartley & Zisserman, ch. 13). Where it lands inside view j, the two
frames are compared: the disagreement is the mean absolute difference (RGB in [0, 1]) over
the overlap. Adjacent cameras are the pairs whose overlap is not empty, found from the
calibration, so any rig works. Ground-truth frames give the floor (objects above the ground,
JPEG and resampling make it > 0); predictions are scored against that floor.
Frames are float in [0, 1], `[B, T, V, 3, H, W]`; ego x forward, y left, z up; camera OpenCV.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from lightning_wm.geometry import ground_homography, ground_to_pixel, pixel_grid

MIN_OVERLAP_PIXELS = 16  # a pair that shares fewer ground pixels is not adjacent (too little to compare)


def overlap_grid(intrinsics: torch.Tensor, ego_from_camera: torch.Tensor, src: int, dst: int, height: int, width: int,
                 max_distance_m: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each ground pixel of view `src` lands in view `dst`.

    intrinsics [B, V, 3, 3], ego_from_camera [B, V, 4, 4] -> (grid [B, H, W, 2] in grid_sample's
    normalised coordinates of view dst, valid [B, H, W] bool). A pixel is valid when its ray hits
    the ground in front of src within `max_distance_m` of the camera, and that point is in front
    of dst and inside its image.
    """
    pixels = pixel_grid(height, width, dtype=torch.float64, device=intrinsics.device)  # [N, 3]
    to_ground = torch.linalg.inv(ground_to_pixel(intrinsics[:, src], ego_from_camera[:, src]))  # [B, 3, 3]
    ground = pixels @ to_ground.transpose(-1, -2)  # [B, N, 3] homogeneous (x, y, w)
    point = ground[..., :2] / ground[..., 2:]  # [B, N, 2] metres on the ground plane
    centre_src = ego_from_camera[:, src, :2, 3].double()[:, None]  # [B, 1, 2]
    # In front of src: the ray direction R K^-1 p points down (the plane is below the camera).
    ray_from_pixel = ego_from_camera[:, src, :3, :3].double() @ torch.linalg.inv(intrinsics[:, src].double())  # R K^-1
    rays = pixels @ ray_from_pixel.transpose(-1, -2)
    valid = (rays[..., 2] < -1e-6) & ((point - centre_src).norm(dim=-1) <= max_distance_m)
    homography = ground_homography(intrinsics[:, src], ego_from_camera[:, src],
                                   intrinsics[:, dst], ego_from_camera[:, dst])
    mapped = pixels @ homography.transpose(-1, -2)  # [B, N, 3]
    # Depth in dst of the ground point, from the point itself (the homography's scale has no sign guarantee).
    point_h = torch.cat([point, torch.zeros_like(point[..., :1]), torch.ones_like(point[..., :1])], -1)  # [B, N, 4]
    depth_dst = (point_h @ torch.linalg.inv(ego_from_camera[:, dst].double()).transpose(-1, -2))[..., 2]
    uv = mapped[..., :2] / mapped[..., 2:]
    valid &= (depth_dst > 1e-3) & (uv[..., 0] > -0.5) & (uv[..., 0] < width - 0.5) \
        & (uv[..., 1] > -0.5) & (uv[..., 1] < height - 0.5)
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=uv.dtype, device=uv.device)
    grid = (uv + 0.5) * scale - 1  # align_corners=False normalisation
    grid = torch.where(valid[..., None], grid, torch.zeros_like(grid))
    return grid.float().reshape(-1, height, width, 2), valid.reshape(-1, height, width)


def view_disagreement(frames: torch.Tensor, intrinsics: torch.Tensor, ego_from_camera: torch.Tensor,
                      max_distance_m: float = 40.0) -> torch.Tensor:
    """Mean abs difference of overlapping ground pixels between views, per window and step.

    frames [B, T, V, 3, H, W] in [0, 1], intrinsics [B, V, 3, 3], ego_from_camera [B, V, 4, 4]
    -> [B, T]: the average over ordered adjacent pairs (i, j) of mean |frame_i(p) - frame_j(H_ij p)|
    over the overlap. NaN for a window whose rig has no overlapping pair.
    """
    batch, steps, views, _, height, width = frames.shape
    total = frames.new_zeros(batch, steps)
    pairs = frames.new_zeros(batch)
    for src in range(views):
        for dst in range(views):
            if src == dst:
                continue
            grid, valid = overlap_grid(intrinsics, ego_from_camera, src, dst, height, width, max_distance_m)
            count = valid.flatten(1).sum(1)  # [B]
            adjacent = count >= MIN_OVERLAP_PIXELS
            if not bool(adjacent.any()):
                continue
            sampled = F.grid_sample(rearrange(frames[:, :, dst].float(), "b t c h w -> b (t c) h w"), grid,
                                    mode="bilinear", padding_mode="border", align_corners=False)
            sampled = rearrange(sampled, "b (t c) h w -> b t c h w", t=steps)
            diff = (frames[:, :, src].float() - sampled).abs().mean(2)  # [B, T, H, W]
            per_window = (diff * valid[:, None]).flatten(2).sum(-1) / count.clamp(min=1)[:, None]
            total += per_window * adjacent[:, None]
            pairs += adjacent
    return torch.where(pairs[:, None] > 0, total / pairs.clamp(min=1)[:, None], torch.full_like(total, float("nan")))
