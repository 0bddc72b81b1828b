"""The turn flow: a rotation homography, in the image directions a driver expects."""

import math

import torch

from lightning_wm.geometry import rotation_flow
from lightning_wm.models.nn.warp_decoder import warp
from tests.helpers import forward_camera

CAMERA = forward_camera(32)
K, E = torch.tensor(CAMERA.intrinsics), torch.tensor(CAMERA.ego_from_camera)


def test_no_turn_no_flow_and_a_left_turn_moves_the_view_right_by_f_tan_yaw():
    flow = rotation_flow(K, E, torch.tensor([0.0, 0.1, -0.1]), (32, 32))
    assert flow.shape == (3, 2, 32, 32)
    assert flow[0].abs().max() < 1e-4
    # turning left, what is at the centre now was to the left (smaller u) before: flow x < 0
    focal = float(K[0, 0])
    centre = flow[:, 0, 16, 16]
    assert math.isclose(centre[1].item(), -focal * math.tan(0.1), rel_tol=0.05)
    assert math.isclose(centre[2].item(), focal * math.tan(0.1), rel_tol=0.05)
    assert (flow[1, 0] < 0).all() and (flow[2, 0] > 0).all()


def test_turning_there_and_back_returns_every_pixel_home():
    image = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8), size=(32, 32), mode="bilinear")  # smooth
    there = warp(image, rotation_flow(K, E, torch.tensor([0.05]), (32, 32)))
    back = warp(there, rotation_flow(K, E, torch.tensor([-0.05]), (32, 32)))
    inner = (slice(None), slice(None), slice(4, 28), slice(6, 26))  # away from the border the warp pads
    assert (back[inner] - image[inner]).abs().mean() < 0.02
    assert (there[inner] - image[inner]).abs().mean() > 3 * (back[inner] - image[inner]).abs().mean()  # the turn did move the image
