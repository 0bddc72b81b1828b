"""Ego-motion targets from poses, and how the heads' losses line up with the states."""

import math

import pytest
import torch

from lightning_wm.geometry import pose_deltas
from lightning_wm.models.nn.heads import EgoMotionHead, HazardHead, ego_loss


def _pose(x: float, y: float, yaw: float) -> torch.Tensor:
    pose = torch.eye(4)
    pose[0, 0], pose[0, 1], pose[1, 0], pose[1, 1] = math.cos(yaw), -math.sin(yaw), math.sin(yaw), math.cos(yaw)
    pose[0, 3], pose[1, 3] = x, y
    return pose


def _circle(speed: float, yaw_rate: float, dt: float, steps: int, start: torch.Tensor) -> torch.Tensor:
    """Poses [1, T, 4, 4] of a car on a circle (constant speed and yaw rate), left turn positive."""
    radius = speed / yaw_rate
    poses = [start @ _pose(radius * math.sin(yaw_rate * dt * t), radius * (1 - math.cos(yaw_rate * dt * t)),
                           yaw_rate * dt * t) for t in range(steps)]
    return torch.stack(poses)[None]


@pytest.mark.parametrize("yaw_rate", [0.3, -0.5])
def test_pose_deltas_on_a_constant_yaw_rate_circle(yaw_rate):
    speed, dt = 10.0, 0.1
    # A start pose away from the origin: deltas must not depend on the reference frame.
    ego = _circle(speed, yaw_rate, dt, steps=12, start=_pose(5.0, -3.0, 1.2)).double()
    deltas = pose_deltas(ego)
    assert deltas.shape == (1, 11, 3)
    radius, dyaw = speed / yaw_rate, yaw_rate * dt
    expected = torch.tensor([radius * math.sin(dyaw), radius * (1 - math.cos(dyaw)), dyaw], dtype=torch.float64)
    assert torch.allclose(deltas[0], expected.expand(11, 3), atol=1e-5)
    assert deltas[0, 0, 0] == pytest.approx(1.0, abs=0.01)  # about speed * dt forward
    assert math.copysign(1, deltas[0, 0, 1]) == math.copysign(1, yaw_rate)  # left turn moves left (y)


def test_pose_deltas_straight_line():
    ego = torch.stack([_pose(2.0 * t, 0.0, 0.0) for t in range(4)])[None]
    assert torch.allclose(pose_deltas(ego), torch.tensor([2.0, 0.0, 0.0]).expand(1, 3, 3), atol=1e-6)


def test_ego_loss_pairs_state_t_plus_1_with_motion_t():
    ego = _circle(8.0, 0.4, 0.1, steps=5, start=torch.eye(4))
    target = pose_deltas(ego)  # [1, 4, 3]
    pred = torch.cat([torch.full((1, 1, 3), 99.0), target], 1)  # step 0 has no motion into it
    assert ego_loss(pred, ego).item() == pytest.approx(0.0, abs=1e-10)
    assert ego_loss(pred.roll(1, dims=1), ego).item() > 1e-3


def test_head_shapes():
    features = torch.randn(2, 5, 24)
    assert EgoMotionHead(24, 16, 2)(features).shape == (2, 5, 3)
    assert HazardHead(24, 16, 1)(features).shape == (2, 5)
