"""The ego car: a kinematic bicycle model driven by steer, throttle and brake.

The ego frame's origin is the centre of the rear axle on the ground (as in nuScenes), which
is also the point whose velocity the bicycle model keeps aligned with the heading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

WHEELBASE_M = 2.7
MAX_STEER_RAD = 0.6  # front wheel angle limit
MAX_ACCEL = 4.0  # m/s^2 at full throttle from standstill
MAX_BRAKE = 9.0  # m/s^2 at full brake (dry road)
TOP_SPEED = 45.0  # m/s where the engine's push reaches zero
_SUBSTEPS = 4  # integration steps per simulation step (keeps tight turns accurate at 10 Hz)


@dataclass
class EgoVehicle:
    """State of the ego car in the world frame (m, rad, m/s)."""

    x: float
    y: float
    yaw: float
    speed: float
    length: float = 4.6
    width: float = 1.9
    height: float = 1.5
    rear_overhang: float = 1.0  # body behind the rear axle

    @property
    def center_offset(self) -> float:
        """Distance from the rear axle (ego origin) forward to the body's centre."""
        return self.length / 2.0 - self.rear_overhang

    def step(self, steer: float, throttle: float, brake: float, dt: float) -> None:
        """Advance `dt` seconds under constant controls.

        steer: front wheel angle (rad, + = left), clipped to +-MAX_STEER_RAD;
        throttle, brake: in [0, 1]. The car never reverses.
        """
        steer = float(np.clip(steer, -MAX_STEER_RAD, MAX_STEER_RAD))
        throttle, brake = float(np.clip(throttle, 0.0, 1.0)), float(np.clip(brake, 0.0, 1.0))
        h = dt / _SUBSTEPS
        for _ in range(_SUBSTEPS):
            drag = 0.15 + 0.0004 * self.speed**2  # rolling resistance + air drag
            accel = throttle * MAX_ACCEL * max(0.0, 1.0 - self.speed / TOP_SPEED) - brake * MAX_BRAKE
            new_speed = max(0.0, self.speed + (accel - (drag if self.speed > 0 else 0.0)) * h)
            mean_speed = 0.5 * (self.speed + new_speed)
            yaw_rate = mean_speed * math.tan(steer) / WHEELBASE_M
            mid_yaw = self.yaw + 0.5 * yaw_rate * h
            self.x += mean_speed * math.cos(mid_yaw) * h
            self.y += mean_speed * math.sin(mid_yaw) * h
            self.yaw = math.atan2(math.sin(self.yaw + yaw_rate * h), math.cos(self.yaw + yaw_rate * h))
            self.speed = new_speed

    def pose(self) -> np.ndarray:
        """float64 [4, 4] world_from_ego."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        pose = np.eye(4)
        pose[:2, :2] = [[c, -s], [s, c]]
        pose[:2, 3] = [self.x, self.y]
        return pose

    def footprint(self) -> tuple[np.ndarray, float, np.ndarray]:
        """Body rectangle in the world: centre float64 [2], yaw, half size float64 [2]."""
        center = np.array([self.x + self.center_offset * math.cos(self.yaw),
                           self.y + self.center_offset * math.sin(self.yaw)])
        return center, self.yaw, np.array([self.length / 2.0, self.width / 2.0])
