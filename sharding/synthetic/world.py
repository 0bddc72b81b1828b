"""The synthetic driving world: road, ego, traffic, pedestrians, scenery and a camera rig.

`SyntheticWorld` is a closed-loop simulator: `step(steer, throttle, brake)` advances one
frame, `render()` draws every camera, and the ground truth (poses, agent boxes, collisions)
is exact. It holds only numpy state, so `copy.deepcopy` branches two futures from one state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sharding.contract import CLASS_PEDESTRIAN, CLASS_VEHICLE
from sharding.errors import ConfigError
from sharding.safety import rectangle_corners, rectangle_distance, rectangles_overlap
from sharding.synthetic.boxes import BoxSet
from sharding.synthetic.camera import RigConfig
from sharding.synthetic.ground import GroundStyle
from sharding.synthetic.render import Renderer
from sharding.synthetic.road import MAX_LANES, LaneLayout, Road
from sharding.synthetic.road_lines import road_polylines
from sharding.synthetic.scenery import roadside_boxes
from sharding.synthetic.traffic import Obstacles, Pedestrians, Vehicles
from sharding.synthetic.vehicle import EgoVehicle
from sharding.synthetic.weather import LIGHTINGS, WEATHERS, Atmosphere

START_S_M = 60.0  # where the ego starts along the road (room behind it for traffic)


@dataclass
class WorldConfig:
    """How scenes of the synthetic world are drawn (Hydra schema of `source.world.*`)."""

    fps: float = 10.0  # simulation and camera rate, Hz
    steps: int = 64  # frames per scene
    lanes_min: int = 2  # fewest lanes of a road (both directions)
    lanes_max: int = 4  # most lanes of a road
    lane_width_m: float = 3.5
    max_curvature: float = 0.008  # sharpest bend, 1/m (0.008: 125 m radius); 0 gives straight roads
    max_vehicles: int = 10  # other vehicles per scene (drawn from [max/3, max])
    max_pedestrians: int = 4  # pedestrians per scene (drawn from [0, max])
    lead_brake_chance: float = 0.4  # chance that the car ahead of the ego brakes hard once
    cut_in_chance: float = 0.4  # chance that a car in a neighbouring lane cuts in ahead of the ego
    crossing_chance: float = 0.35  # chance that a pedestrian crosses in front of the ego
    hazard_horizon_s: float = 2.0  # hazard[t] = 1 if a (near-)collision happens within this time
    near_collision_m: float = 0.5  # ego-agent gap (m) that counts as a near-collision
    ttc_threshold_s: float = 1.5  # time-to-collision (s) that counts as a near-collision
    view_distance_m: float = 150.0  # objects farther away are not drawn (fog hides them anyway)
    lighting: str = "random"  # random, day, overcast, dusk or night
    weather: str = "random"  # random, clear, fog or rain

    def __post_init__(self) -> None:
        checks = {
            "fps": (self.fps > 0, "a positive rate in Hz"),
            "steps": (self.steps >= 2, "at least 2 frames"),
            "lanes_min": (1 <= self.lanes_min <= MAX_LANES, f"between 1 and {MAX_LANES}"),
            "lanes_max": (self.lanes_min <= self.lanes_max <= MAX_LANES,
                          f"between lanes_min={self.lanes_min} and {MAX_LANES}"),
            "lane_width_m": (2.0 <= self.lane_width_m <= 6.0, "between 2 and 6 metres"),
            "max_curvature": (0.0 <= self.max_curvature <= 0.05, "in [0, 0.05] 1/m (0: straight roads)"),
            "max_vehicles": (self.max_vehicles >= 0, ">= 0"),
            "max_pedestrians": (self.max_pedestrians >= 0, ">= 0"),
            "lead_brake_chance": (0.0 <= self.lead_brake_chance <= 1.0, "a probability in [0, 1]"),
            "cut_in_chance": (0.0 <= self.cut_in_chance <= 1.0, "a probability in [0, 1]"),
            "crossing_chance": (0.0 <= self.crossing_chance <= 1.0, "a probability in [0, 1]"),
            "hazard_horizon_s": (self.hazard_horizon_s >= 0, ">= 0 seconds"),
            "near_collision_m": (self.near_collision_m >= 0, ">= 0 metres"),
            "ttc_threshold_s": (self.ttc_threshold_s >= 0, ">= 0 seconds"),
            "view_distance_m": (self.view_distance_m >= 10, ">= 10 metres"),
            "lighting": (self.lighting in ("random", *LIGHTINGS), f"one of random, {', '.join(LIGHTINGS)}"),
            "weather": (self.weather in ("random", *WEATHERS), f"one of random, {', '.join(WEATHERS)}"),
        }
        for key, (ok, fix) in checks.items():
            if not ok:
                raise ConfigError(f"world.{key}={getattr(self, key)!r} is invalid; use {fix}")


class SyntheticWorld:
    """One scene of the synthetic world, stepped in closed loop. Deterministic for a seed."""

    def __init__(self, world: WorldConfig, rig: RigConfig, seed: int):
        self.config, self.rig, self.seed = world, rig, seed
        self.dt = 1.0 / world.fps
        rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
        rng = rngs[0]
        lanes = int(rng.integers(world.lanes_min, world.lanes_max + 1))
        two_way = lanes >= 2 and rng.random() < 0.5
        self.urban = bool(rng.random() < 0.4)
        sidewalk = float(rng.uniform(1.8, 3.5)) if self.urban else 0.0
        layout = LaneLayout(lanes, lanes // 2 if two_way else 0, world.lane_width_m,
                            shoulder=float(rng.uniform(0.8, 2.5)), sidewalk=sidewalk)
        speed = float(rng.uniform(6.0, 24.0) * (0.7 if self.urban else 1.0))
        length = START_S_M + world.steps * self.dt * 40.0 + world.view_distance_m + 60.0
        self.road = Road.random(rngs[1], length, layout, world.max_curvature)

        ego_lane = int(rng.integers(0, layout.forward_lanes))
        x, y, heading = self.road.to_world(START_S_M, layout.lane_center(ego_lane))
        self.ego = EgoVehicle(float(x), float(y), float(heading), speed)
        self._ego_sd = (START_S_M, float(layout.lane_center(ego_lane)))  # road coordinates, updated each step
        self.time = 0.0
        self.frame = 0  # steps taken

        traffic_rng = rngs[2]
        count = int(traffic_rng.integers(math.ceil(world.max_vehicles / 3), world.max_vehicles + 1))
        self.vehicles = Vehicles.spawn(traffic_rng, layout, count, START_S_M, ego_lane, speed, self.road.length)
        walkers = int(traffic_rng.integers(0, world.max_pedestrians + 1))
        self.pedestrians = Pedestrians.spawn(traffic_rng, layout, walkers, START_S_M, world.crossing_chance, count)
        self._next_track_id = count + walkers
        # scripted traffic events: each is armed from its time on and fires at the first chance
        lead_brake, cut_in = traffic_rng.random(2) < [world.lead_brake_chance, world.cut_in_chance]
        self.pending = {
            "lead_brake": float(traffic_rng.uniform(0.5, 4.0)) if lead_brake else None,
            "cut_in": float(traffic_rng.uniform(0.5, 4.5)) if cut_in else None,
        }
        self.lead_brake_s = float(traffic_rng.uniform(1.5, 3.0))
        self.event_rng = traffic_rng
        self.events: list[dict] = []
        self._collided = False

        self.atmosphere = Atmosphere.sample(rngs[3], world.lighting, world.weather)
        ground = GroundStyle.sample(rngs[3], wet=self.atmosphere.weather == "rain")
        scenery = roadside_boxes(rngs[4], self.road, self.urban)
        self.renderer = Renderer(rig, self.road, scenery, self.atmosphere, ground, rngs[5], world.view_distance_m)

    # ----------------------------------------------------------------- simulation
    def step(self, steer: float, throttle: float, brake: float) -> None:
        """Advance 1 / fps seconds: the ego under the given controls, then everyone else."""
        self.ego.step(steer, throttle, brake, self.dt)
        s, d, _ = self.road.to_frenet(np.array(self.ego.x), np.array(self.ego.y), self._ego_sd[0])
        self._ego_sd = (float(s), float(d))
        for name, start in self.pending.items():
            if start is not None and self.time >= start and self._fire(name):
                self.pending[name] = None
        others = Obstacles.concat([self._ego_obstacle(), self.pedestrians.as_obstacles()])
        self.vehicles.step(self.dt, self.time, others)
        self.pedestrians.step(self.dt, self._ego_sd[0], self.ego.speed, self.road.layout)
        self.time += self.dt
        self.frame += 1
        self._collided = self._resolve_collisions()

    def _fire(self, event: str) -> bool:
        """Start a scripted event if a suitable vehicle is there now; returns whether it started.

        lead_brake: the car ahead in the ego's lane (within 60 m) brakes hard.
        cut_in: a car in a neighbouring same-direction lane, just ahead of the ego's front
        (3-15 m) and not much faster, swerves into the ego's lane and slows down.
        """
        s, d = self.ego_frenet()
        layout, v = self.road.layout, self.vehicles
        ego_lane, lanes = int(layout.lane_at(d)), layout.lane_at(v.d)
        gap = v.s - v.length / 2 - (s + self.ego.length - self.ego.rear_overhang)
        if event == "lead_brake":
            candidates = (lanes == ego_lane) & (gap > 0) & (gap < 60.0)
        else:
            candidates = (np.abs(lanes - ego_lane) == 1) & (gap > 3.0) & (gap < 15.0) & (v.speed < self.ego.speed + 3.0)
        candidates &= (v.direction > 0) & ~v.stopped & (lanes < layout.forward_lanes)
        if not candidates.any():
            return False
        index = int(np.flatnonzero(candidates)[np.argmin(gap[candidates])])
        if event == "lead_brake":
            v.brake_until[index] = self.time + self.lead_brake_s
        else:
            own_offset = v.target_d[index] - layout.lane_center(lanes[index])
            v.target_d[index] = float(layout.lane_center(ego_lane)) + own_offset
            v.desired_speed[index] = min(v.desired_speed[index], self.ego.speed) * self.event_rng.uniform(0.7, 0.95)
        self.events.append({"event": event, "time_s": round(self.time, 2), "track_id": int(v.track_id[index])})
        return True

    def _ego_obstacle(self) -> Obstacles:
        s, d = self.ego_frenet()
        relative = self.ego.yaw - float(self.road.heading_at(s))
        center_s = s + self.ego.center_offset * math.cos(relative)
        return Obstacles(np.array([center_s]), np.array([d]), np.array([self.ego.speed * math.cos(relative)]),
                         np.array([self.ego.length / 2]), np.array([self.ego.width / 2]))

    def _agent_footprints(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World rectangles of all agents, vehicles first: centres [N, 2], yaws [N], half sizes [N, 2]."""
        boxes = BoxSet.concat([self.vehicles.boxes(self.road), self.pedestrians.boxes(self.road)])
        return boxes.center.astype(np.float64), boxes.yaw.astype(np.float64), boxes.half_size.astype(np.float64)

    def _resolve_collisions(self) -> bool:
        """Detect ego-agent overlap; whoever collides stops where they are."""
        if not self.num_agents:
            return False
        center, yaw, half = self.ego.footprint()
        overlap = rectangles_overlap(rectangle_corners(center, yaw, half), rectangle_corners(*self._agent_footprints()))
        if overlap.any():
            self.ego.speed = 0.0
            count = len(self.vehicles)
            self.vehicles.stopped |= overlap[:count]
            self.vehicles.speed[overlap[:count]] = 0.0
            hit = overlap[count:]
            self.pedestrians.speed_s[hit], self.pedestrians.speed_d[hit] = 0.0, 0.0
            self.pedestrians.cross_when_s[hit] = np.nan
        return bool(overlap.any())

    def spawn_vehicle(self, ahead_m: float, speed: float = 0.0, lane_offset: int = 0) -> int:
        """Put a car `ahead_m` metres ahead of the ego (body centre to rear axle), in the ego's lane
        plus `lane_offset`, driving at `speed` (m/s) towards +s; returns its track id. For tests and
        closed-loop experiments (a stopped car ahead, a slow leader...)."""
        s, d = self.ego_frenet()
        lane = int(np.clip(self.road.layout.lane_at(d) + lane_offset, 0, self.road.layout.lanes - 1))
        center = float(self.road.layout.lane_center(lane))
        track_id = self._next_track_id
        self._next_track_id += 1
        car = Vehicles(
            s=np.array([s + ahead_m]), d=np.array([center]), target_d=np.array([center]), direction=np.array([1.0]),
            speed=np.array([speed]), desired_speed=np.array([max(speed, 0.0)]), headway=np.array([1.5]),
            length=np.array([4.5]), width=np.array([1.85]), height=np.array([1.5]),
            color=np.array([[0.8, 0.1, 0.1]], np.float32), brake_until=np.array([-1.0]),
            stopped=np.array([speed == 0.0]), track_id=np.array([track_id]),
        )
        self.vehicles.append(car)
        return track_id

    def inject_agent(self, kind: str, ahead_m: float, lateral_m: float, speed_mps: float, heading_rad: float) -> int:
        """Add a vehicle or a pedestrian (stress tests) and return its track id. It is placed
        `ahead_m` along the road from the ego's rear axle (its body centre) and `lateral_m` across
        the road from the ego's lateral position (+ left), moving at `speed_mps` at `heading_rad`
        from the road's direction (+ left). It renders, collides and blocks like any other agent.

        vehicle: drives along +s at speed x cos(heading) under IDM car following; a heading other
        than 0 steers it across the road towards where that heading leads over 10 m of travel
        (target_d = d + 10 tan(heading), within the carriageway), at the world's lane-change rate
        (at most 1.3 m/s sideways): a swerve or cut-in. Speed 0: a stopped car.
        pedestrian: walks at (speed cos(heading), speed sin(heading)) along and across the road,
        speed at most 3 m/s, ignoring the crossing script; it blocks traffic and stops once past
        the far kerb, like a crossing walker.
        """
        s, d = self.ego_frenet()
        s, d = s + ahead_m, d + lateral_m
        track_id = self._next_track_id
        self._next_track_id += 1
        if kind == "vehicle":
            layout = self.road.layout
            centres = layout.lane_center(np.arange(layout.lanes))
            target = float(np.clip(d + 10.0 * math.tan(max(min(heading_rad, 1.4), -1.4)), centres.min(), centres.max()))
            speed = max(speed_mps * math.cos(heading_rad), 0.0)
            self.vehicles.append(Vehicles(
                s=np.array([s]), d=np.array([d]), target_d=np.array([target]), direction=np.array([1.0]),
                speed=np.array([speed]), desired_speed=np.array([speed]), headway=np.array([1.5]),
                length=np.array([4.5]), width=np.array([1.85]), height=np.array([1.5]),
                color=np.array([[0.85, 0.85, 0.1]], np.float32), brake_until=np.array([-1.0]),
                stopped=np.array([speed == 0.0]), track_id=np.array([track_id])))
        elif kind == "pedestrian":
            speed = min(max(speed_mps, 0.0), 3.0)
            self.pedestrians.append(Pedestrians(
                s=np.array([s]), d=np.array([d]), speed_s=np.array([speed * math.cos(heading_rad)]),
                speed_d=np.array([speed * math.sin(heading_rad)]), walk_speed=np.array([speed]),
                cross_when_s=np.array([np.nan]), height=np.array([1.75]),
                color=np.array([[0.9, 0.3, 0.1]], np.float32), track_id=np.array([track_id]),
                crossing=np.array([True])))
        else:
            raise ConfigError(f"inject_agent kind={kind!r}; choose vehicle or pedestrian")
        return track_id

    # ----------------------------------------------------------------- queries
    @property
    def num_agents(self) -> int:
        return len(self.vehicles) + len(self.pedestrians)

    def ego_frenet(self) -> tuple[float, float]:
        """The ego origin (rear axle) in road coordinates (s, d), metres."""
        return self._ego_sd

    def ego_pose(self) -> np.ndarray:
        """float64 [4, 4] world_from_ego."""
        return self.ego.pose()

    def road_polylines(self) -> np.ndarray:
        """float32 [len(ROAD_LINES), ROAD_POINTS, 2]: edge and lane centre lines in the current ego
        frame, 20 m behind to 60 m ahead of the ego along the road (see road_lines.py)."""
        return road_polylines(self.road, self._ego_sd[0], self.ego_pose())

    def render(self) -> np.ndarray:
        """uint8 [V, H, W, 3] RGB, one image per camera of the rig."""
        agents = BoxSet.concat([self.vehicles.boxes(self.road), self.pedestrians.boxes(self.road)])
        return self.renderer.render(self.ego.x, self.ego.y, self.ego.yaw, self._ego_sd[0], agents, self.frame)

    def collided(self) -> bool:
        """Whether the ego's body overlapped an agent at the last step."""
        return self._collided

    def agent_boxes(self) -> np.ndarray:
        """float32 [N, len(AGENT_FIELDS)]: every agent's box in the ego frame (x, y, z = box
        centre), in track id order, so agents added later append rows."""
        center, yaw, half = self._agent_footprints()
        c, s = math.cos(self.ego.yaw), math.sin(self.ego.yaw)
        dx, dy = center[:, 0] - self.ego.x, center[:, 1] - self.ego.y
        heights = np.concatenate([self.vehicles.height, self.pedestrians.height])
        bottoms = np.concatenate([np.full(len(self.vehicles), 0.05), np.zeros(len(self.pedestrians))])
        speeds = np.concatenate([self.vehicles.speed, np.hypot(self.pedestrians.speed_s, self.pedestrians.speed_d)])
        classes = np.repeat([CLASS_VEHICLE, CLASS_PEDESTRIAN], [len(self.vehicles), len(self.pedestrians)])
        relative_yaw = np.arctan2(np.sin(yaw - self.ego.yaw), np.cos(yaw - self.ego.yaw))
        track_id = np.concatenate([self.vehicles.track_id, self.pedestrians.track_id])
        rows = np.column_stack([
            track_id, classes, c * dx + s * dy, -s * dx + c * dy, bottoms + heights / 2,
            2 * half[:, 0], 2 * half[:, 1], heights, relative_yaw, speeds,
        ]).astype(np.float32)
        return rows[np.argsort(track_id, kind="stable")]  # a row index keeps meaning one agent

    def leader_in_lane(self, lane: int) -> tuple[float, float]:
        """Bumper gap (m, inf if none) to and speed along the road of the nearest agent ahead of the
        ego's front in `lane`, counting walkers on the carriageway."""
        s, _ = self.ego_frenet()
        front = s + self.ego.length - self.ego.rear_overhang
        obstacles = Obstacles.concat([self.vehicles.as_obstacles(), self.pedestrians.as_obstacles()])
        center = self.road.layout.lane_center(lane)
        in_lane = np.abs(obstacles.d - center) < obstacles.half_width + self.ego.width / 2 + 0.4
        gap = np.where(in_lane & (obstacles.s > s), obstacles.s - obstacles.half_length - front, np.inf)
        if not gap.size or not np.isfinite(gap.min()):
            return math.inf, 0.0
        nearest = int(np.argmin(gap))
        return float(gap[nearest]), float(obstacles.speed_s[nearest])

    def lane_is_free(self, lane: int, s_from: float, s_to: float) -> bool:
        """No vehicle body in `lane` overlaps [s_from, s_to] (m along the road)."""
        v = self.vehicles
        mine = self.road.layout.lane_at(v.d) == lane
        return not (mine & (v.s + v.length / 2 > s_from) & (v.s - v.length / 2 < s_to)).any()

    def danger(self) -> tuple[float, float]:
        """(Smallest ego-agent gap in m, time to collision in s): the near-collision measures.

        Time to collision: the first of the times 0.1, 0.2, ... ttc_threshold_s at which the
        ego's body overlaps an agent's, everyone keeping their velocity along and across the
        road (so bends do not look like collision courses); inf if none does within the threshold.
        """
        if not self.num_agents:
            return math.inf, math.inf
        center, yaw, half = self.ego.footprint()
        agent_center, agent_yaw, agent_half = self._agent_footprints()
        gap = float(rectangle_distance(rectangle_corners(center, yaw, half),
                                       rectangle_corners(agent_center, agent_yaw, agent_half)).min())
        times = np.arange(1, int(round(self.config.ttc_threshold_s / 0.1)) + 1) * 0.1
        if not times.size:
            return gap, math.inf
        t = times[:, None]
        ego_s, ego_d = self.ego_frenet()
        relative = self.ego.yaw - float(self.road.heading_at(ego_s))
        x, y, heading = self.road.to_world(ego_s + self.ego.speed * math.cos(relative) * times,
                                           ego_d + self.ego.speed * math.sin(relative) * times)
        ego_yaw = heading + relative
        ego_center = np.stack([x + self.ego.center_offset * np.cos(ego_yaw),
                               y + self.ego.center_offset * np.sin(ego_yaw)], axis=-1)
        ego_future = rectangle_corners(ego_center, ego_yaw, half)[:, None]  # [T, 1, 4, 2]
        v, p = self.vehicles, self.pedestrians
        s = np.concatenate([v.s + v.direction * v.speed * t, p.s + p.speed_s * t], axis=1)  # [T, N]
        d = np.concatenate([v.d + v.lateral_speed() * t, p.d + p.speed_d * t], axis=1)
        x, y, heading = self.road.to_world(s, d)
        yaw_offset = agent_yaw - self.road.heading_at(np.concatenate([v.s, p.s]))  # keeps each agent's facing
        future = rectangle_corners(np.stack([x, y], -1), heading + yaw_offset, agent_half)  # [T, N, 4, 2]
        hit = rectangles_overlap(ego_future, future).any(axis=1)
        return gap, float(times[np.argmax(hit)]) if hit.any() else math.inf

    def near_collision(self) -> bool:
        """Collision, gap below near_collision_m, or time to collision below ttc_threshold_s."""
        gap, ttc = self.danger()
        return self._collided or gap < self.config.near_collision_m or ttc <= self.config.ttc_threshold_s

    def describe(self) -> dict:
        """Plain-JSON summary of the scene (goes into meta.json)."""
        layout = self.road.layout
        return {
            "lanes": layout.lanes,
            "oncoming_lanes": layout.oncoming,
            # from lane 0 (rightmost): +1 forward (the way the ego drives), -1 oncoming
            "lane_directions": layout.lane_direction(np.arange(layout.lanes)).tolist(),
            "urban": self.urban,
            "lighting": self.atmosphere.lighting,
            "weather": self.atmosphere.weather,
            "vehicles": len(self.vehicles),
            "pedestrians": len(self.pedestrians),
            "max_abs_curvature": round(float(np.abs(self.road.table[:, 4]).max()), 5),
            "events": list(self.events),
        }
