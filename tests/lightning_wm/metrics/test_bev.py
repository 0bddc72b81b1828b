"""BEV IoU on counted cells and the cameras' field-of-view mask of a made rig."""

import math

import torch

from datamodules.bev import BevGrid
from lightning_wm.metrics.bev import BevIoU, fov_mask
from sharding.synthetic.camera import CameraConfig, RigConfig


def test_iou_counts_only_known_classes_inside_the_mask():
    target = torch.zeros(2, 3, 4, 4)
    target[:, 0, :2, :2] = 1  # 4 true vehicle cells per grid
    probs = torch.zeros(2, 3, 4, 4)
    probs[:, 0, :2, :1] = 0.9  # 2 of them predicted
    probs[:, 0, 3, 3] = 0.9  # and one false alarm
    probs[:, 2] = 0.9  # drivable predicted everywhere, but the data does not label it
    known = torch.tensor([[True, True, False], [True, True, False]])
    metric = BevIoU(3)
    metric.update(probs, target, known, torch.ones(4, 4, dtype=torch.bool))
    iou = metric.compute()
    assert iou[0].item() == 2 / 5 and math.isnan(iou[1].item()) and math.isnan(iou[2].item())
    masked = BevIoU(3)
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[3, 3] = False  # the false alarm lies outside the field of view
    masked.update(torch.logit(probs.clamp(1e-4, 1 - 1e-4)), target, known, mask, logits=True)
    assert masked.compute()[0].item() == 2 / 4


def test_a_front_camera_sees_ahead_within_range_not_behind():
    grid = BevGrid()
    rig = RigConfig(cameras=[CameraConfig("front", 0.0, fov_deg=80.0)], width=64, height=64)
    cells = torch.from_numpy(grid.cell_centres())
    mask = fov_mask(cells, torch.tensor(rig.intrinsics()), torch.tensor(rig.ego_from_camera()), 64, 30.0)
    x, y = cells[..., 0], cells[..., 1]
    bearing = torch.rad2deg(torch.atan2(y, x - rig.mount_x_m))
    assert not mask[x < 0].any() and not mask[(x**2 + y**2) > 30.0**2].any()
    inside = (bearing.abs() < 35) & (x > 3) & ((x**2 + y**2) < 29.0**2)
    outside = bearing.abs() > 45
    assert mask[inside].all() and not mask[outside & (x > 3)].any()
