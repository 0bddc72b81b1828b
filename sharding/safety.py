"""Safety ground truth shared by every source: footprint rectangles and hazard labels.

A footprint is (centre x, y, yaw, half length, half width) in one planar frame. Overlap uses
the separating axis test; distance is the smallest vertex-to-edge distance between two
rectangles that do not overlap. Both are vectorised over agents (leading axes broadcast).
`hazard_labels` turns per-step (near-)collision events into the contract's `hazard.npy`.
"""

from __future__ import annotations

import numpy as np

_SIGNS = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]], np.float64)


def rectangle_corners(center: np.ndarray, yaw: np.ndarray, half: np.ndarray) -> np.ndarray:
    """float64 [..., 4, 2] corners, counter-clockwise; center [..., 2], yaw [...], half [..., 2]."""
    local = _SIGNS * np.asarray(half)[..., None, :]  # [..., 4, 2]
    c, s = np.cos(yaw)[..., None], np.sin(yaw)[..., None]
    x = center[..., None, 0] + c * local[..., 0] - s * local[..., 1]
    y = center[..., None, 1] + s * local[..., 0] + c * local[..., 1]
    return np.stack([x, y], axis=-1)


def rectangles_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """bool [...]: whether rectangles given by corners a, b [..., 4, 2] intersect.

    Two convex polygons are disjoint iff some edge normal of either separates their
    projections (separating axis theorem); rectangles need only two normals each.
    """
    a, b = np.broadcast_arrays(a, b)
    axes = np.concatenate([a[..., 1:3, :] - a[..., 0:2, :], b[..., 1:3, :] - b[..., 0:2, :]], axis=-2)  # [..., 4, 2]
    proj_a = np.einsum("...kj,...nj->...kn", axes, a)  # [..., 4 axes, 4 corners]
    proj_b = np.einsum("...kj,...nj->...kn", axes, b)
    separated = (proj_a.max(-1) < proj_b.min(-1)) | (proj_b.max(-1) < proj_a.min(-1))
    return ~separated.any(-1)


def _point_segment_distance(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Distance of points [..., P, 1, 2] to segments [..., 1, S, 2] -> [..., P, S]."""
    edge = end - start
    t = np.clip(((points - start) * edge).sum(-1) / np.maximum((edge * edge).sum(-1), 1e-12), 0.0, 1.0)
    closest = start + t[..., None] * edge
    return np.linalg.norm(points - closest, axis=-1)


def rectangle_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 [...]: gap between rectangles with corners a, b [..., 4, 2]; 0 where they overlap."""
    a, b = np.broadcast_arrays(a, b)
    a_next, b_next = np.roll(a, -1, axis=-2), np.roll(b, -1, axis=-2)
    to_b = _point_segment_distance(a[..., :, None, :], b[..., None, :, :], b_next[..., None, :, :])
    to_a = _point_segment_distance(b[..., :, None, :], a[..., None, :, :], a_next[..., None, :, :])
    gap = np.minimum(to_b.min(axis=(-1, -2)), to_a.min(axis=(-1, -2)))
    return np.where(rectangles_overlap(a, b), 0.0, gap)


def hazard_labels(events: np.ndarray, horizon_steps: int) -> np.ndarray:
    """uint8 [T]: 1 where any of events[t : t + horizon_steps + 1] (bool [T]) is set."""
    padded = np.concatenate([events.astype(np.uint8), np.zeros(horizon_steps, np.uint8)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, horizon_steps + 1)
    return windows.max(axis=1).astype(np.uint8)
