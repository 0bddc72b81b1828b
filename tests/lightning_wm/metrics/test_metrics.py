"""Evaluation metrics against values worked out by hand: ADE/FDE, action following, hazard
AUROC/AP, PSNR/SSIM per step, the baselines, and horizons in seconds."""

import math

import pytest
import torch

from lightning_wm.evaluation.evaluator import RolloutSettings, steer_actions
from lightning_wm.geometry import integrate
from lightning_wm.metrics.action_following import ActionFollowingAccuracy
from lightning_wm.metrics.hazard import HazardScores
from lightning_wm.metrics.trajectory import DisplacementError, horizon_steps
from lightning_wm.metrics.video import FrameQuality, copy_last_frame, shuffled_actions
from sharding.errors import ConfigError


def straight(steps: int, speed: float) -> torch.Tensor:
    """Poses [1, steps, 3] of driving straight along x at `speed` metres per step."""
    x = speed * torch.arange(1, steps + 1, dtype=torch.float32)
    return torch.stack([x, torch.zeros_like(x), torch.zeros_like(x)], -1)[None]


def test_horizons_in_seconds_become_steps_at_the_data_rate():
    assert horizon_steps([1, 2, 3], 10.0) == {"1s": 10, "2s": 20, "3s": 30}
    assert horizon_steps([0.5, 1.5], 12.0) == {"0.5s": 6, "1.5s": 18}
    with pytest.raises(ConfigError, match=r"horizons_s: 0.05 s at 10 fps is 0.5 steps"):
        horizon_steps([0.05], 10.0)


def test_ade_fde_of_a_path_that_runs_10_percent_too_far():
    # error after step k (1-based) is 0.1 * k metres: ADE@k = 0.1 * (k + 1) / 2, FDE@k = 0.1 * k
    metric = DisplacementError({"1s": 10, "2s": 20})
    metric.update(straight(20, 1.1), straight(20, 1.0))
    values = metric.compute()
    assert values["ade/1s"].item() == pytest.approx(0.55, abs=1e-5)
    assert values["fde/1s"].item() == pytest.approx(1.0, abs=1e-5)
    assert values["ade/2s"].item() == pytest.approx(1.05, abs=1e-5)
    assert values["fde/2s"].item() == pytest.approx(2.0, abs=1e-5)


def test_ade_averages_over_rollouts_across_updates():
    metric = DisplacementError({"h": 4})
    metric.update(straight(4, 1.0), straight(4, 1.0))  # perfect
    metric.update(torch.cat([straight(4, 2.0), straight(4, 1.0)]), torch.cat([straight(4, 1.0)] * 2))
    # rollouts: 0 error; errors 1,2,3,4 (ADE 2.5, FDE 4); 0 error -> means over 3 rollouts
    assert metric.compute()["ade/h"].item() == pytest.approx(2.5 / 3)
    assert metric.compute()["fde/h"].item() == pytest.approx(4 / 3)


def test_integrated_turn_is_scored_in_the_start_frame():
    # a quarter circle of 4 steps vs driving straight: the end points differ by a known distance
    deltas = torch.tensor([[[1.0, 0.0, math.pi / 8]] * 4])
    turned = integrate(deltas)
    assert turned[0, -1, 2].item() == pytest.approx(math.pi / 2)
    metric = DisplacementError({"4": 4})
    metric.update(turned, straight(4, 1.0))
    end = turned[0, -1, :2]
    assert metric.compute()["fde/4"].item() == pytest.approx((end - torch.tensor([4.0, 0.0])).norm().item(), rel=1e-6)


def test_action_following_counts_each_direction_and_no_turn_as_a_miss():
    metric = ActionFollowingAccuracy()
    metric.update(torch.tensor([0.2, -0.1, 0.0, 0.3, -0.4]), torch.tensor([1.0, 1.0, -1.0, -1.0, -1.0]))
    values = {k: v.item() for k, v in metric.compute().items()}
    assert values == pytest.approx({"accuracy": 2 / 5, "left": 1 / 2, "right": 1 / 3})


def test_hazard_auroc_and_average_precision_match_hand_values():
    metric = HazardScores()
    logits = torch.logit(torch.tensor([[0.1, 0.4], [0.35, 0.8]]))
    metric.update(logits, torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    values = metric.compute()
    # pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3/4; AP = 0.5 * 1 + 0.5 * 2/3
    assert values["auroc"].item() == pytest.approx(0.75)
    assert values["average_precision"].item() == pytest.approx(0.5 + 1 / 3)
    assert values["positives"].item() == 2 and values["examples"].item() == 4


def test_hazard_scores_are_undefined_with_one_class():
    metric = HazardScores()
    metric.update(torch.randn(2, 3), torch.zeros(2, 3))
    values = metric.compute()
    assert math.isnan(values["auroc"].item()) and math.isnan(values["average_precision"].item())


def test_psnr_and_ssim_per_step():
    target = torch.rand(3, 2, 1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.8
    pred = target.clone()
    pred[:, 1] += 0.1  # step 1 is off by 0.1 everywhere: MSE 0.01 -> PSNR 20 dB
    pred[:, 0] += 0.01  # step 0: MSE 1e-4 -> 40 dB
    metric = FrameQuality(steps=2)
    metric.update(pred[:2], target[:2])
    metric.update(pred[2:], target[2:])
    values = metric.compute()
    assert values["psnr"].tolist() == pytest.approx([40.0, 20.0], abs=1e-3)
    assert values["ssim"][0].item() > values["ssim"][1].item()
    identical = FrameQuality(steps=2)
    identical.update(target, target)
    assert identical.compute()["ssim"].tolist() == pytest.approx([1.0, 1.0], abs=1e-5)


def test_baselines_copy_the_last_context_frame_and_borrow_other_windows_actions():
    frames = torch.arange(2 * 5, dtype=torch.float32).reshape(2, 5, 1, 1, 1, 1).expand(2, 5, 1, 3, 4, 4)
    copied = copy_last_frame(frames, context=3, horizon=2)
    assert copied.shape == (2, 2, 1, 3, 4, 4) and bool((copied == frames[:, 2:3]).all())
    actions = torch.arange(3.0)[:, None, None].expand(3, 4, 2)
    other = shuffled_actions(actions)
    assert [row[0, 0].item() for row in other] == [2.0, 0.0, 1.0]  # no window keeps its own
    assert shuffled_actions(actions[:1]) is None


def test_steering_commands_replace_yaw_rate_and_steer_and_keep_speed():
    settings = RolloutSettings(context=2, horizons={"1s": 10}, action_names=("speed", "yaw_rate", "steer", "brake"),
                               steer_yaw_rate=0.2, steer_rad=0.05)
    actions = torch.tensor([[[7.0, -0.01, -0.02, 0.3]] * 3])
    left, right = steer_actions(actions, 1, settings), steer_actions(actions, -1, settings)
    assert left[0, 0].tolist() == pytest.approx([7.0, 0.2, 0.05, 0.3])
    assert right[0, 2].tolist() == pytest.approx([7.0, -0.2, -0.05, 0.3])
    assert actions[0, 0, 1].item() == pytest.approx(-0.01)  # the true actions are left alone
    with pytest.raises(ConfigError, match="neither yaw_rate nor steer"):
        steer_actions(actions[..., :1], 1, RolloutSettings(2, {"1s": 10}, ("speed",)))
