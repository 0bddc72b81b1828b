"""BEV occupancy quality: per-class IoU of predicted against true occupancy, where the cameras look.

Only cells the cameras can show count: a cell within `max_range_m` of the ego whose centre
projects inside some camera's image horizontally (`fov_mask`); a front camera cannot show what
is behind the car, so scoring it there would measure guessing, not seeing. Intersections and
unions are sums reduced across DDP ranks (torchmetrics), so two ranks give the IoU of all data.
Grids `[N, C, H, W]` in the ego frame, channels named by the caller (vehicle, pedestrian, drivable).
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric


def fov_mask(cells: torch.Tensor, intrinsics: torch.Tensor, ego_from_camera: torch.Tensor, image_width: int,
             max_range_m: float) -> torch.Tensor:
    """bool [H, W]: cells (x, y) [H, W, 2] (ego frame, metres) within `max_range_m` of the ego
    origin that some camera (intrinsics [V, 3, 3], ego_from_camera [V, 4, 4]) sees horizontally:
    the point at the camera's height projects in front of it with u inside [-0.5, width - 0.5]."""
    xy = cells.reshape(-1, 2).double()
    seen = torch.zeros(xy.shape[0], dtype=torch.bool)
    for k, pose in zip(intrinsics.double(), ego_from_camera.double()):
        points = torch.cat([xy, pose[2, 3].expand(len(xy), 1), torch.ones(len(xy), 1, dtype=xy.dtype)], -1)  # [N, 4]
        camera = (points @ torch.linalg.inv(pose).T)[:, :3]  # [N, 3] in the camera frame
        u = (camera @ k.T)[:, 0] / camera[:, 2].clamp(min=1e-6)
        seen |= (camera[:, 2] > 1e-3) & (u > -0.5) & (u < image_width - 0.5)
    within = xy.norm(dim=-1) <= max_range_m
    return (seen & within).reshape(cells.shape[:2])


class BevIoU(Metric):
    """Intersection over union per class over every grid seen.

    update(probs [N, C, H, W] in [0, 1] (or logits with `logits=True`), target [N, C, H, W] in
    {0, 1}, known [N, C] bool (a class the data does not label counts nowhere), mask [H, W] bool);
    a cell is predicted occupied where probs > threshold. compute -> [C] IoU, NaN for a class
    with no occupied cell in either.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, classes: int, threshold: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold
        self.add_state("intersection", torch.zeros(classes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("union", torch.zeros(classes, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, target: torch.Tensor, known: torch.Tensor, mask: torch.Tensor,
               logits: bool = False) -> None:
        predicted = (torch.sigmoid(probs) if logits else probs) > self.threshold
        truth = target > 0.5
        weight = known[:, :, None, None] & mask.to(probs.device)[None, None]  # [N, C, H, W]
        self.intersection += ((predicted & truth) & weight).sum((0, 2, 3)).double()
        self.union += ((predicted | truth) & weight).sum((0, 2, 3)).double()

    def compute(self) -> torch.Tensor:
        nan = torch.full_like(self.union, math.nan)
        return torch.where(self.union > 0, self.intersection / self.union.clamp(min=1), nan)
