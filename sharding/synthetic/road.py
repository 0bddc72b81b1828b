"""Road geometry: a centreline given by its curvature along the arc length, plus lanes.

Coordinates along the road are Frenet-style (s, d): s metres along the centreline, d metres to
its left. Lane 0 is the rightmost; on a two-way road the leftmost lanes carry oncoming traffic
(right-hand traffic). Queries are vectorised, so the renderer maps every ground pixel at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_LANES = 6  # most lanes of a road, both directions (WorldConfig.lanes_max; road.npy has a row for each)
SAMPLE_SPACING_M = 0.5  # centreline table resolution; the linear correction keeps errors < 1 mm
_FRENET_ITERATIONS = 3  # from the tangent guess, enough for cm accuracy within 250 m on 125 m bends


@dataclass(frozen=True)
class LaneLayout:
    """Cross-section of the road, identical along its length (metres)."""

    lanes: int  # total lanes, both directions
    oncoming: int  # leftmost lanes driving against s (0 for a one-way road)
    lane_width: float = 3.5
    shoulder: float = 1.5  # paved strip outside each edge line
    sidewalk: float = 0.0  # raised walkway beyond the shoulder (0: grass verge instead)

    @property
    def half_width(self) -> float:
        """Distance from the centreline to each outer edge line."""
        return self.lanes * self.lane_width / 2.0

    @property
    def forward_lanes(self) -> int:
        return self.lanes - self.oncoming

    def lane_center(self, lane: int | np.ndarray) -> float | np.ndarray:
        """d of a lane's centre line."""
        return -self.half_width + (np.asarray(lane) + 0.5) * self.lane_width

    def lane_direction(self, lane: int | np.ndarray) -> int | np.ndarray:
        """+1 where traffic drives towards +s, -1 on oncoming lanes."""
        return np.where(np.asarray(lane) < self.forward_lanes, 1, -1)

    def lane_at(self, d: float | np.ndarray) -> np.ndarray:
        """Index of the lane containing lateral offset d (clipped to the outer lanes)."""
        lane = np.floor((np.asarray(d) + self.half_width) / self.lane_width)
        return np.clip(lane, 0, self.lanes - 1).astype(np.int64)


class Road:
    """A planar road: centreline table + lane layout.

    The centreline is sampled every SAMPLE_SPACING_M metres into `table` float64 [N, 5] with
    columns (x, y, tangent x, tangent y, curvature), s = index * SAMPLE_SPACING_M.
    """

    def __init__(self, curvature: np.ndarray, layout: LaneLayout, start_xy=(0.0, 0.0), start_heading: float = 0.0):
        """curvature: float [N] in 1/m (+ = turning left) at s = 0, ds, 2 ds, ..."""
        curvature = np.asarray(curvature, dtype=np.float64)
        heading = start_heading + np.concatenate([[0.0], np.cumsum(curvature[:-1]) * SAMPLE_SPACING_M])
        # midpoint headings integrate the arc to second order
        mid = heading[:-1] + 0.5 * curvature[:-1] * SAMPLE_SPACING_M
        steps = SAMPLE_SPACING_M * np.stack([np.cos(mid), np.sin(mid)], axis=1)
        xy = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)]) + np.asarray(start_xy, dtype=np.float64)
        self.table = np.column_stack([xy, np.cos(heading), np.sin(heading), curvature])
        # contiguous columns gather fastest; float32 ones serve per-pixel queries (mm precision)
        self._columns = {np.dtype(np.float64): tuple(np.ascontiguousarray(c) for c in self.table.T),
                         np.dtype(np.float32): tuple(np.ascontiguousarray(c, np.float32) for c in self.table.T)}
        self.heading = heading
        self.layout = layout

    @property
    def length(self) -> float:
        return (len(self.table) - 1) * SAMPLE_SPACING_M

    @classmethod
    def random(cls, rng: np.random.Generator, length_m: float, layout: LaneLayout, max_curvature: float) -> Road:
        """Straight runs and constant-curvature arcs joined by linear curvature ramps (clothoids).

        The heading stays within +-70 deg of the start so the road never folds back on itself,
        which keeps the nearest-centreline projection unambiguous.
        """
        count = int(math.ceil(length_m / SAMPLE_SPACING_M)) + 1
        pieces: list[np.ndarray] = []
        kappa, heading, total = 0.0, 0.0, 0
        while total < count:
            if max_curvature <= 0 or rng.random() < 0.35:
                target = 0.0
            else:
                radius = rng.uniform(1.0 / max_curvature, max(4.0 / max_curvature, 600.0))
                # turn back towards the start heading once it drifts far
                sign = -np.sign(heading) if abs(heading) > math.radians(35) else rng.choice([-1.0, 1.0])
                target = sign / radius
            ramp = int(rng.uniform(20.0, 50.0) / SAMPLE_SPACING_M)
            hold = int(rng.uniform(30.0, 140.0) / SAMPLE_SPACING_M)
            segment = np.concatenate([np.linspace(kappa, target, ramp, endpoint=False), np.full(hold, target)])
            # cut the arc short where the heading would pass +-70 deg
            turned = heading + np.cumsum(segment) * SAMPLE_SPACING_M
            over = np.flatnonzero(np.abs(turned) > math.radians(70))
            if over.size:
                segment = segment[: max(over[0], 1)]
            pieces.append(segment)
            heading += float(segment.sum()) * SAMPLE_SPACING_M
            kappa = float(segment[-1])
            total += len(segment)
        curvature = np.concatenate(pieces)[:count]
        start_xy = rng.uniform(-500.0, 500.0, size=2)
        return cls(curvature, layout, start_xy=start_xy, start_heading=float(rng.uniform(-math.pi, math.pi)))

    def _lookup(self, s: np.ndarray) -> tuple[np.ndarray, ...]:
        """Centre x, y, tangent x, y and curvature at arc lengths s (any shape), clamped to the road."""
        columns = self._columns.get(s.dtype, self._columns[np.dtype(np.float64)])
        nearest = np.minimum(np.maximum(np.rint(s * (1.0 / SAMPLE_SPACING_M)), 0), len(self.table) - 1)
        index = nearest.astype(np.intp)
        x, y, tx, ty, kappa = (column[index] for column in columns)  # each shaped like s
        offset = s - nearest * SAMPLE_SPACING_M  # |offset| <= ds / 2 inside the road
        return x + tx * offset, y + ty * offset, tx, ty, kappa

    def to_world(self, s: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(s, d) -> world x, y and the road heading (rad) there. Inputs broadcast together."""
        s, d = np.broadcast_arrays(np.asarray(s, dtype=np.float64), np.asarray(d, dtype=np.float64))
        x, y, tx, ty, _ = self._lookup(s.reshape(-1))
        x, y = x - ty * d.reshape(-1), y + tx * d.reshape(-1)  # the left normal is (-ty, tx)
        return x.reshape(s.shape), y.reshape(s.shape), np.arctan2(ty, tx).reshape(s.shape)

    def heading_at(self, s: np.ndarray | float) -> np.ndarray:
        """Road heading (rad) at arc length s."""
        _, _, tx, ty, _ = self._lookup(np.atleast_1d(np.asarray(s, dtype=np.float64)))
        return np.arctan2(ty, tx).reshape(np.shape(s))

    def to_frenet(self, x: np.ndarray, y: np.ndarray, s_guess: float | np.ndarray) -> tuple[np.ndarray, ...]:
        """World points -> (s, d, valid), all shaped like x.

        Newton's method on (p - c(s)) . t(s) = 0, started from the projection on the tangent at
        `s_guess` (a scalar such as the ego's s, or one guess per point). `valid` is False where the
        projection did not converge (points on the inside of a bend beyond its centre of
        curvature, or off either end of the road); treat those as off-road.
        """
        x, y = np.asarray(x), np.asarray(y)
        cx, cy, tx, ty, _ = self._lookup(np.asarray(s_guess, dtype=x.dtype))
        s = s_guess + (x - cx) * tx + (y - cy) * ty
        for _ in range(_FRENET_ITERATIONS):
            cx, cy, tx, ty, kappa = self._lookup(s)
            dx, dy = x - cx, y - cy
            along = dx * tx + dy * ty
            d = dy * tx - dx * ty
            # d/ds of the tangential residual is -(1 - kappa d); keep the step bounded near the focus
            s = s + along / np.maximum(1.0 - kappa * d, 0.2)
        cx, cy, tx, ty, _ = self._lookup(s)
        dx, dy = x - cx, y - cy
        along = dx * tx + dy * ty
        d = dy * tx - dx * ty
        valid = (np.abs(along) < 0.5) & (s >= 0.0) & (s <= self.length)
        return s, d, valid
