"""Raw controls from the nuScenes CAN bus expansion, read with the devkit's `NuScenesCanBus`.

Actions (row t = what the driver did from step t to t + 1, like the pose-derived ones):
  steer        rad, steering wheel angle, + left  (-steeranglefeedback.value, 100 Hz)
  throttle     [0, 1]                             (zoe_veh_info.pedal_cc / 1000, 100 Hz)
  brake        [0, 1]                             (vehicle_monitor.brake / 126 bar, 2 Hz)
  wheel_speed  m/s                                (mean of the 4 zoe_veh_info wheel rpm x 2 pi r / 60, 100 Hz)
Messages inside a step are averaged; a step with none (the 2 Hz brake) takes the linear
interpolation at its middle. Field meanings: nuscenes-devkit python-sdk/nuscenes/can_bus/README.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sharding.errors import SourceError

CAN_ACTIONS = ("steer", "throttle", "brake", "wheel_speed")
PEDAL_FULL = 1000.0  # pedal_cc / throttle at full pedal
BRAKE_FULL_BAR = 126.0  # vehicle_monitor.brake range is [0, 126] bar
ZOE_WHEEL_RADIUS_M = 0.31  # Renault Zoe 195/55 R16 tyre: 0.62 m diameter


def can_dataroot(path: str) -> str:
    """The folder holding `can_bus/` (the devkit's convention); the `can_bus` folder itself is accepted too."""
    root = Path(path)
    if (root / "can_bus").is_dir():
        return str(root)
    if root.name == "can_bus" and root.is_dir():
        return str(root.parent)
    raise SourceError(f"--can-bus {path}: no can_bus/ folder there; give the folder that holds can_bus/ "
                      "(the nuScenes CAN bus expansion unpacks to <dataroot>/can_bus)")


def _series(bus, scene: str, message: str, key, can_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """(utime int64 [M], value float64 [M]) of one message field; refuses unreadable or unordered files."""
    where = os.path.join(can_dir, f"{scene}_{message}.json")
    try:
        rows = bus.get_messages(scene, message, print_warnings=False)
    except FileNotFoundError as error:
        raise SourceError(f"{where}: missing; the CAN bus expansion has no {message} messages for {scene} "
                          "(drop --can-bus, or use --skip-bad to leave the scene out)") from error
    except AssertionError as error:
        raise SourceError(f"{scene}: the CAN bus reader accepts only scene names like scene-0123 ({error})") from error
    except Exception as error:  # the devkit raises a bare Exception for its blacklisted scenes
        raise SourceError(f"{where}: {error} (the devkit lists this scene as having no CAN bus data; "
                          "use --skip-bad to leave it out)") from error
    if not isinstance(rows, list) or not rows:
        raise SourceError(f"{where}: expected a non-empty JSON list of messages")
    try:
        utime = np.array([row["utime"] for row in rows])
        value = np.array([key(row) for row in rows], np.float64)
    except (KeyError, TypeError) as error:
        raise SourceError(f"{where}: a message lacks the field {error}; expected utime and the fields of "
                          "the nuScenes CAN bus README") from error
    if utime.dtype.kind not in "iu":
        raise SourceError(f"{where}: utime must be integer microseconds, got {utime.dtype} values like {utime[0]!r}")
    backwards = np.flatnonzero(np.diff(utime) < 0)
    if backwards.size:
        i = int(backwards[0]) + 1
        raise SourceError(f"{where}: message {i} has utime {utime[i]} before message {i - 1}'s {utime[i - 1]}; "
                          "messages must be in time order")
    return utime.astype(np.int64), value


def resample_steps(utime: np.ndarray, value: np.ndarray, grid_us: np.ndarray) -> np.ndarray:
    """float64 [T]: mean of `value` over each step [grid[t], grid[t + 1]); the last step is as long as the others."""
    step = np.diff(grid_us).mean() if len(grid_us) > 1 else 1e5
    edges = np.append(grid_us, grid_us[-1] + step).astype(np.float64)
    index = np.searchsorted(utime, edges, side="left")
    sums = np.concatenate([[0.0], np.cumsum(value)])
    counts = np.diff(index)
    means = (sums[index[1:]] - sums[index[:-1]]) / np.maximum(counts, 1)
    middle = np.interp((edges[:-1] + edges[1:]) / 2, utime.astype(np.float64), value)
    return np.where(counts > 0, means, middle)


def read_can_actions(can_root: str, scene: str, grid_us: np.ndarray,
                     wheel_radius_m: float = ZOE_WHEEL_RADIUS_M) -> tuple[np.ndarray, dict[str, float]]:
    """float32 [T, 4] actions named CAN_ACTIONS at the shard's steps, and coverage info for the scene."""
    from nuscenes.can_bus.can_bus_api import NuScenesCanBus  # the devkit pulls in matplotlib: import on use

    bus = NuScenesCanBus(dataroot=can_root)
    can_dir = os.path.join(can_root, "can_bus")
    wheel = lambda row: np.mean([row[f"{w}_wheel_speed"] for w in ("FL", "FR", "RL", "RR")])  # noqa: E731
    streams = {
        "steer": (_series(bus, scene, "steeranglefeedback", lambda row: row["value"], can_dir), -1.0),
        "throttle": (_series(bus, scene, "zoe_veh_info", lambda row: row["pedal_cc"], can_dir), 1.0 / PEDAL_FULL),
        "brake": (_series(bus, scene, "vehicle_monitor", lambda row: row["brake"], can_dir), 1.0 / BRAKE_FULL_BAR),
        "wheel_speed": (_series(bus, scene, "zoe_veh_info", wheel, can_dir), 2 * np.pi * wheel_radius_m / 60.0),
    }
    columns, outside = [], 0
    for name in CAN_ACTIONS:
        (utime, value), scale = streams[name]
        if grid_us[-1] < utime[0] or grid_us[0] > utime[-1]:
            raise SourceError(f"{can_dir}: {scene}'s CAN messages span {utime[0]}..{utime[-1]} us, outside the "
                              f"scene's {grid_us[0]}..{grid_us[-1]} us; the files belong to another scene")
        outside = max(outside, int(((grid_us < utime[0]) | (grid_us > utime[-1])).sum()))
        columns.append(resample_steps(utime, value * scale, grid_us))
    return np.column_stack(columns).astype(np.float32), {"can_steps_outside_messages": outside}
