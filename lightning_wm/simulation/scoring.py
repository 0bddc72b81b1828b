"""One NAVSIM-style scorer for both simulators: per episode NC, DAC, TTC, EP, C and the PDM score.

Both simulators hand over the same picture of an episode (`Outcome`): the ego's poses and BEV
occupancy grids (vehicles, pedestrians, drivable area) in the ego frame of every closed-loop
step. The reference simulator rasterises its exact ground truth into them; the learned simulator
fills them from the world model's own outputs only (ego-motion head, BEV head), never from the
reference world. Definitions (NAVSIM v1, Dauner et al. 2024, on top of nuPlan's metrics):

- NC (no at-fault collision): 0 when the ego's body overlaps an occupied vehicle or pedestrian
  cell at some step while it is moving (>= `stopped_mps`) and the overlap is not only in the rear
  quarter of its body (being rear-ended is not the ego's fault); else 1 (NAVSIM's 0.5 for static
  objects does not arise: no source labels them as occupancy here).
- DAC (drivable-area compliance): 0 when a corner of the ego's body leaves the drivable area at
  some step; unscored (NaN, never a pass) where the data has no road geometry.
- TTC (time to collision): 0 when, at some step, the ego's box moved ahead at its current speed
  and heading for 0.3, 0.6 or 0.9 s overlaps what is occupied at that later step (front three
  quarters of the body, as for NC); else 1.
- EP (ego progress): progress along the lane over the log's progress in the same time, clipped to
  [0, 1]; 1 when the log moves under `min_log_progress_m`.
- C (comfort): 1 when longitudinal acceleration, lateral acceleration, jerk, yaw rate and yaw
  acceleration stay within NAVSIM's bounds, from Savitzky-Golay derivatives of the poses.
- PDMS = NC * DAC * (5 TTC + 5 EP + 2 C) / 12 (DAC left out where unscored).
Plus the L2 distance of the ego to the logged trajectory at 1, 2 and 3 s.
Grids are `[B, H, C, h, w]` bool on `datamodules.bev.BevGrid`; poses `[B, H+1, 3]` (x, y, yaw) in
the frame of the last context step, row 0 being that step (0, 0, 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from datamodules.bev import BEV_CLASSES, BevGrid

# NAVSIM / nuPlan comfort bounds (ego_is_comfortable)
MAX_LON_ACCEL, MIN_LON_ACCEL, MAX_LAT_ACCEL = 2.40, -4.05, 4.89  # m/s^2
MAX_JERK, MAX_LON_JERK = 8.37, 4.13  # m/s^3
MAX_YAW_RATE, MAX_YAW_ACCEL = 0.95, 1.93  # rad/s, rad/s^2
TTC_HORIZONS_S = (0.3, 0.6, 0.9)
VEHICLE, PEDESTRIAN, DRIVABLE = (BEV_CLASSES.index(c) for c in ("vehicle", "pedestrian", "drivable"))


@dataclass(frozen=True)
class EgoShape:
    """The ego's body relative to its origin (the rear axle), metres; default: the synthetic ego."""

    length: float = 4.6
    width: float = 1.9
    rear_overhang: float = 1.0

    def points(self, spacing: float = 0.25) -> torch.Tensor:
        """[M, 2] points filling the body on a `spacing`-metre lattice (ego frame)."""
        xs = torch.arange(-self.rear_overhang, self.length - self.rear_overhang + 1e-6, spacing, dtype=torch.float64)
        ys = torch.arange(-self.width / 2, self.width / 2 + 1e-6, spacing, dtype=torch.float64)
        return torch.stack(torch.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2)

    def corners(self) -> torch.Tensor:
        """[4, 2] the body's corners (ego frame)."""
        back, front, half = -self.rear_overhang, self.length - self.rear_overhang, self.width / 2
        return torch.tensor([[front, half], [front, -half], [back, -half], [back, half]], dtype=torch.float64)

    def rear_quarter(self, points: torch.Tensor) -> torch.Tensor:
        """[M] bool: which of the points [M, 2] lie in the rear quarter of the body."""
        return points[:, 0] < -self.rear_overhang + self.length / 4


@dataclass
class ScoringConfig:
    """Settings of the scorer (`lwm simulate` `scoring.*`)."""

    stopped_mps: float = 0.5  # a collision while slower than this is not the ego's fault, m/s
    min_log_progress_m: float = 5.0  # EP = 1 when the log moves less than this, metres
    comfort_window: int = 9  # Savitzky-Golay window of the comfort derivatives, steps (odd)
    l2_horizons_s: list[float] = field(default_factory=lambda: [1.0, 2.0, 3.0])  # L2 to the log at these times, s


@dataclass
class Outcome:
    """What one simulator made of B episodes of H closed-loop steps (see the module docstring).

    poses:          float [B, H+1, 3] (x, y, yaw) in the last context step's frame, row 0 = 0
    history:        float [B, C, 3] the context poses in that frame (row C-1 = 0), for comfort
    occupancy:      bool  [B, H, 3, h, w] at steps 1..H, each in its own ego frame
    drivable_known: bool  [B] (no road geometry: DAC unscored)
    progress_m:     float [B] progress along the lane over the H steps
    hazard:         float [B, H] the world model's hazard probability, or None (reference)
    """

    poses: torch.Tensor
    history: torch.Tensor
    occupancy: torch.Tensor
    drivable_known: torch.Tensor
    progress_m: torch.Tensor
    hazard: torch.Tensor | None = None


def transform(points: torch.Tensor, from_pose: torch.Tensor, to_pose: torch.Tensor) -> torch.Tensor:
    """Points [..., M, 2] in the frame of poses `from_pose` [..., 3] -> the frame of `to_pose` [..., 3]."""
    c, s = torch.cos(from_pose[..., 2:3]), torch.sin(from_pose[..., 2:3])
    x = from_pose[..., None, 0] + c * points[..., 0] - s * points[..., 1]
    y = from_pose[..., None, 1] + s * points[..., 0] + c * points[..., 1]
    dx, dy = x - to_pose[..., None, 0], y - to_pose[..., None, 1]
    c, s = torch.cos(to_pose[..., 2:3]), torch.sin(to_pose[..., 2:3])
    return torch.stack([c * dx + s * dy, -s * dx + c * dy], -1)


def sample_grid(grid: BevGrid, occupancy: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """The cell under each point: occupancy [N, C, h, w] bool, points [N, M, 2] ego-frame metres ->
    [N, M, C] bool (points off the grid read as free)."""
    height, width = grid.shape
    i = torch.floor((grid.x_max - points[..., 0]) / grid.resolution).long()
    j = torch.floor((grid.y_max - points[..., 1]) / grid.resolution).long()
    inside = (i >= 0) & (i < height) & (j >= 0) & (j < width)
    flat = (i.clamp(0, height - 1) * width + j.clamp(0, width - 1))  # [N, M]
    cells = occupancy.flatten(2).transpose(1, 2)  # [N, h*w, C]
    values = torch.gather(cells, 1, flat[..., None].expand(-1, -1, cells.shape[-1]))
    return values & inside[..., None]


def savgol_weights(window: int, order: int, derivative: int) -> np.ndarray:
    """Centred Savitzky-Golay filter taps [window] for the `derivative`-th derivative (unit spacing)."""
    half = window // 2
    x = np.arange(-half, half + 1, dtype=np.float64)
    design = np.vander(x, order + 1, increasing=True)  # [W, order + 1]
    return np.linalg.pinv(design)[derivative] * math.factorial(derivative)


def derivative(values: torch.Tensor, dt: float, order: int, window: int) -> torch.Tensor:
    """d^order/dt^order of values [B, T] by a quadratic (cubic for jerk) Savitzky-Golay fit over
    `window` steps (made odd and at most T). The fit needs the whole window, so the first and last
    window // 2 steps take the derivative of the nearest step that has one (padding the positions
    instead would read as a sudden stop)."""
    steps = values.shape[1]
    poly = max(2, order)
    window = max(min(window, steps - (steps % 2 == 0)), poly + 1 + poly % 2)  # odd, more points than the fit's terms
    taps = torch.tensor(savgol_weights(window, poly, order), dtype=values.dtype)  # conv1d correlates: x increasing
    valid = torch.nn.functional.conv1d(values[:, None], taps.view(1, 1, -1))  # [B, 1, T - window + 1]
    return torch.nn.functional.pad(valid, (window // 2, window // 2), mode="replicate")[:, 0] / dt**order


def comfort(poses: torch.Tensor, dt: float, window: int, first: int) -> torch.Tensor:
    """[B] bool: every bound holds at steps `first`.. of poses [B, T, 3] (x, y, yaw)."""
    yaw = torch.from_numpy(np.unwrap(poses[..., 2].double().numpy(), axis=1))
    ax, ay = (derivative(poses[..., k].double(), dt, 2, window) for k in (0, 1))
    jx, jy = (derivative(poses[..., k].double(), dt, 3, window) for k in (0, 1))
    c, s = torch.cos(yaw), torch.sin(yaw)
    lon_accel, lat_accel = c * ax + s * ay, -s * ax + c * ay
    lon_jerk = c * jx + s * jy
    yaw_rate, yaw_accel = derivative(yaw, dt, 1, window), derivative(yaw, dt, 2, window)
    ok = ((lon_accel <= MAX_LON_ACCEL) & (lon_accel >= MIN_LON_ACCEL) & (lat_accel.abs() <= MAX_LAT_ACCEL)
          & (torch.hypot(jx, jy) <= MAX_JERK) & (lon_jerk.abs() <= MAX_LON_JERK)
          & (yaw_rate.abs() <= MAX_YAW_RATE) & (yaw_accel.abs() <= MAX_YAW_ACCEL))
    return ok[:, first:].all(1)


def score(outcome: Outcome, log_poses: torch.Tensor, log_progress_m: torch.Tensor, grid: BevGrid, fps: float,
          config: ScoringConfig | None = None, ego: EgoShape = EgoShape()) -> dict[str, torch.Tensor]:
    """Per-episode scores [B] (float; NaN where unscored) of `outcome` against the log
    (log_poses [B, H+1, 3] in the same frame, log_progress_m [B])."""
    config = config or ScoringConfig()
    poses, occupancy = outcome.poses.double(), outcome.occupancy.bool()
    batch, horizon = occupancy.shape[:2]
    dt = 1.0 / fps
    speed = (poses[:, 1:, :2] - poses[:, :-1, :2]).norm(dim=-1) / dt  # [B, H] into each step
    body = ego.points()
    front = ~ego.rear_quarter(body)  # [M]

    # NC: the body against the agents occupying its cells, step by step (its own frame: no transform)
    at_step = sample_grid(grid, occupancy.flatten(0, 1), body.expand(batch * horizon, -1, -1))  # [BH, M, C]
    agents = (at_step[..., VEHICLE] | at_step[..., PEDESTRIAN]).view(batch, horizon, -1)  # [B, H, M]
    collision = agents.any(-1)  # [B, H]
    at_fault = (agents & front).any(-1) & (speed >= config.stopped_mps)
    nc = (~at_fault.any(1)).double()

    # DAC: every corner on drivable cells at every step
    corners = sample_grid(grid, occupancy.flatten(0, 1), ego.corners().expand(batch * horizon, -1, -1))
    off_road = ~corners[..., DRIVABLE].view(batch, horizon, -1).all(-1)  # [B, H]
    dac = torch.where(outcome.drivable_known, (~off_road.any(1)).double(), torch.full((batch,), math.nan,
                                                                                      dtype=torch.float64))

    # TTC: the body moved ahead at constant speed and heading, against the occupancy of that later step
    threatened = torch.zeros(batch, horizon, dtype=torch.bool)
    steps = torch.arange(horizon)
    for seconds in TTC_HORIZONS_S:
        later = (steps + round(seconds * fps)).clamp(max=horizon - 1)  # [H]
        moved = body[None, None] + torch.stack([speed * seconds, torch.zeros_like(speed)], -1)[:, :, None]  # [B, H, M, 2]
        seen = transform(moved, poses[:, 1:], poses[:, 1 + later])  # in the later step's frame
        hits = sample_grid(grid, occupancy[:, later].flatten(0, 1), seen.flatten(0, 1)).view(batch, horizon, -1, 3)
        threatened |= ((hits[..., VEHICLE] | hits[..., PEDESTRIAN]) & front).any(-1)
    ttc = (~threatened.any(1)).double()

    progress_ratio = (outcome.progress_m.double() / log_progress_m.double().clamp(min=1e-6)).clamp(0, 1)
    ep = torch.where(log_progress_m < config.min_log_progress_m, torch.ones_like(progress_ratio), progress_ratio)
    trajectory = torch.cat([outcome.history.double()[:, :-1], poses], 1)  # context + closed loop
    comfortable = comfort(trajectory, dt, config.comfort_window, outcome.history.shape[1]).double()

    dac_factor = torch.where(torch.isnan(dac), torch.ones_like(dac), dac)
    pdms = nc * dac_factor * (5 * ttc + 5 * ep + 2 * comfortable) / 12
    first = torch.where(collision.any(1), collision.double().argmax(1).double() + 1, torch.full((batch,), math.nan,
                                                                                                dtype=torch.float64))
    left = torch.where(off_road.any(1) & outcome.drivable_known, off_road.double().argmax(1).double() + 1,
                       torch.full((batch,), math.nan, dtype=torch.float64))
    scores = {"pdms": pdms, "nc": nc, "dac": dac, "ttc": ttc, "ep": ep, "comfort": comfortable,
              "collision": collision.any(1).double(), "at_fault_collision": at_fault.any(1).double(),
              "off_road": torch.where(outcome.drivable_known, off_road.any(1).double(), dac),
              "first_collision_step": first, "first_off_road_step": left, "progress_m": outcome.progress_m.double()}
    for seconds in config.l2_horizons_s:
        k = round(seconds * fps)
        if k <= horizon:
            scores[f"l2_{seconds:g}s"] = (poses[:, k, :2] - log_poses[:, k, :2].double()).norm(dim=-1)
    if outcome.hazard is not None:
        scores["hazard_max"] = outcome.hazard.double().max(1).values
    return scores
