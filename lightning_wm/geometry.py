"""Geometry every part shares: poses, per-step ego motion, headings, pixel grids, homographies.

Pure torch and a leaf: it imports nothing of the project, so models, metrics, simulation and
callbacks can all use one definition. Frames: ego x forward, y left, z up (metres, yaw
counter-clockwise in radians); camera OpenCV (x right, y down, z forward); pixel centres at
integer coordinates (the image spans [-0.5, width - 0.5]), as in the synthetic rig and OpenCV.
"""

from __future__ import annotations

import torch

# ---- poses and motion ------------------------------------------------------------------


def pose_heading(ego: torch.Tensor) -> torch.Tensor:
    """Yaw of each pose [..., 4, 4] (rotation about z) -> [...] rad."""
    return torch.atan2(ego[..., 1, 0], ego[..., 0, 0])


def pose_deltas(ego: torch.Tensor) -> torch.Tensor:
    """Per-step motion from poses: ego [B, T, 4, 4] -> [B, T-1, 3] = [dx, dy, dyaw].

    Row t is the pose of step t+1 in the ego frame of step t, `inv(P_t) @ P_{t+1}`, as
    (x, y) translation and the yaw angle atan2(R[1,0], R[0,0]). Any common reference frame
    works (`batch["ego"]` uses the window's first step). There is no row for the last step.
    This is what the ego-motion head and the IDM predict.
    """
    rel = torch.linalg.solve(ego[:, :-1], ego[:, 1:])  # inv(P_t) @ P_{t+1}: [B, T-1, 4, 4]
    dyaw = torch.atan2(rel[..., 1, 0], rel[..., 0, 0])
    return torch.stack([rel[..., 0, 3], rel[..., 1, 3], dyaw], -1)


def integrate(deltas: torch.Tensor) -> torch.Tensor:
    """Chain per-step motions into poses in the start frame: [B, H, 3] -> [B, H, 3] = [x, y, yaw].

    Each row of `deltas` is [dx, dy, dyaw] in the ego frame of the step before (what
    `pose_deltas`, the ego-motion head and the IDM give). Row h of the result is the pose after
    h+1 steps; the start pose (0, 0, 0) is not included. The common currency of ADE/FDE,
    robustness checks and closed-loop scoring.
    """
    yaw_after = torch.cumsum(deltas[..., 2], dim=-1)  # [B, H]
    yaw_before = yaw_after - deltas[..., 2]  # heading in which each step's (dx, dy) is expressed
    cos, sin = torch.cos(yaw_before), torch.sin(yaw_before)
    step_x = cos * deltas[..., 0] - sin * deltas[..., 1]
    step_y = sin * deltas[..., 0] + cos * deltas[..., 1]
    return torch.stack([step_x.cumsum(-1), step_y.cumsum(-1), yaw_after], -1)


# ---- pixels ------------------------------------------------------------------------------


def pixel_grid(height: int, width: int, cells: tuple[int, int] | None = None, dtype: torch.dtype = torch.float32,
               device: torch.device | None = None) -> torch.Tensor:
    """Homogeneous pixel coordinates (u, v, 1) of a grid over an image: -> [N, 3], row-major.

    cells=None: every pixel centre, pixel (i, j) at u = j, v = i (N = height * width).
    cells=(h, w): the centres of an h x w grid of cells over the image, cell (i, j) at
    u = (j + 0.5) * width / w - 0.5 (N = h * w), matching `[C, h, w] -> [h * w, C]` flattening.
    """
    rows, cols = cells if cells is not None else (height, width)
    v = (torch.arange(rows, dtype=dtype, device=device) + 0.5) * height / rows - 0.5
    u = (torch.arange(cols, dtype=dtype, device=device) + 0.5) * width / cols - 0.5
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu, vv, torch.ones_like(uu)], -1).reshape(-1, 3)


# ---- homographies ------------------------------------------------------------------------


def rotation_flow(intrinsics: torch.Tensor, ego_from_camera: torch.Tensor, yaw: torch.Tensor,
                  size: tuple[int, int]) -> torch.Tensor:
    """Backward flow [N, 2, H, W] in pixels: after the ego turned by yaw [N] rad (+: left),
    pixel x of the new frame shows what was at x + flow(x) in the old one.

    When the ego turns about its vertical axis, every point far from the camera (and, to within
    the camera's offset from that axis, every point) moves by the rotation homography K R K^-1,
    whatever its depth. The warp decoder starts from this flow (the turn prior) and the IDM uses
    it to show its training clips turning at rates the data does not have.
    intrinsics [3, 3] and ego_from_camera [4, 4] of one camera, or [N, 3, 3] and [N, 4, 4] (one
    camera per sample, e.g. every view of a rig), at the image size `size`.
    Pixels whose ray points behind the old camera (turns near 90 degrees) get zero flow.
    """
    dtype, device = torch.float32, yaw.device
    k = intrinsics.to(device, dtype)
    rotation = ego_from_camera.to(device, dtype)[..., :3, :3]  # camera -> ego directions
    pixels = pixel_grid(*size, dtype=dtype, device=device)  # [HW, 3]
    # ego-frame directions of the new camera's rays: [HW, 3], or [N, HW, 3] for per-sample cameras
    rays = pixels @ (torch.linalg.inv(k).transpose(-1, -2) @ rotation.transpose(-1, -2))
    c, s = torch.cos(yaw.to(dtype)), torch.sin(yaw.to(dtype))
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    turn = torch.stack([torch.stack(row, -1) for row in ([c, -s, zero], [s, c, zero], [zero, zero, one])], -2)
    # old camera pixel of each ray: K R^T R_z(yaw) d, one [3, 3] matrix per sample
    project = k @ rotation.transpose(-1, -2) @ turn  # [N, 3, 3]
    old = rays @ project.transpose(-1, -2)  # [N, HW, 3]
    depth = old[..., 2:]
    flow = old[..., :2] / depth.clamp(min=1e-6) - pixels[:, :2]
    flow = torch.where(depth > 1e-6, flow, torch.zeros_like(flow))
    h, w = size
    return flow.transpose(1, 2).reshape(-1, 2, h, w)


def ground_to_pixel(intrinsics: torch.Tensor, ego_from_camera: torch.Tensor) -> torch.Tensor:
    """G: ground points (x, y, 1) of the ego frame's z = 0 plane -> homogeneous pixels.

    intrinsics [..., 3, 3], ego_from_camera [..., 4, 4] -> [..., 3, 3] = K [R^T | -R^T c] restricted
    to the columns of x, y and 1 (z = 0 drops the third). Float64: these are inverted.
    """
    camera_from_ego = torch.linalg.inv(ego_from_camera.double())
    projection = intrinsics.double() @ camera_from_ego[..., :3, :]  # [..., 3, 4]
    return projection[..., [0, 1, 3]]


def ground_homography(src_intrinsics: torch.Tensor, src_ego_from_camera: torch.Tensor,
                      dst_intrinsics: torch.Tensor, dst_ego_from_camera: torch.Tensor) -> torch.Tensor:
    """H [..., 3, 3] mapping pixels of the src view to pixels of the dst view, for ground points
    (H = G_dst G_src^-1; Hartley & Zisserman, ch. 13)."""
    return ground_to_pixel(dst_intrinsics, dst_ego_from_camera) @ torch.linalg.inv(
        ground_to_pixel(src_intrinsics, src_ego_from_camera))
