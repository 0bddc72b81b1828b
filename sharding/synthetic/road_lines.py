"""The road as the shard's `road.npy` rows: edge lines and lane centre lines in the ego frame.

Each line is sampled at fixed arc lengths around the ego (ROAD_BEHIND_M behind to ROAD_AHEAD_M
ahead, every ROAD_SPACING_M), so a step's lines have the same shape on every road: one row per
name in ROAD_LINES, NaN rows for lanes the road does not have. The drivable area is the
carriageway between `left_edge` and `right_edge` (shoulders excluded).
"""

from __future__ import annotations

import numpy as np

from sharding.synthetic.road import MAX_LANES, Road

ROAD_BEHIND_M = 20.0  # first sample, metres of arc length behind the ego
ROAD_AHEAD_M = 60.0  # last sample, metres ahead
ROAD_SPACING_M = 2.0
ROAD_POINTS = int(round((ROAD_BEHIND_M + ROAD_AHEAD_M) / ROAD_SPACING_M)) + 1  # 41
# Row names of road.npy (the manifest's `road_lines`): the edge lines, then each lane's centre
# line from the rightmost lane (lane 0, see LaneLayout) to lane MAX_LANES - 1.
ROAD_LINES = ("left_edge", "right_edge", *(f"lane_{i}" for i in range(MAX_LANES)))


def road_polylines(road: Road, s_ego: float, world_from_ego: np.ndarray) -> np.ndarray:
    """float32 [len(ROAD_LINES), ROAD_POINTS, 2]: (x forward, y left) metres in the ego frame.

    s_ego is the ego origin's arc length; samples beyond either end of the road clamp to it.
    """
    layout = road.layout
    s = np.clip(s_ego + np.linspace(-ROAD_BEHIND_M, ROAD_AHEAD_M, ROAD_POINTS), 0.0, road.length)  # [P]
    lanes = np.arange(MAX_LANES)
    d = np.concatenate([[layout.half_width, -layout.half_width],
                        np.where(lanes < layout.lanes, layout.lane_center(lanes), np.nan)])  # [K]
    x, y, _ = road.to_world(s[None, :], d[:, None])  # [K, P] world metres
    rotation, origin = world_from_ego[:2, :2], world_from_ego[:2, 3]
    # ego_from_world on the plane: R^T (p - t), written for row vectors as (p - t) R
    ego = (np.stack([x, y], axis=-1) - origin) @ rotation  # [K, P, 2]
    return ego.astype(np.float32)
