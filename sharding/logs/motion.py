"""Ego motion from logged poses: poses at the shard's steps, and the actions derived from them.

Logs give `ego_pose` rows at sensor timestamps (12 Hz per camera, unevenly spaced across
cameras); the shard needs `world_from_ego` at its own fixed-rate steps. Translations are
interpolated linearly and rotations by quaternion slerp. Actions follow the contract: row t is
the motion from step t to t + 1 (the last row repeats the one before).
"""

from __future__ import annotations

import numpy as np

POSE_ACTIONS = ("speed", "yaw_rate", "acceleration", "curvature")
MIN_SPEED_FOR_CURVATURE = 0.5  # m/s; below it curvature is 0 (yaw rate / speed blows up at standstill)


def quaternion_matrices(q: np.ndarray) -> np.ndarray:
    """Unit quaternions (w, x, y, z) [N, 4] -> rotation matrices [N, 3, 3]."""
    w, x, y, z = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def slerp(q0: np.ndarray, q1: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Spherical interpolation between unit quaternions q0, q1 [N, 4] at fractions a [N] (shortest arc)."""
    dot = (q0 * q1).sum(-1)
    q1 = np.where(dot[:, None] < 0, -q1, q1)
    dot = np.abs(dot).clip(max=1.0)
    angle = np.arccos(dot)
    small = angle < 1e-6
    sin = np.where(small, 1.0, np.sin(angle))
    w0 = np.where(small, 1 - a, np.sin((1 - a) * angle) / sin)
    w1 = np.where(small, a, np.sin(a * angle) / sin)
    out = w0[:, None] * q0 + w1[:, None] * q1
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def interpolate_poses(times_us: np.ndarray, translations: np.ndarray, rotations: np.ndarray,
                      query_us: np.ndarray) -> np.ndarray:
    """world_from_ego float64 [T, 4, 4] at `query_us` from poses at sorted, distinct `times_us` [P].

    translations [P, 3], rotations [P, 4] (w, x, y, z). Queries outside the logged span hold the end pose.
    """
    t = times_us.astype(np.float64)
    q = np.asarray(query_us, np.float64).clip(t[0], t[-1])
    if len(t) == 1:
        k, a = np.zeros(len(q), int), np.zeros(len(q))
        nxt = k
    else:
        k = np.clip(np.searchsorted(t, q, side="right") - 1, 0, len(t) - 2)
        a = (q - t[k]) / (t[k + 1] - t[k])
        nxt = k + 1
    out = np.tile(np.eye(4), (len(q), 1, 1))
    out[:, :3, 3] = translations[k] + a[:, None] * (translations[nxt] - translations[k])
    out[:, :3, :3] = quaternion_matrices(slerp(rotations[k], rotations[nxt], a))
    return out


def yaw_of(world_from_ego: np.ndarray) -> np.ndarray:
    """Heading (rad, + left of the world x axis) of poses [..., 4, 4]."""
    return np.arctan2(world_from_ego[..., 1, 0], world_from_ego[..., 0, 0])


def smooth(values: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over `width` (odd) steps; the window shrinks at the ends (no padding bias)."""
    if width <= 1 or len(values) < 2:
        return values.astype(np.float64)
    half = width // 2
    sums = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    index = np.arange(len(values))
    lo, hi = np.maximum(index - half, 0), np.minimum(index + half + 1, len(values))
    return (sums[hi] - sums[lo]) / (hi - lo)


def pose_actions(world_from_ego: np.ndarray, dt: float, smooth_steps: int) -> np.ndarray:
    """float32 [T, 4] named POSE_ACTIONS from poses [T, 4, 4] at a fixed step `dt` seconds.

    speed (m/s, signed along the heading: negative when reversing), yaw_rate (rad/s, + left),
    both smoothed over `smooth_steps`; acceleration (m/s^2) from the smoothed speed; curvature
    (1/m) = yaw_rate / speed above MIN_SPEED_FOR_CURVATURE, else 0.
    """
    steps = len(world_from_ego)
    if steps < 2:
        return np.zeros((steps, len(POSE_ACTIONS)), np.float32)
    displacement = np.diff(world_from_ego[:, :3, 3], axis=0)  # [T-1, 3]
    yaw = yaw_of(world_from_ego)
    turn = np.arctan2(np.sin(np.diff(yaw)), np.cos(np.diff(yaw)))
    mid = yaw[:-1] + turn / 2
    forward = displacement[:, 0] * np.cos(mid) + displacement[:, 1] * np.sin(mid)
    speed = smooth(np.append(forward, forward[-1]) / dt, smooth_steps)
    yaw_rate = smooth(np.append(turn, turn[-1]) / dt, smooth_steps)
    acceleration = np.diff(speed) / dt
    acceleration = smooth(np.append(acceleration, acceleration[-1]), smooth_steps)
    moving = np.abs(speed) > MIN_SPEED_FOR_CURVATURE
    curvature = np.where(moving, yaw_rate / np.where(moving, speed, 1.0), 0.0)
    return np.column_stack([speed, yaw_rate, acceleration, curvature]).astype(np.float32)
