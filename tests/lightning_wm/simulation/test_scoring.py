"""The scorer on hand-made episodes whose NC, DAC, TTC, EP, comfort, PDMS and L2 are known."""

import math

import pytest
import torch

from datamodules.bev import BevGrid
from lightning_wm.simulation.scoring import DRIVABLE, PEDESTRIAN, VEHICLE, EgoShape, Outcome, ScoringConfig, score

GRID = BevGrid()
FPS = 10.0
H = 30


def straight(speed: float, steps: int = H) -> torch.Tensor:
    """Poses [1, steps+1, 3] driving straight along x at `speed` m/s from the origin."""
    x = torch.arange(steps + 1, dtype=torch.float64) * speed / FPS
    return torch.stack([x, torch.zeros_like(x), torch.zeros_like(x)], -1)[None]


def road(steps: int = H, left: float = 5.25, right: float = -1.75) -> torch.Tensor:
    """Occupancy [1, steps, 3, h, w]: a straight carriageway between y = right and y = left, no agents."""
    cells = torch.from_numpy(GRID.cell_centres())
    occupancy = torch.zeros(1, steps, 3, *GRID.shape, dtype=torch.bool)
    occupancy[:, :, DRIVABLE] = (cells[..., 1] <= left) & (cells[..., 1] >= right)
    return occupancy


def box(occupancy: torch.Tensor, step: int, x0: float, x1: float, y0: float, y1: float, channel: int = VEHICLE) -> None:
    """Mark the cells whose centres lie in [x0, x1] x [y0, y1] (ego frame of `step`) as occupied."""
    cells = torch.from_numpy(GRID.cell_centres())
    inside = (cells[..., 0] >= x0) & (cells[..., 0] <= x1) & (cells[..., 1] >= y0) & (cells[..., 1] <= y1)
    occupancy[:, step, channel] |= inside


def outcome(poses: torch.Tensor, occupancy: torch.Tensor, known: bool = True, progress: float | None = None) -> Outcome:
    speed = (poses[0, 1, 0] - poses[0, 0, 0]).item() * FPS
    history = straight(speed, 7) - torch.tensor([7 * speed / FPS, 0.0, 0.0])  # 8 context poses ending at 0
    progress = (poses[0, -1, 0] - poses[0, 0, 0]).item() if progress is None else progress
    return Outcome(poses, history, occupancy, torch.tensor([known]), torch.tensor([progress], dtype=torch.float64))


def scores_of(poses, occupancy, log_poses=None, log_progress=None, **kwargs):
    log_poses = poses if log_poses is None else log_poses
    log_progress = torch.tensor([(log_poses[0, -1, 0] - log_poses[0, 0, 0]).item()]) if log_progress is None \
        else torch.tensor([log_progress])
    return {k: v[0].item() for k, v in score(outcome(poses, occupancy, **kwargs), log_poses, log_progress, GRID,
                                                 FPS, ScoringConfig()).items()}


def test_a_clean_drive_scores_one_everywhere():
    s = scores_of(straight(10.0), road())
    assert (s["nc"], s["dac"], s["ttc"], s["ep"], s["comfort"]) == (1, 1, 1, 1, 1)
    assert s["pdms"] == pytest.approx(1.0) and s["collision"] == 0 and s["off_road"] == 0
    assert s["l2_1s"] == s["l2_3s"] == 0 and math.isnan(s["first_collision_step"])


def test_hitting_a_car_ahead_while_moving_is_at_fault_and_zeroes_the_pdms():
    occupancy = road()
    box(occupancy, 11, 2.0, 6.5, -1.0, 1.0)  # a car over the front of the ego's body at step 12
    s = scores_of(straight(10.0), occupancy)
    assert s["nc"] == 0 and s["pdms"] == 0 and s["collision"] == 1 and s["at_fault_collision"] == 1
    assert s["first_collision_step"] == 12


def test_being_rear_ended_or_hit_while_stopped_is_not_at_fault():
    occupancy = road()
    box(occupancy, 5, -3.0, -0.8, -1.0, 1.0)  # only the rear quarter of the body overlaps
    s = scores_of(straight(10.0), occupancy)
    assert s["collision"] == 1 and s["nc"] == 1
    occupancy = road()
    box(occupancy, 5, 2.0, 6.0, -1.0, 1.0)
    s = scores_of(straight(0.0), occupancy, log_poses=straight(0.0))
    assert s["collision"] == 1 and s["nc"] == 1  # the ego stands still


def test_leaving_the_drivable_area_fails_dac_and_unknown_road_is_unscored():
    s = scores_of(straight(10.0), road(left=5.25, right=-0.5))  # the right edge cuts through the ego's body
    assert s["dac"] == 0 and s["off_road"] == 1 and s["pdms"] == 0
    s = scores_of(straight(10.0), road(left=5.25, right=-0.5), known=False)
    assert math.isnan(s["dac"]) and math.isnan(s["off_road"])
    assert s["pdms"] == pytest.approx(1.0)  # PDMS without the DAC factor, DAC reported unscored


def stopping_before(car_rear_x: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The ego at 10 m/s brakes at 10 m/s^2 from step 5 and stops short of a car parked with its rear at
    world x = car_rear_x: (poses [1, H+1, 3], occupancy with the car in each step's frame)."""
    x, v = [0.0], 10.0
    for t in range(1, H + 1):
        v = max(0.0, v - (1.0 if t > 5 else 0.0))
        x.append(x[-1] + v / FPS)
    poses = torch.zeros(1, H + 1, 3, dtype=torch.float64)
    poses[0, :, 0] = torch.tensor(x)
    occupancy = road()
    for step in range(H):
        ego_x = x[step + 1]
        box(occupancy, step, car_rear_x - ego_x, car_rear_x + 4.5 - ego_x, -1.0, 1.0)
    return poses, occupancy


def test_a_car_within_0_9_s_at_constant_speed_fails_ttc_without_a_collision():
    poses, occupancy = stopping_before(15.0)
    assert poses[0, -1, 0] + 3.6 < 15.0  # it stops short
    s = scores_of(poses, occupancy)
    assert s["collision"] == 0 and s["ttc"] == 0 and s["nc"] == 1
    assert s["pdms"] == pytest.approx((0 + 5 * s["ep"] + 2 * s["comfort"]) / 12)
    poses, occupancy = stopping_before(40.0)  # far enough: 0.9 s at 10 m/s never reaches it
    assert scores_of(poses, occupancy)["ttc"] == 1


def test_progress_is_relative_to_the_log_and_one_when_the_log_barely_moves():
    s = scores_of(straight(5.0), road(), log_poses=straight(10.0))
    assert s["ep"] == pytest.approx(0.5) and s["pdms"] == pytest.approx((5 + 2.5 + 2) / 12)
    s = scores_of(straight(0.1), road(), log_poses=straight(0.1))  # the log moves 0.3 m
    assert s["ep"] == 1.0


def test_hard_braking_is_uncomfortable():
    x = torch.zeros(H + 1, dtype=torch.float64)
    v = 15.0
    for t in range(1, H + 1):  # 9 m/s^2 braking from step 10: beyond NAVSIM's -4.05 m/s^2
        v = max(0.0, v - (9.0 / FPS if t > 10 else 0.0))
        x[t] = x[t - 1] + v / FPS
    poses = torch.stack([x, torch.zeros_like(x), torch.zeros_like(x)], -1)[None]
    assert scores_of(poses, road(), log_poses=poses)["comfort"] == 0
    assert scores_of(straight(15.0), road())["comfort"] == 1


def test_l2_is_the_distance_to_the_log_at_1_2_3_seconds():
    poses = straight(10.0)
    log = poses.clone()
    log[..., 1] = torch.arange(H + 1) * 0.1  # the log drifts left 0.1 m per step
    s = scores_of(poses, road(), log_poses=log)
    assert (s["l2_1s"], s["l2_2s"], s["l2_3s"]) == pytest.approx((1.0, 2.0, 3.0))


def test_pedestrians_count_like_vehicles():
    occupancy = road()
    box(occupancy, 2, 2.5, 3.0, 0.2, 0.7, channel=PEDESTRIAN)
    assert scores_of(straight(10.0), occupancy)["nc"] == 0
    assert EgoShape().rear_quarter(torch.tensor([[-0.9, 0.0], [2.0, 0.0]])).tolist() == [True, False]
