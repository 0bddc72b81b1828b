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

from lightning_wm.geometry import pixel_grid
from lightning_wm.models.nn.layers import MLP

PLUCKER_DIM = 6  # direction (3) ++ moment (3)
VIEW_GRID = 3  # the per-view embedding reads a 3x3 grid of rays at any resolution


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
        self.register_buffer("token_pixels", pixel_grid(height, width, cells=token_grid), persistent=False)
        self.register_buffer("view_pixels", pixel_grid(height, width, cells=(VIEW_GRID, VIEW_GRID)), persistent=False)
        self.token_mlp = MLP(PLUCKER_DIM, token_dim, units, 1)
        self.view_mlp = MLP(PLUCKER_DIM * VIEW_GRID**2, view_dim, units, 1)

    def forward(self, intrinsics: torch.Tensor, ego_from_camera: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.token_mlp(plucker_rays(intrinsics, ego_from_camera, self.token_pixels))  # [B, V, h*w, Dt]
        views = self.view_mlp(plucker_rays(intrinsics, ego_from_camera, self.view_pixels).flatten(-2))  # [B, V, Dv]
        return tokens, views
