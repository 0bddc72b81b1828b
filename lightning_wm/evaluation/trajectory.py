"""Trajectories from per-step ego motion: the common currency of ADE/FDE and robustness checks.

Ego motion arrives as `[dx, dy, dyaw]` per step (metres, metres, radians), each in the ego
frame of the step before (what `pose_deltas`, the ego-motion head and the IDM produce).
Chaining them gives the path in the frame of the starting step: x forward, y left.
"""

from __future__ import annotations

import torch


def integrate(deltas: torch.Tensor) -> torch.Tensor:
    """Chain per-step motions into poses in the start frame: [B, H, 3] -> [B, H, 3] = [x, y, yaw].

    Row h is the pose after h+1 steps; the start pose (0, 0, 0) is not included.
    """
    yaw_after = torch.cumsum(deltas[..., 2], dim=-1)  # [B, H]
    yaw_before = yaw_after - deltas[..., 2]  # heading in which each step's (dx, dy) is expressed
    cos, sin = torch.cos(yaw_before), torch.sin(yaw_before)
    step_x = cos * deltas[..., 0] - sin * deltas[..., 1]
    step_y = sin * deltas[..., 0] + cos * deltas[..., 1]
    return torch.stack([step_x.cumsum(-1), step_y.cumsum(-1), yaw_after], -1)


def displacement(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Euclidean position error per step: poses [B, H, >=2] x2 -> [B, H] metres."""
    return (pred[..., :2] - target[..., :2]).norm(dim=-1)
