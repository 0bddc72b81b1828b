"""The reference simulator's low-level controller: a policy's [speed, yaw_rate] -> pedals and wheel.

A policy speaks the data's action space: `speed` (m/s) and `yaw_rate` (rad/s) describe the
motion from one step to the next, as the shards record it (distance over the step / dt, heading
change / dt). The synthetic ego is a kinematic bicycle driven by steer, throttle and brake
(`sharding.synthetic.vehicle`), so the controller inverts that model for one step: on copies of
the vehicle it solves, by bisection, for the pedal that covers the commanded distance and then for
the wheel angle that turns the commanded heading change, alternating twice (the distance depends
slightly on the steering). Commands beyond the actuators (more than full throttle or brake, a
turn sharper than the wheel allows) saturate; `tracking_error` measures what is left.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from sharding.synthetic.vehicle import MAX_STEER_RAD, EgoVehicle

BISECTIONS = 24  # halvings of each search interval: pedal to ~1e-7, wheel to ~1e-7 rad
PASSES = 2  # pedal, then wheel, twice


@dataclass(frozen=True)
class Controls:
    steer: float  # front wheel angle, rad (+ left)
    throttle: float  # [0, 1]
    brake: float  # [0, 1]


def _pedal(value: float) -> tuple[float, float]:
    """One signed pedal in [-1, 1] -> (throttle, brake)."""
    return (value, 0.0) if value >= 0 else (0.0, -value)


def _after_step(vehicle: EgoVehicle, steer: float, pedal: float, dt: float) -> EgoVehicle:
    moved = copy.copy(vehicle)
    moved.step(steer, *_pedal(pedal), dt)
    return moved


def _bisect(low: float, high: float, too_much) -> float:
    """The largest x in [low, high] with too_much(x) False, for a monotone predicate."""
    if not too_much(high):
        return high
    if too_much(low):
        return low
    for _ in range(BISECTIONS):
        middle = 0.5 * (low + high)
        if too_much(middle):
            high = middle
        else:
            low = middle
    return 0.5 * (low + high)


def control(vehicle: EgoVehicle, speed: float, yaw_rate: float, dt: float) -> Controls:
    """Pedals and wheel that move `vehicle` (not changed) over one step of `dt` s by `speed * dt`
    metres (straight-line distance) while its heading turns by `yaw_rate * dt` rad."""
    distance, turn = max(0.0, speed) * dt, yaw_rate * dt
    steer, pedal = 0.0, 0.0
    for _ in range(PASSES):
        def too_far(value: float) -> bool:
            moved = _after_step(vehicle, steer, value, dt)
            return math.hypot(moved.x - vehicle.x, moved.y - vehicle.y) > distance

        pedal = _bisect(-1.0, 1.0, too_far)

        def turns_too_much(value: float) -> bool:
            moved = _after_step(vehicle, value, pedal, dt)
            return math.remainder(moved.yaw - vehicle.yaw, 2 * math.pi) > turn

        at_rest = _after_step(vehicle, MAX_STEER_RAD, pedal, dt).yaw == _after_step(vehicle, -MAX_STEER_RAD, pedal, dt).yaw
        steer = 0.0 if at_rest else _bisect(-MAX_STEER_RAD, MAX_STEER_RAD, turns_too_much)  # no motion: wheel straight
    throttle, brake = _pedal(pedal)
    return Controls(steer, throttle, brake)


def tracking_error(vehicle: EgoVehicle, controls: Controls, speed: float, yaw_rate: float,
                   dt: float) -> tuple[float, float]:
    """(|distance error| m, |heading error| rad) of one step under `controls` against the command."""
    moved = copy.copy(vehicle)
    moved.step(controls.steer, controls.throttle, controls.brake, dt)
    distance = math.hypot(moved.x - vehicle.x, moved.y - vehicle.y)
    turn = math.remainder(moved.yaw - vehicle.yaw, 2 * math.pi)
    return abs(distance - max(0.0, speed) * dt), abs(turn - yaw_rate * dt)
