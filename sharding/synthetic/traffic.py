"""Other road users: lane-following vehicles (IDM car following) and pedestrians.

Both live in road coordinates (s, d), which makes lanes, leaders and crossings simple
comparisons; `world.py` converts them to world boxes for rendering and collision checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sharding.synthetic.boxes import PEDESTRIAN, VEHICLE, BoxSet
from sharding.synthetic.road import LaneLayout, Road

_CAR_COLORS = np.array([[0.75, 0.08, 0.08], [0.1, 0.2, 0.6], [0.85, 0.85, 0.85], [0.12, 0.12, 0.12],
                        [0.5, 0.5, 0.52], [0.1, 0.45, 0.2], [0.9, 0.65, 0.1], [0.3, 0.55, 0.8]], np.float32)
_IDM_ACCEL, _IDM_DECEL, _IDM_GAP_M = 1.5, 2.5, 2.0  # comfortable acceleration, deceleration, standstill gap
MAX_DECEL = 9.0
PEDESTRIAN_SIZE_M = 0.55  # footprint side of a walker's box
EMERGENCY_DECEL = 8.5  # a scripted hard stop of a leader (dry road, ABS)


def idm_accel(speed, desired, gap, leader_speed, headway, accel=_IDM_ACCEL, decel=_IDM_DECEL, min_gap=_IDM_GAP_M):
    """Intelligent Driver Model (Treiber et al. 2000) acceleration (m/s^2); arrays broadcast.

    gap: bumper-to-bumper distance to the leader (inf when there is none).
    """
    closing = speed * (speed - leader_speed) / (2.0 * np.sqrt(accel * decel))
    wanted = min_gap + np.maximum(0.0, speed * headway + closing)
    free = 1.0 - (speed / np.maximum(desired, 0.1)) ** 4
    return np.clip(accel * (free - (wanted / np.maximum(gap, 0.1)) ** 2), -MAX_DECEL, accel)


@dataclass
class Obstacles:
    """Things vehicles must not drive into, in road coordinates: arrays [M]."""

    s: np.ndarray
    d: np.ndarray
    speed_s: np.ndarray  # velocity along +s
    half_length: np.ndarray  # extent along s
    half_width: np.ndarray  # extent along d

    @classmethod
    def concat(cls, parts: list[Obstacles]) -> Obstacles:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))


@dataclass
class Vehicles:
    """N vehicles following lanes (and changing lanes). Arrays [N]; sizes in metres, speeds in m/s."""

    s: np.ndarray
    d: np.ndarray
    target_d: np.ndarray  # lane centre (plus a personal offset) the vehicle steers to
    direction: np.ndarray  # +1 drives towards +s, -1 (oncoming) towards -s
    speed: np.ndarray
    desired_speed: np.ndarray
    headway: np.ndarray  # IDM time headway (s)
    length: np.ndarray
    width: np.ndarray
    height: np.ndarray
    color: np.ndarray  # [N, 3]
    brake_until: np.ndarray  # scripted hard braking lasts until this time (s)
    stopped: np.ndarray  # bool: stays put (parked, or hit by the ego)
    track_id: np.ndarray  # int

    @classmethod
    def spawn(cls, rng: np.random.Generator, layout: LaneLayout, count: int, ego_s: float, ego_lane: int,
              ego_speed: float, road_length: float, first_track_id: int = 0) -> Vehicles:
        """`count` vehicles over [ego_s - 40, ego_s + 160] m: 14 m or more apart within a lane,
        and neither beside the ego nor inside its safe following distance (the ego is the first
        entry of the placed list)."""
        lane = rng.integers(0, layout.lanes, size=count)
        s = ego_s + rng.uniform(-40.0, 160.0, size=count)
        placed_lane, placed_s = [ego_lane], [ego_s]
        for index in range(count):
            while True:
                gaps = s[index] - np.array(placed_s)
                same = np.array(placed_lane) == lane[index]
                clear_ahead = max(15.0, 1.5 * ego_speed)
                blocked = same & (np.abs(gaps) < 14.0)
                blocked[0] = (-12.0 < gaps[0] < clear_ahead) if lane[index] == ego_lane else abs(gaps[0]) < 6.0
                if not blocked.any():
                    break
                s[index] += rng.uniform(14.0, 30.0)
            placed_lane.append(lane[index])
            placed_s.append(s[index])
        direction = layout.lane_direction(lane)
        truck = rng.random(count) < 0.15
        offset = rng.uniform(-0.25, 0.25, size=count)  # nobody drives exactly on the lane centre
        desired = np.where(direction > 0, ego_speed * rng.uniform(0.6, 1.3, size=count), rng.uniform(8.0, 22.0, count))
        return cls(
            s=np.clip(s, 5.0, road_length - 5.0),
            d=layout.lane_center(lane) + offset,
            target_d=layout.lane_center(lane) + offset,
            direction=direction.astype(np.float64),
            speed=desired * rng.uniform(0.8, 1.0, size=count),
            desired_speed=np.maximum(desired, 3.0),
            headway=rng.uniform(1.0, 2.0, size=count),
            length=np.where(truck, rng.uniform(6.5, 10.0, count), rng.uniform(4.0, 4.9, count)),
            width=np.where(truck, rng.uniform(2.3, 2.5, count), rng.uniform(1.75, 1.95, count)),
            height=np.where(truck, rng.uniform(2.6, 3.4, count), rng.uniform(1.4, 1.7, count)),
            color=_CAR_COLORS[rng.integers(0, len(_CAR_COLORS), size=count)],
            brake_until=np.full(count, -1.0),
            stopped=np.zeros(count, bool),
            track_id=np.arange(first_track_id, first_track_id + count),
        )

    def __len__(self) -> int:
        return len(self.s)

    def append(self, other: Vehicles) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))

    def as_obstacles(self) -> Obstacles:
        return Obstacles(self.s, self.d, self.speed * self.direction, self.length / 2, self.width / 2)

    def leaders(self, obstacles: Obstacles) -> tuple[np.ndarray, np.ndarray]:
        """Gap (m, inf if none) to and speed of the nearest obstacle ahead in each vehicle's path.

        obstacles: M >= 1 of them (they may include the vehicles themselves). Returns two [N].
        """
        ahead = (obstacles.s[None, :] - self.s[:, None]) * self.direction[:, None]  # [N, M]
        reach = obstacles.half_width[None, :] + self.width[:, None] / 2 + 0.3  # bodies overlap sideways
        in_path = np.abs(obstacles.d[None, :] - self.d[:, None]) < reach
        gap = ahead - obstacles.half_length[None, :] - self.length[:, None] / 2
        gap = np.where(in_path & (ahead > 0.1), gap, np.inf)
        nearest = np.argmin(gap, axis=1)
        return gap[np.arange(len(self)), nearest], obstacles.speed_s[nearest] * self.direction

    def step(self, dt: float, time: float, others: Obstacles) -> None:
        """IDM car following behind the nearest of the other vehicles and `others` (ego, walkers)."""
        if not len(self):
            return
        gap, leader_speed = self.leaders(Obstacles.concat([self.as_obstacles(), others]))
        accel = idm_accel(self.speed, self.desired_speed, gap, leader_speed, self.headway)
        accel = np.where(time < self.brake_until, -EMERGENCY_DECEL, accel)  # scripted emergency stop
        new_speed = np.where(self.stopped, 0.0, np.maximum(0.0, self.speed + accel * dt))
        self.s = self.s + self.direction * 0.5 * (self.speed + new_speed) * dt
        self.d = self.d + self.lateral_speed() * dt
        self.speed = new_speed

    def lateral_speed(self) -> np.ndarray:
        """Sideways speed (m/s, along +d) towards target_d: a lane change takes about 3 s."""
        return np.where(self.speed > 0.5, np.clip(1.5 * (self.target_d - self.d), -1.3, 1.3), 0.0)

    def boxes(self, road: Road) -> BoxSet:
        """World-frame boxes, float32; yaw follows the lane's driving direction."""
        x, y, heading = road.to_world(self.s, self.d)
        yaw = heading + np.where(self.direction < 0, np.pi, 0.0)
        yaw = yaw + np.arctan2(self.lateral_speed(), np.maximum(self.speed, 0.5)) * self.direction  # nose into the turn
        return BoxSet(np.stack([x, y], 1).astype(np.float32), np.full(len(self), 0.05, np.float32),
                      self.height.astype(np.float32), (np.stack([self.length, self.width], 1) / 2).astype(np.float32),
                      yaw.astype(np.float32), self.color.astype(np.float32), np.full(len(self), VEHICLE, np.int8))


@dataclass
class Pedestrians:
    """P walkers on the sidewalks or verges; some step onto the road as the ego approaches."""

    s: np.ndarray
    d: np.ndarray
    speed_s: np.ndarray  # walking velocity along +s
    speed_d: np.ndarray  # crossing velocity along +d (0 while on the sidewalk)
    walk_speed: np.ndarray  # speed when crossing
    cross_when_s: np.ndarray  # time-to-arrival of the ego (s) at which to cross; nan: never crosses
    height: np.ndarray
    color: np.ndarray  # [P, 3]
    track_id: np.ndarray
    crossing: np.ndarray  # bool: on the carriageway right now

    @classmethod
    def spawn(cls, rng: np.random.Generator, layout: LaneLayout, count: int, ego_s: float, crossing_chance: float,
              first_track_id: int) -> Pedestrians:
        """Walkers over [ego_s + 15, ego_s + 150] m, each side; about `crossing_chance` of scenes get a crosser."""
        side = rng.choice([-1.0, 1.0], size=count)
        kerb = layout.half_width + layout.shoulder
        crosses = np.zeros(count, bool)
        if count and rng.random() < crossing_chance:
            crosses[rng.integers(0, count)] = True
        d = side * (kerb + np.where(crosses, 0.3, rng.uniform(0.5, max(layout.sidewalk, 1.5), size=count)))
        return cls(
            s=ego_s + rng.uniform(15.0, 150.0, size=count),
            d=d,
            speed_s=np.where(crosses, 0.0, rng.choice([-1.0, 0.0, 1.0], size=count) * rng.uniform(0.8, 1.6, count)),
            speed_d=np.zeros(count),
            walk_speed=rng.uniform(1.4, 2.6, size=count),
            cross_when_s=np.where(crosses, rng.uniform(2.5, 5.0, size=count), np.nan),
            height=rng.uniform(1.5, 1.95, size=count),
            color=rng.uniform(0.1, 0.9, size=(count, 3)).astype(np.float32),
            track_id=np.arange(first_track_id, first_track_id + count),
            crossing=np.zeros(count, bool),
        )

    def __len__(self) -> int:
        return len(self.s)

    def append(self, other: Pedestrians) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(other, name)]))

    def step(self, dt: float, ego_s: float, ego_speed: float, layout: LaneLayout) -> None:
        """Walk; a crosser steps out when the ego is `cross_when_s` seconds away, and stops
        crossing once past the far kerb."""
        if not len(self):
            return
        arrival = (self.s - ego_s) / max(ego_speed, 0.5)
        start = ~np.isnan(self.cross_when_s) & (arrival < self.cross_when_s) & (self.s > ego_s)
        self.speed_d = np.where(start, -np.sign(self.d) * self.walk_speed, self.speed_d)
        self.crossing |= start
        self.cross_when_s = np.where(start, np.nan, self.cross_when_s)
        far_side = self.crossing & (np.abs(self.d) > layout.half_width + layout.shoulder + 0.5) & (
            np.sign(self.d) == np.sign(self.speed_d))
        self.speed_d = np.where(far_side, 0.0, self.speed_d)
        self.crossing &= ~far_side
        self.s = self.s + self.speed_s * dt
        self.d = self.d + self.speed_d * dt

    def as_obstacles(self) -> Obstacles:
        """Only walkers on the carriageway block traffic."""
        half = np.full(len(self), PEDESTRIAN_SIZE_M / 2)
        return Obstacles(self.s[self.crossing], self.d[self.crossing], np.zeros(int(self.crossing.sum())),
                         half[self.crossing], half[self.crossing])

    def boxes(self, road: Road) -> BoxSet:
        x, y, heading = road.to_world(self.s, self.d)
        moving = np.hypot(self.speed_s, self.speed_d) > 0
        facing = np.where(moving, np.arctan2(self.speed_d, self.speed_s), -np.pi / 2 * np.sign(self.d))
        count = len(self)
        return BoxSet(np.stack([x, y], 1).astype(np.float32), np.zeros(count, np.float32),
                      self.height.astype(np.float32), np.full((count, 2), PEDESTRIAN_SIZE_M / 2, np.float32),
                      (heading + facing).astype(np.float32), self.color.astype(np.float32),
                      np.full(count, PEDESTRIAN, np.int8))
