"""The scripted ego driver: lane keeping, lane changes, car following, and human lapses.

It reads the world's ground truth but perceives it `reaction_s` late, and a scene may give it
a hard-braking event, a distraction or a careless lane change. Those lapses, together with
cut-ins, braking leaders and crossing pedestrians in the world, produce the near-collisions
the hazard labels need. Everything is drawn from the seed, so a scene replays exactly.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from sharding.synthetic.traffic import idm_accel
from sharding.synthetic.vehicle import MAX_ACCEL, MAX_BRAKE, MAX_STEER_RAD, TOP_SPEED, WHEELBASE_M

if TYPE_CHECKING:
    from sharding.synthetic.world import SyntheticWorld


class ScriptedDriver:
    """Produces (steer rad, throttle [0, 1], brake [0, 1]) for the ego from the world state."""

    def __init__(self, seed: int):
        rng = np.random.default_rng([seed, 1])  # a stream of its own: the world's draws stay put
        self.rng = rng
        self.headway = rng.uniform(0.6, 2.0)  # below 1 s is tailgating
        self.reaction_s = rng.uniform(0.3, 1.2)
        self.weave_m, self.weave_period_s = rng.uniform(0.0, 0.35), rng.uniform(4.0, 10.0)
        self.careless = bool(rng.random() < 0.15)  # changes lanes without looking
        # times (s) of speed changes and lane changes over a scene
        self.speed_changes = list(np.sort(rng.uniform(0.5, 6.0, size=rng.integers(0, 3))))
        self.lane_change_at = list(np.sort(rng.uniform(0.5, 5.5, size=rng.poisson(0.6))))
        # (start s, duration s, brake pedal) of an unprovoked emergency stop, in 15% of scenes
        self.hard_brake = (rng.uniform(0.8, 4.5), rng.uniform(0.8, 2.0), rng.uniform(0.7, 1.0)) \
            if rng.random() < 0.15 else None
        self.distraction = (rng.uniform(0.5, 4.0), rng.uniform(1.5, 3.0)) if rng.random() < 0.18 else None
        self.cruise_speed: float | None = None  # set from the ego's speed at the first step
        self.target_lane: int | None = None
        self.last_lane_change = -math.inf
        self.lane_changes = 0
        self._perceived: deque = deque()  # (time, gap, leader speed, odometer)
        self._odometer = 0.0
        self._throttle = 0.0

    def summary(self) -> dict[str, Any]:
        """Plain-JSON description of the behaviour drawn for this scene."""
        return {
            "headway_s": round(float(self.headway), 3),
            "reaction_s": round(float(self.reaction_s), 3),
            "careless": self.careless,
            "lane_changes": self.lane_changes,
            "hard_brake_at_s": None if self.hard_brake is None else round(float(self.hard_brake[0]), 2),
            "distracted_at_s": None if self.distraction is None else round(float(self.distraction[0]), 2),
        }

    def act(self, world: SyntheticWorld) -> tuple[float, float, float]:
        ego, road, now = world.ego, world.road, world.time
        s, d = world.ego_frenet()
        layout = road.layout
        if self.cruise_speed is None:
            self.cruise_speed = ego.speed
            self.target_lane = int(layout.lane_at(d))
        self._odometer += ego.speed * world.dt
        if self.speed_changes and now >= self.speed_changes[0]:
            self.speed_changes.pop(0)
            self.cruise_speed = float(np.clip(self.cruise_speed * self.rng.uniform(0.6, 1.4), 4.0, 30.0))

        gap, leader_speed = world.leader_in_lane(self.target_lane)
        if self.lane_change_at and now >= self.lane_change_at[0]:
            if self._change_lane(world, s, self.rng.choice([-1, 1])):
                self.lane_change_at.pop(0)
        elif gap < 35.0 and leader_speed < self.cruise_speed - 3.0 and now - self.last_lane_change > 4.0:
            self._change_lane(world, s, 1)  # overtake on the left when the leader is slow

        steer = self._steer(world, s, now)
        accel = self._accel(world, ego.speed, now)
        hard_brake = self.hard_brake
        if hard_brake is not None and hard_brake[0] <= now < hard_brake[0] + hard_brake[1]:
            return steer, 0.0, float(hard_brake[2])
        if accel >= 0:
            push = MAX_ACCEL * max(0.05, 1.0 - ego.speed / TOP_SPEED)
            throttle = float(np.clip((accel + 0.15 + 0.0004 * ego.speed**2) / push, 0.0, 1.0))
            brake = 0.0
        else:
            throttle, brake = 0.0, float(np.clip(-accel / MAX_BRAKE, 0.0, 1.0))
        self._throttle = 0.5 * self._throttle + 0.5 * throttle  # a foot does not jump
        return steer, self._throttle if brake == 0.0 else 0.0, brake

    def _change_lane(self, world: SyntheticWorld, s: float, side: int) -> bool:
        """Aim at the neighbouring same-direction lane on `side` (+1 left) if it exists and is free."""
        target = self.target_lane + side
        if not 0 <= target < world.road.layout.forward_lanes:
            return True  # no such lane: drop the plan
        if not self.careless and not world.lane_is_free(target, s - 12.0, s + 15.0):
            return False
        self.target_lane, self.last_lane_change = int(target), world.time
        self.lane_changes += 1
        return True

    def _steer(self, world: SyntheticWorld, s: float, now: float) -> float:
        """Pure pursuit (Coulter 1992) towards a point on the target lane ahead."""
        ego, road = world.ego, world.road
        lookahead = float(np.clip(0.9 * ego.speed + 4.0, 6.0, 30.0))
        weave = self.weave_m * math.sin(2 * math.pi * now / self.weave_period_s)
        x, y, _ = road.to_world(s + lookahead, float(road.layout.lane_center(self.target_lane)) + weave)
        dx, dy = float(x) - ego.x, float(y) - ego.y
        c, sn = math.cos(ego.yaw), math.sin(ego.yaw)
        ahead, left = c * dx + sn * dy, -sn * dx + c * dy
        curvature = 2.0 * left / max(ahead**2 + left**2, 1e-6)
        return float(np.clip(math.atan(WHEELBASE_M * curvature), -MAX_STEER_RAD, MAX_STEER_RAD))

    def _accel(self, world: SyntheticWorld, speed: float, now: float) -> float:
        """IDM on a leader seen `reaction_s` ago and extrapolated at its speed back then."""
        gap, leader_speed = world.leader_in_lane(self.target_lane)
        self._perceived.append((now, gap, leader_speed, self._odometer))
        while len(self._perceived) > 1 and self._perceived[1][0] <= now - self.reaction_s:
            self._perceived.popleft()
        seen_at, old_gap, old_speed, old_odometer = self._perceived[0]
        estimate = old_gap - (self._odometer - old_odometer) + old_speed * (now - seen_at)
        distracted = self.distraction is not None and self.distraction[0] <= now < sum(self.distraction)
        if distracted:  # eyes off the road: ignore the leader and keep cruising
            estimate = math.inf
        return float(idm_accel(speed, self.cruise_speed, estimate, old_speed, self.headway, accel=2.0))
