"""Trajectory, action-following and hazard metrics of a learned simulator, as torchmetrics Metrics.

Every state is a sum (or a concatenation, for hazard scores) reduced across DDP ranks by
torchmetrics, so a metric computed on two ranks equals the one computed on all the data in
one process. Horizons are given in seconds and turned into steps with the data's frame rate.
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_auroc, binary_average_precision

from lightning_wm.evaluation.trajectory import displacement
from sharding.errors import ConfigError


def horizon_label(seconds: float) -> str:
    """1.0 -> "1s", 0.5 -> "0.5s": the key of a horizon in metric names and tables."""
    return f"{seconds:g}s"


def horizon_steps(horizons_s: list[float], fps: float) -> dict[str, int]:
    """Horizons in seconds -> {label: steps} at `fps`; each must be a whole, positive number of steps."""
    steps: dict[str, int] = {}
    for seconds in horizons_s:
        exact = float(seconds) * fps
        if exact < 1 - 1e-6 or abs(exact - round(exact)) > 1e-6:
            raise ConfigError(f"horizons_s: {seconds} s at {fps:g} fps is {exact:g} steps; give horizons that are "
                              f"whole multiples of 1/fps = {1 / fps:g} s")
        steps[horizon_label(seconds)] = int(round(exact))
    return steps


class DisplacementError(Metric):
    """ADE and FDE (metres) at several horizons, over rollouts.

    update(pred [B, H, >=2], target [B, H, >=2]): poses in the frame of the rollout's start
    (`trajectory.integrate`), H >= the longest horizon. ADE@k is the mean position error over
    the first k steps, FDE@k the error at step k; both averaged over rollouts.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, horizons: dict[str, int], **kwargs) -> None:
        super().__init__(**kwargs)
        if not horizons or min(horizons.values()) < 1:
            raise ConfigError(f"DisplacementError needs horizons of >= 1 step, got {horizons}")
        self.labels, self.steps = list(horizons), list(horizons.values())
        self.add_state("ade_sum", torch.zeros(len(self.steps), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("fde_sum", torch.zeros(len(self.steps), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        assert pred.shape[:2] == target.shape[:2] and pred.shape[1] >= max(self.steps), (
            f"pred {list(pred.shape)} / target {list(target.shape)} shorter than the horizons {self.steps}")
        error = displacement(pred, target).double()  # [B, H]
        self.ade_sum += torch.stack([error[:, :k].mean(1).sum() for k in self.steps])
        self.fde_sum += torch.stack([error[:, k - 1].sum() for k in self.steps])
        self.count += error.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        ade, fde = self.ade_sum / self.count, self.fde_sum / self.count
        return {**{f"ade/{label}": ade[i] for i, label in enumerate(self.labels)},
                **{f"fde/{label}": fde[i] for i, label in enumerate(self.labels)}}


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


class HazardScores(Metric):
    """AUROC and average precision of hazard logits for "collision or near-collision within the horizon".

    update(logits [B, H], labels [B, H] in {0, 1}); every step is one example. Scores and labels
    are concatenated across ranks (exact, no thresholds binning). When the data holds only one
    class both scores are undefined: NaN, and `positives`/`examples` say why.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("scores", [], dist_reduce_fx="cat")
        self.add_state("labels", [], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        assert logits.shape == labels.shape, f"logits {list(logits.shape)} vs labels {list(labels.shape)}"
        self.scores.append(torch.sigmoid(logits.detach().float()).flatten())
        self.labels.append(labels.detach().flatten().round().long())

    def compute(self) -> dict[str, torch.Tensor]:
        def joined(state) -> torch.Tensor:  # a list before sync, one tensor after
            if isinstance(state, list):
                return torch.cat(state) if state else torch.zeros(0)
            return state

        scores, labels = joined(self.scores), joined(self.labels)
        positives = labels.sum()
        out = {"positives": positives.double(), "examples": torch.tensor(float(labels.numel()), dtype=torch.float64)}
        if 0 < positives < labels.numel():
            out["auroc"] = binary_auroc(scores, labels).double()
            out["average_precision"] = binary_average_precision(scores, labels).double()
        else:
            out["auroc"] = out["average_precision"] = torch.tensor(math.nan, dtype=torch.float64)
        return out
