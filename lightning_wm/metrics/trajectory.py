"""ADE and FDE of a trajectory against the ground truth, at horizons given in seconds.

Trajectories are poses [B, H, >=2] in the frame of the rollout's start, made from per-step ego
motion by `lightning_wm.geometry.integrate` (the ego-motion head, the IDM reading generated
video, or the poses themselves through `geometry.pose_deltas`). Every state is a sum reduced
across DDP ranks by torchmetrics, so a metric computed on two ranks equals the one computed on
all the data in one process. Horizons in seconds become steps at the data's frame rate.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from sharding.errors import ConfigError

WHOLE = None  # a DisplacementError horizon: the whole rollout of each update


def displacement(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Euclidean position error per step: poses [B, H, >=2] x2 -> [B, H] metres."""
    return (pred[..., :2] - target[..., :2]).norm(dim=-1)


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
    (`geometry.integrate`), H >= the longest horizon. ADE@k is the mean position error over
    the first k steps, FDE@k the error at step k; both averaged over rollouts. A horizon of
    `WHOLE` (None) steps is the whole of each update's rollout (e.g. the IDM's clips).
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, horizons: dict[str, int | None], **kwargs) -> None:
        super().__init__(**kwargs)
        if not horizons or any(k is not None and k < 1 for k in horizons.values()):
            raise ConfigError(f"DisplacementError needs horizons of >= 1 step, got {horizons}")
        self.labels, self.steps = list(horizons), list(horizons.values())
        self.add_state("ade_sum", torch.zeros(len(self.steps), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("fde_sum", torch.zeros(len(self.steps), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        steps = [pred.shape[1] if k is WHOLE else k for k in self.steps]
        assert pred.shape[:2] == target.shape[:2] and pred.shape[1] >= max(steps), (
            f"pred {list(pred.shape)} / target {list(target.shape)} shorter than the horizons {self.steps}")
        error = displacement(pred, target).double()  # [B, H]
        self.ade_sum += torch.stack([error[:, :k].mean(1).sum() for k in steps])
        self.fde_sum += torch.stack([error[:, k - 1].sum() for k in steps])
        self.count += error.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        ade, fde = self.ade_sum / self.count, self.fde_sum / self.count
        return {**{f"ade/{label}": ade[i] for i, label in enumerate(self.labels)},
                **{f"fde/{label}": fde[i] for i, label in enumerate(self.labels)}}
