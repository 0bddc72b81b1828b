"""Static roadside objects: trees, poles, signs and buildings, placed once per scene.

They never move, so their apparent motion is pure parallax from the ego's own motion: near
poles sweep fast, far buildings slowly, which is what lets a model read speed from video.
"""

from __future__ import annotations

import numpy as np

from sharding.synthetic.boxes import BUILDING, FOLIAGE, PLAIN, BoxSet
from sharding.synthetic.road import Road

_BUILDING_COLORS = np.array([[0.72, 0.66, 0.56], [0.55, 0.55, 0.58], [0.62, 0.36, 0.28],
                             [0.80, 0.78, 0.72], [0.45, 0.50, 0.56]], np.float32)
_SIGN_COLORS = np.array([[0.15, 0.3, 0.75], [0.85, 0.85, 0.85], [0.8, 0.15, 0.12], [0.1, 0.5, 0.2]], np.float32)


def _positions(rng: np.random.Generator, length: float, mean_gap: float, min_gap: float) -> np.ndarray:
    """Arc lengths along [0, length] with random gaps of at least `min_gap` metres."""
    gaps = min_gap + rng.exponential(max(mean_gap - min_gap, 1e-3), size=int(length / min_gap) + 1)
    s = np.cumsum(gaps) - rng.uniform(0, gaps[0])
    return s[s < length]


class _Builder:
    """Collects boxes given in road coordinates (s, d) and converts them to the world frame."""

    def __init__(self, road: Road):
        self.road = road
        self.rows: list[tuple] = []

    def add(self, s, d, bottom, top, length, width, color, material, yaw_offset=0.0) -> None:
        """Boxes at arrays s, d (m), aligned with the road plus `yaw_offset` (rad)."""
        s, d, bottom, top, length, width, yaw_offset = np.broadcast_arrays(s, d, bottom, top, length, width, yaw_offset)
        color = np.broadcast_to(np.asarray(color, np.float32), (s.size, 3))
        self.rows.append((s.ravel(), d.ravel(), bottom.ravel(), top.ravel(), length.ravel(), width.ravel(),
                          yaw_offset.ravel(), color, np.full(s.size, material, np.int8)))

    def build(self) -> BoxSet:
        s, d, bottom, top, length, width, yaw_offset, color, material = (np.concatenate(c) for c in zip(*self.rows))
        x, y, heading = self.road.to_world(s, d)
        boxes = BoxSet(
            center=np.stack([x, y], axis=1).astype(np.float32),
            bottom=bottom.astype(np.float32),
            top=top.astype(np.float32),
            half_size=np.stack([length, width], axis=1).astype(np.float32) / 2,
            yaw=(heading + yaw_offset).astype(np.float32),
            color=color.astype(np.float32),
            material=material,
        )
        return boxes.select(self._clear_of_road(boxes))

    def _clear_of_road(self, boxes: BoxSet) -> np.ndarray:
        """Indices of boxes whose footprint stays off the paved road (bends can swing it in)."""
        corners = boxes.corners()[:, :4, :2]  # [K, 4, 2]
        _, d, valid = self.road.to_frenet(corners[..., 0], corners[..., 1], self._s_of_rows()[:, None])
        paved = self.road.layout.half_width + self.road.layout.shoulder
        return np.flatnonzero(~((np.abs(d) < paved) & valid).any(axis=1))

    def _s_of_rows(self) -> np.ndarray:
        return np.concatenate([row[0] for row in self.rows])


def roadside_boxes(rng: np.random.Generator, road: Road, urban: bool) -> BoxSet:
    """All static objects along the road, in the world frame.

    Urban scenes: buildings behind sidewalks, street lights, a few trees and signs.
    Rural scenes: trees of varying density, sometimes utility poles, rare houses, signs.
    """
    builder = _Builder(road)
    layout = road.layout
    edge = layout.half_width + layout.shoulder + layout.sidewalk
    for side in (1.0, -1.0):
        # poles: street lights in towns, wooden utility poles on some country roads
        if urban or rng.random() < 0.5:
            s = _positions(rng, road.length, 35.0 if urban else 50.0, 25.0)
            color = (0.55, 0.56, 0.58) if urban else (0.36, 0.27, 0.18)
            builder.add(s, side * (edge + rng.uniform(0.4, 1.2)), 0.0, rng.uniform(6.0, 8.5), 0.25, 0.25, color, PLAIN)
        # trees: a trunk plus a canopy box
        s = _positions(rng, road.length, rng.uniform(25.0, 60.0) if urban else rng.uniform(6.0, 25.0), 4.0)
        d = side * (edge + rng.uniform(1.5, 3.0 if urban else 25.0, size=s.size))
        height = rng.uniform(4.0, 9.0, size=s.size)
        crown = rng.uniform(2.0, 5.0, size=s.size)
        builder.add(s, d, 0.0, height * 0.45, 0.35, 0.35, (0.33, 0.24, 0.16), PLAIN)
        leaves = rng.uniform([0.12, 0.28, 0.08], [0.3, 0.45, 0.18], size=(s.size, 3))
        builder.add(s, d, height * 0.35, height, crown, crown, leaves, FOLIAGE, rng.uniform(0, np.pi / 2, size=s.size))
        # buildings: set back from the road; lines of them in town, a lone house in the country
        s = _positions(rng, road.length, 24.0 if urban else 250.0, 14.0)
        depth = rng.uniform(8.0, 16.0, size=s.size)
        d = side * (edge + rng.uniform(2.0, 6.0 if urban else 30.0, size=s.size) + depth / 2)
        height = rng.uniform(6.0, 24.0, size=s.size) if urban else rng.uniform(4.0, 8.0, size=s.size)
        color = _BUILDING_COLORS[rng.integers(0, len(_BUILDING_COLORS), size=s.size)]
        builder.add(s, d, 0.0, height, rng.uniform(8.0, 13.0, size=s.size), depth, color, BUILDING)
        # signs: a post and a plate facing oncoming traffic of that side
        s = _positions(rng, road.length, 120.0, 40.0)
        d = side * (edge + 0.8)
        plate = _SIGN_COLORS[rng.integers(0, len(_SIGN_COLORS), size=s.size)]
        builder.add(s, d, 0.0, 2.2, 0.12, 0.12, (0.6, 0.6, 0.6), PLAIN)
        builder.add(s, d, 2.0, 2.9, 0.08, 0.9, plate, PLAIN)
    return builder.build()
