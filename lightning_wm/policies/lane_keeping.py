"""`LaneKeeping`: a vision-free controller that follows its lane's centre line at the log's speed.

Privileged: it reads the road geometry, not the cameras. In the reference simulator it is given
the true road of every step (`Observation.road`). In the learned simulator, which has no road to
give, it keeps the road of the last context step (`EpisodeInfo.context_road`, from the log) and
dead-reckons its own pose from the ego motion it is shown. Steering is pure pursuit (Coulter 1992)
towards the point of its lane's centre line `lookahead` metres ahead; the lane is the one whose
centre is nearest the ego at the start. The speed is the logged driver's speed at that step.
"""

from __future__ import annotations

import math

import torch

from lightning_wm.policies.base import EpisodeInfo, Observation, action_index
from sharding.errors import ConfigError


def lookahead_point(line: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    """The point of polylines [B, P, 2] (ego frame) ahead of the ego at `distance` [B] metres from
    it (the first crossing along the line, interpolated); the last point when none is that far."""
    ahead = line[..., 0] > 0
    reach = line.norm(dim=-1).masked_fill(~ahead, -1.0)  # [B, P]
    beyond = (reach >= distance[:, None]) & ahead
    index = torch.where(beyond.any(1), beyond.double().argmax(1), torch.full_like(distance, line.shape[1] - 1).long())
    before = (index - 1).clamp(min=0)
    b = torch.arange(line.shape[0])
    p0, p1 = line[b, before], line[b, index]
    r0, r1 = reach[b, before].clamp(min=0), reach[b, index]
    t = ((distance - r0) / (r1 - r0).clamp(min=1e-6)).clamp(0, 1)[:, None]
    return p0 + t * (p1 - p0)


class LaneKeeping:
    """Pure pursuit along the starting lane's centre line; speed from the log."""

    wants_latent = False
    needs_frames = False

    def __init__(self, lookahead_s: float = 0.9, min_lookahead_m: float = 6.0, max_lookahead_m: float = 30.0) -> None:
        self.lookahead_s, self.min_lookahead_m, self.max_lookahead_m = lookahead_s, min_lookahead_m, max_lookahead_m

    def reset(self, info: EpisodeInfo) -> None:
        if info.context_road is None or not any(name.startswith("lane_") for name in info.road_lines):
            raise ConfigError("policy lane_keeping follows the lane centre, but these episodes have no road geometry "
                              "(data without road.npy, e.g. nuScenes without the map expansion); pick another policy")
        self.names, self.info = list(info.action_names), info
        self.speed_index = action_index(self.names, "speed", "lane_keeping")
        self.yaw_index = action_index(self.names, "yaw_rate", "lane_keeping")
        self.lanes = [k for k, name in enumerate(info.road_lines) if name.startswith("lane_")]
        road = info.context_road.double()  # [B, K, P, 2]
        lateral = self._lateral_offset(road[:, self.lanes])  # [B, L]: each lane centre's y at x = 0
        self.lane = torch.tensor(self.lanes)[lateral.abs().nan_to_num(math.inf).argmin(1)]  # [B] row of road
        self.start_road = road
        self.pose = torch.zeros(road.shape[0], 3, dtype=torch.float64)  # dead-reckoned (x, y, yaw) in that frame

    @staticmethod
    def _lateral_offset(lines: torch.Tensor) -> torch.Tensor:
        """y where each polyline [B, L, P, 2] crosses x = 0 (its point nearest the ego's axle), [B, L]."""
        nearest = lines[..., 0].abs().nan_to_num(math.inf).argmin(-1)  # [B, L]
        return torch.gather(lines[..., 1], -1, nearest[..., None])[..., 0]

    def _current_road(self, observation: Observation) -> torch.Tensor:
        if observation.road is not None:
            return observation.road.double().cpu()
        if observation.step > 0:  # dead reckoning: the motion into this step, in the previous step's frame
            dt = 1.0 / self.info.fps
            yaw = self.pose[:, 2]
            distance = observation.speed.double().cpu() * dt
            heading = yaw + 0.5 * observation.yaw_rate.double().cpu() * dt
            self.pose = torch.stack([self.pose[:, 0] + distance * torch.cos(heading),
                                     self.pose[:, 1] + distance * torch.sin(heading),
                                     yaw + observation.yaw_rate.double().cpu() * dt], -1)
        c, s = torch.cos(self.pose[:, 2])[:, None, None], torch.sin(self.pose[:, 2])[:, None, None]
        dx = self.start_road[..., 0] - self.pose[:, None, None, 0]
        dy = self.start_road[..., 1] - self.pose[:, None, None, 1]
        return torch.stack([c * dx + s * dy, -s * dx + c * dy], -1)

    def act(self, observation: Observation) -> torch.Tensor:
        road = self._current_road(observation)
        line = road[torch.arange(road.shape[0]), self.lane]  # [B, P, 2]
        speed = self.info.log_actions[:, observation.step, self.speed_index].double().cpu()
        distance = (self.lookahead_s * speed).clamp(self.min_lookahead_m, self.max_lookahead_m)
        target = lookahead_point(line, distance)
        curvature = 2 * target[:, 1] / target.square().sum(-1).clamp(min=1e-6)
        actions = self.info.log_actions[:, observation.step].clone().double().cpu()
        actions[:, self.speed_index] = speed
        actions[:, self.yaw_index] = speed * curvature
        return actions.to(observation.speed.device, torch.float32)
