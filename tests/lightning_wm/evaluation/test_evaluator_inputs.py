"""EvaluationMetrics for any horizon label, BEV IoU included."""

from __future__ import annotations

import torch

from lightning_wm.evaluation.evaluator import EvaluationMetrics, RolloutSettings


def test_bev_iou_is_kept_per_horizon_also_for_fractional_seconds():
    metrics = EvaluationMetrics(RolloutSettings(4, {"0.5s": 5, "1s": 10}, ("speed", "yaw_rate")), with_idm=False,
                                with_bev=True)
    occupied = torch.zeros(1, 3, 4, 4)
    occupied[:, 0, :2] = 1
    known = torch.ones(1, 3, dtype=torch.bool)  # [N, classes]
    fov = torch.ones(4, 4, dtype=torch.bool)
    metrics.bev["0_5s"].update(occupied * 10 - 5, occupied, known, fov, logits=True)
    bev = metrics.compute()["bev_iou"]
    assert list(bev) == ["0.5s"] and bev["0.5s"]["vehicle"] == 1.0
