"""CAN bus files of an exported synthetic scene, as nuscenes-devkit's `NuScenesCanBus` reads them.

One JSON list per message type, `<root>/can_bus/<scene>_<message>.json`, each message with an
integer `utime` (README of nuscenes/can_bus). Controls are held over a simulation step (the
simulator applies them that way), so the 100 Hz streams are exact; `vehicle_monitor` is 2 Hz
like the real one. Signs follow the real car: steering angles are positive to the right.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from pyquaternion import Quaternion

from sharding.nuscenes_layout.can_bus import BRAKE_FULL_BAR, PEDAL_FULL, ZOE_WHEEL_RADIUS_M
from sharding.synthetic import SceneRecord

STEERING_RATIO = 15.0  # steering wheel angle / front wheel angle of the exported car
RATES_HZ = {"pose": 50.0, "steeranglefeedback": 100.0, "zoe_veh_info": 100.0, "ms_imu": 100.0, "vehicle_monitor": 2.0}


def yaw_of(pose: np.ndarray) -> np.ndarray:
    return np.arctan2(pose[..., 1, 0], pose[..., 0, 0])


def poses_at(record: SceneRecord, times_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ego (translation [N, 3], yaw [N]) at any times: linear between simulation steps, extrapolated at the end."""
    ts = record.timestamps_us.astype(np.float64)
    k = np.clip(np.searchsorted(ts, times_us, side="right") - 1, 0, len(ts) - 2)
    a = (np.asarray(times_us, np.float64) - ts[k]) / (ts[k + 1] - ts[k])
    xyz = record.world_from_ego[:, :3, 3]
    yaw = yaw_of(record.world_from_ego)
    turn = np.arctan2(np.sin(yaw[k + 1] - yaw[k]), np.cos(yaw[k + 1] - yaw[k]))
    return xyz[k] + a[:, None] * (xyz[k + 1] - xyz[k]), yaw[k] + a * turn


def _held(record: SceneRecord, times_us: np.ndarray, column: int) -> np.ndarray:
    """actions[:, column] held over each simulation step, at `times_us`."""
    k = np.clip(np.searchsorted(record.timestamps_us, times_us, side="right") - 1, 0, len(record.timestamps_us) - 1)
    return record.actions[k, column].astype(np.float64)


def _messages(record: SceneRecord, message: str) -> list[dict]:
    ts = record.timestamps_us
    period = 1e6 / RATES_HZ[message]
    times = (ts[0] + np.arange(int((ts[-1] - ts[0]) // period) + 1) * period).round().astype(np.int64)
    speed, yaw_rate = _held(record, times, 0), _held(record, times, 1)
    steer, throttle, brake = (_held(record, times, c) for c in (2, 3, 4))
    wheel_angle = -steer * STEERING_RATIO  # steering wheel, rad, + right
    accel = np.gradient(speed, times / 1e6) if len(times) > 1 else np.zeros_like(speed)
    rpm = speed / (2 * math.pi * ZOE_WHEEL_RADIUS_M) * 60.0
    out = []
    if message == "pose":
        xyz, yaw = poses_at(record, times)
        for i, t in enumerate(times):
            q = Quaternion(axis=[0.0, 0.0, 1.0], angle=float(yaw[i]))
            out.append({"utime": int(t), "pos": xyz[i].tolist(), "orientation": list(map(float, q.elements)),
                        "vel": [float(speed[i]), 0.0, 0.0],
                        "accel": [float(accel[i]), float(speed[i] * yaw_rate[i]), 0.0],
                        "rotation_rate": [0.0, 0.0, float(yaw_rate[i])]})
    elif message == "steeranglefeedback":
        out = [{"utime": int(t), "value": float(v)} for t, v in zip(times, wheel_angle)]
    elif message == "ms_imu":
        _, yaw = poses_at(record, times)
        out = [{"utime": int(t), "linear_accel": [float(accel[i]), float(speed[i] * yaw_rate[i]), 9.81],
                "q": list(map(float, Quaternion(axis=[0.0, 0.0, 1.0], angle=float(yaw[i])).elements)),
                "rotation_rate": [0.0, 0.0, float(yaw_rate[i])]} for i, t in enumerate(times)]
    elif message == "zoe_veh_info":
        for i, t in enumerate(times):
            wheels = {f"{w}_wheel_speed": float(rpm[i]) for w in ("FL", "FR", "RL", "RR")}
            out.append({"utime": int(t), **wheels, "pedal_cc": int(round(throttle[i] * PEDAL_FULL)),
                        "odom_speed": float(speed[i] * 3.6), "longitudinal_accel": float(accel[i]),
                        "transversal_accel": float(speed[i] * yaw_rate[i] / 9.81), "regen": 0, "odom": 0,
                        "steer_raw": float(math.degrees(wheel_angle[i])), "steer_offset_can": 0.0,
                        "steer_corrected": float(math.degrees(wheel_angle[i])), "left_solar": 0, "right_solar": 0,
                        "meanEffTorque": 0.0, "requestedTorqueAfterProc": 0.0})
    elif message == "vehicle_monitor":
        out = [{"utime": int(t), "vehicle_speed": round(float(speed[i] * 3.6), 2),
                "throttle": int(round(throttle[i] * PEDAL_FULL)), "brake": int(round(brake[i] * BRAKE_FULL_BAR)),
                "brake_switch": 2 if brake[i] > 0 else 1, "steering": round(math.degrees(wheel_angle[i]), 1),
                "steering_speed": 0.0, "yaw_rate": round(math.degrees(yaw_rate[i]), 1), "gear_position": 7,
                "left_signal": 0, "right_signal": 0, "available_distance": 150, "battery_level": 80,
                "rear_left_rpm": float(rpm[i]), "rear_right_rpm": float(rpm[i])} for i, t in enumerate(times)]
    return out


def write_can_bus(can_dir: Path, scene_name: str, record: SceneRecord) -> None:
    """Write every message type of one scene, plus the derived `meta` and `route` files."""
    can_dir.mkdir(parents=True, exist_ok=True)
    meta = {}
    for message in RATES_HZ:
        rows = _messages(record, message)
        (can_dir / f"{scene_name}_{message}.json").write_text(json.dumps(rows))
        span = (rows[-1]["utime"] - rows[0]["utime"]) / 1e6 if len(rows) > 1 else 0.0
        meta[message] = {"message_count": len(rows), "message_freq": len(rows) / span if span else 0.0,
                         "timespan": span}
    (can_dir / f"{scene_name}_meta.json").write_text(json.dumps(meta))
    route = record.world_from_ego[:, :2, 3]
    (can_dir / f"{scene_name}_route.json").write_text(json.dumps(route.tolist()))
