"""Turn flow: where each pixel of a frame was before the camera turned with the ego vehicle.

When the ego vehicle turns by `yaw` about its vertical axis, every point far from the camera
(and, to within the camera's offset from that axis, every point) moves in the image by the
rotation homography K R K^-1, whatever its depth. `rotation_flow` gives that motion as a
backward flow field, so that a decoder warping an earlier frame only has to learn what the
turn does not explain (forward motion, other agents, new content), and imagined video turns
the way the imagined ego motion does. The IDM uses it the other way round, to show its
training clips turning at rates the data does not have. Ego frame: x forward, y left, z up.
"""

from __future__ import annotations

import torch


def pixel_grid(size: tuple[int, int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Homogeneous pixel centres [H*W, 3] as (u, v, 1), pixel (i, j) at u = j, v = i."""
    h, w = size
    v, u = torch.meshgrid(torch.arange(h, dtype=dtype, device=device), torch.arange(w, dtype=dtype, device=device),
                          indexing="ij")
    return torch.stack([u.flatten(), v.flatten(), torch.ones(h * w, dtype=dtype, device=device)], -1)


def rotation_flow(intrinsics: torch.Tensor, ego_from_camera: torch.Tensor, yaw: torch.Tensor,
                  size: tuple[int, int]) -> torch.Tensor:
    """Backward flow [N, 2, H, W] in pixels: after the ego turned by yaw [N] rad (+: left),
    pixel x of the new frame shows what was at x + flow(x) in the old one.

    intrinsics [3, 3] and ego_from_camera [4, 4] of one camera, or [N, 3, 3] and [N, 4, 4] (one
    camera per sample, e.g. every view of a rig), at the image size `size`.
    Pixels whose ray points behind the old camera (turns near 90 degrees) get zero flow.
    """
    dtype, device = torch.float32, yaw.device
    k = intrinsics.to(device, dtype)
    rotation = ego_from_camera.to(device, dtype)[..., :3, :3]  # camera -> ego directions
    pixels = pixel_grid(size, dtype, device)  # [HW, 3]
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


def commanded_turn(actions: torch.Tensor, action_names: list[str], fps: float | None) -> torch.Tensor | None:
    """Heading change of each step the actions command, [B, H] rad: the `yaw_rate` action
    (rad/s, the vehicle's measured yaw rate) over one step of 1/fps s. actions [B, H, A];
    None when the actions have no yaw_rate or the frame rate is unknown."""
    if "yaw_rate" not in action_names or not fps:
        return None
    return actions[..., action_names.index("yaw_rate")] / fps


def pose_heading(ego: torch.Tensor) -> torch.Tensor:
    """Yaw of each pose [..., 4, 4] (rotation about z) -> [...] rad."""
    return torch.atan2(ego[..., 1, 0], ego[..., 0, 0])
