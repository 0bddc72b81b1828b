"""Action following: does a rollout steered left turn left? The simulator's controllability score.

The same context is rolled out with the steering command replaced by a left and by a right
turn; the implied total yaw over the horizon must have the commanded sign. Sums reduce across
DDP ranks (torchmetrics).
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric


class ActionFollowingAccuracy(Metric):
    """Fraction of counterfactual rollouts whose implied total yaw turns the commanded way.

    update(total_yaw [B] rad, commanded [B] = +1 (steer left, counter-clockwise) or -1 (right)).
    A rollout that does not turn at all (yaw exactly 0) counts as not following.
    compute -> {accuracy, left, right}: overall and per commanded direction.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("correct", torch.zeros(2, dtype=torch.float64), dist_reduce_fx="sum")  # [left, right]
        self.add_state("total", torch.zeros(2, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, total_yaw: torch.Tensor, commanded: torch.Tensor) -> None:
        commanded = commanded.to(total_yaw.device).expand_as(total_yaw)
        assert bool((commanded.abs() == 1).all()), f"commanded must be +1 or -1, got {commanded.tolist()}"
        follows = torch.sign(total_yaw) == commanded
        for index, direction in enumerate((1, -1)):
            mine = commanded == direction
            self.correct[index] += (follows & mine).sum()
            self.total[index] += mine.sum()

    def compute(self) -> dict[str, torch.Tensor]:
        nan = torch.tensor(math.nan, dtype=torch.float64, device=self.total.device)
        rate = torch.where(self.total > 0, self.correct / self.total.clamp_min(1), nan)
        overall = self.correct.sum() / self.total.sum() if self.total.sum() > 0 else nan
        return {"accuracy": overall, "left": rate[0], "right": rate[1]}
