"""Hazard prediction quality: AUROC and average precision of "collision or near-collision ahead".

Scores and labels are concatenated across DDP ranks (torchmetrics `cat` reduction), so the
result is exact, with no threshold binning.
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_auroc, binary_average_precision


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
