"""Prediction heads on the model feature (deter ++ flat stoch) and their losses.

`EgoMotionHead` predicts the pose change that led into each state, `[dx, dy, dyaw]` in the
ego frame of the step before (x forward, y left, metres; yaw counter-clockwise, radians);
`HazardHead` predicts the logit of "collision or near-collision within the horizon".
"""

import torch
import torch.nn.functional as F
from torch import nn

from lightning_wm.geometry import pose_deltas
from lightning_wm.models.nn.layers import MLP


class EgoMotionHead(nn.Module):
    """Feature [..., F] -> [dx, dy, dyaw] [..., 3] of the step that led into the state."""

    def __init__(self, feature_dim: int, units: int, layers: int) -> None:
        super().__init__()
        self.mlp = MLP(feature_dim, 3, units, layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features)


class HazardHead(nn.Module):
    """Feature [..., F] -> hazard logit [...]."""

    def __init__(self, feature_dim: int, units: int, layers: int) -> None:
        super().__init__()
        self.mlp = MLP(feature_dim, 1, units, layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features).squeeze(-1)


def ego_loss(pred: torch.Tensor, ego: torch.Tensor) -> torch.Tensor:
    """Squared error of the predicted motion, summed over [dx, dy, dyaw], mean over steps.

    pred [B, T, 3] from the states of steps 0..T-1; ego [B, T, 4, 4]. The state of step t+1
    has seen the action and frame that carried the car from t to t+1, so it predicts row t of
    `pose_deltas`; step 0 has no motion into it and is left out.
    """
    return (pred[:, 1:] - pose_deltas(ego)).square().sum(-1).mean()


def hazard_loss(logits: torch.Tensor, hazard: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of hazard logits [B, T] against labels [B, T] in {0, 1}."""
    return F.binary_cross_entropy_with_logits(logits, hazard)
