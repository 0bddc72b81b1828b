"""Camera embeddings from calibration: where each view looks, so any rig works without new weights.

A view is described by the rays of a coarse grid of its pixels in the ego frame, as Plücker
coordinates (direction d, moment o x d; Plücker 1865, used as a camera encoding by e.g. the
Light Field Networks and CAT3D): they depend only on the intrinsics and `ego_from_camera`,
not on the camera's name or its position in the batch, so a new rig (6 nuScenes cameras,
5 Waymo ones) reuses the same MLPs and the model stays equivariant to the order of the views.
Frames: ego x forward, y left, z up (metres); camera OpenCV (x right, y down, z forward).
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_wm.models.layers import MLP

PLUCKER_DIM = 6  # direction (3) ++ moment (3)
VIEW_GRID = 3  # the per-view embedding reads a 3x3 grid of rays at any resolution


def grid_pixels(grid_h: int, grid_w: int, height: int, width: int) -> torch.Tensor:
    """Homogeneous pixel centres of a grid_h x grid_w cell grid over an image: -> [grid_h * grid_w, 3].

    Pixel centres sit at integer coordinates (the image spans [-0.5, width - 0.5]), as in the
    synthetic rig and OpenCV; cell (i, j) is centred at ((j + 0.5) * width / grid_w - 0.5, ...).
    Row-major over (i, j), matching `[C, h, w] -> [h * w, C]` token flattening.
    """
    v = (torch.arange(grid_h, dtype=torch.float32) + 0.5) * height / grid_h - 0.5
    u = (torch.arange(grid_w, dtype=torch.float32) + 0.5) * width / grid_w - 0.5
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu, vv, torch.ones_like(uu)], -1).reshape(-1, 3)


def plucker_rays(intrinsics: torch.Tensor, ego_from_camera: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Plücker coordinates of pixel rays in the ego frame.

    intrinsics [..., 3, 3], ego_from_camera [..., 4, 4], pixels [N, 3] homogeneous (u, v, 1)
    -> [..., N, 6]: unit direction d and moment o x d (metres), o the camera centre.
    """
    rays_cam = torch.linalg.solve(intrinsics.float(), pixels.to(intrinsics.device).T)  # [..., 3, N] = K^-1 p
    rotation, origin = ego_from_camera[..., :3, :3].float(), ego_from_camera[..., :3, 3].float()
    direction = (rotation @ rays_cam).transpose(-1, -2)  # [..., N, 3]
    direction = direction / direction.norm(dim=-1, keepdim=True)
    moment = torch.cross(origin.unsqueeze(-2).expand_as(direction), direction, dim=-1)
    return torch.cat([direction, moment], -1)


class CameraEmbedding(nn.Module):
    """Calibration -> per-token and per-view embeddings.

    forward(intrinsics [B, V, 3, 3], ego_from_camera [B, V, 4, 4]) ->
      tokens [B, V, h * w, token_dim]: one per cell of the encoder's last feature map (h, w),
              from that cell's central ray, so attention can align overlapping image regions;
      views  [B, V, view_dim]: from a VIEW_GRID x VIEW_GRID grid of rays over the whole image,
              what the dynamics and the decoder of that view are told about its camera.
    Pixel grids are in the frames' resolution `image_size` (the intrinsics' resolution).
    """

    def __init__(self, image_size: tuple[int, int], token_grid: tuple[int, int], token_dim: int, view_dim: int,
                 units: int) -> None:
        super().__init__()
        height, width = image_size
        self.register_buffer("token_pixels", grid_pixels(*token_grid, height, width), persistent=False)
        self.register_buffer("view_pixels", grid_pixels(VIEW_GRID, VIEW_GRID, height, width), persistent=False)
        self.token_mlp = MLP(PLUCKER_DIM, token_dim, units, 1)
        self.view_mlp = MLP(PLUCKER_DIM * VIEW_GRID**2, view_dim, units, 1)

    def forward(self, intrinsics: torch.Tensor, ego_from_camera: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.token_mlp(plucker_rays(intrinsics, ego_from_camera, self.token_pixels))  # [B, V, h*w, Dt]
        views = self.view_mlp(plucker_rays(intrinsics, ego_from_camera, self.view_pixels).flatten(-2))  # [B, V, Dv]
        return tokens, views
