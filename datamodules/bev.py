"""Bird's-eye-view occupancy: other agents and the drivable area on a grid in the ego frame.

One raster serves three jobs: the training target of the world models' BEV head, the ground
truth the reference simulator is scored with, and what the scorer reads from either simulator,
so both are scored from the same kind of picture. The grid (`BevGrid`) lies in the ego frame of
its step (x forward, y left, metres, origin at the rear axle); cell (i, j) is centred at
x = x_max - (i + 0.5) * resolution, y = y_max - (j + 0.5) * resolution, so the picture is a map
seen from above with the car pointing up. A cell is occupied when its centre lies inside an
agent's box (sides shorter than 1.5 cells are grown to that, so every pedestrian shows) or
inside the drivable area (the carriageway between the `left_edge` and `right_edge` road lines).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.path import Path

from sharding.contract import CLASS_PEDESTRIAN, CLASS_VEHICLE
from sharding.errors import ConfigError

BEV_CLASSES = ("vehicle", "pedestrian", "drivable")  # channels of every BEV raster, in this order
AGENT_CLASSES = {0: CLASS_VEHICLE, 1: CLASS_PEDESTRIAN}  # channel -> agents.npy class_id
AGENT_COLUMNS = ("class_id", "x", "y", "length", "width", "yaw")  # agents.npy fields the raster reads
MIN_SIDE_CELLS = 1.5  # a box side shorter than this many cells is grown to it: turned any way, it holds a cell centre


@dataclass
class BevGrid:
    """An ego-frame grid (Hydra `model.bev`): extent in metres, square cells of `resolution` metres."""

    x_min: float = -8.0  # metres behind the rear axle (the ego body reaches -1 m)
    x_max: float = 32.0  # metres ahead
    y_min: float = -20.0  # metres to the right
    y_max: float = 20.0  # metres to the left
    resolution: float = 0.5  # cell side, metres

    def __post_init__(self) -> None:
        if not self.resolution > 0:
            raise ConfigError(f"model.bev.resolution={self.resolution} must be > 0 metres")
        for low, high in (("x_min", "x_max"), ("y_min", "y_max")):
            cells = (getattr(self, high) - getattr(self, low)) / self.resolution
            if not getattr(self, low) < 0 < getattr(self, high) or abs(cells - round(cells)) > 1e-6:
                raise ConfigError(f"model.bev.{low}={getattr(self, low)} / {high}={getattr(self, high)} must hold the "
                                  f"ego (0) between them and span a whole number of {self.resolution} m cells")

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) cells: rows along x (forward up), columns along y (left on the left)."""
        return (int(round((self.x_max - self.x_min) / self.resolution)),
                int(round((self.y_max - self.y_min) / self.resolution)))

    def cell_centres(self) -> np.ndarray:
        """float64 [H, W, 2]: (x, y) of every cell centre, metres in the ego frame."""
        height, width = self.shape
        x = self.x_max - (np.arange(height) + 0.5) * self.resolution
        y = self.y_max - (np.arange(width) + 0.5) * self.resolution
        return np.stack(np.meshgrid(x, y, indexing="ij"), -1)


def agent_columns(agent_fields: list[str]) -> list[int] | None:
    """Indices of AGENT_COLUMNS in a dataset's agent fields; None when it lacks any of them."""
    if not set(AGENT_COLUMNS) <= set(agent_fields):
        return None
    return [list(agent_fields).index(name) for name in AGENT_COLUMNS]


def agent_occupancy(grid: BevGrid, agents: np.ndarray, columns: list[int]) -> np.ndarray:
    """bool [T, 2, H, W] (vehicle, pedestrian) from agent rows [T, N, F] in each step's ego frame.

    Padding rows (zero length and width) occupy nothing; `columns` from `agent_columns`. Each box
    is tested against the cells of a square window around its centre only (all boxes at once).
    """
    steps, (height, width), res = agents.shape[0], grid.shape, grid.resolution
    out = np.zeros((steps, len(AGENT_CLASSES), height, width), bool)
    rows = agents[..., columns].astype(np.float64)  # [T, N, 6]
    channel = np.full(rows.shape[:2], -1)
    for index, agent_class in AGENT_CLASSES.items():
        channel[np.round(rows[..., 0]) == agent_class] = index
    t, n = np.nonzero((channel >= 0) & ((rows[..., 3] > 0) | (rows[..., 4] > 0)))
    if not len(t):
        return out
    _, x, y, length, width_m, yaw = rows[t, n].T  # [M] each
    half_length = np.maximum(length, MIN_SIDE_CELLS * res) / 2
    half_width = np.maximum(width_m, MIN_SIDE_CELLS * res) / 2
    size = int(np.ceil(2 * np.hypot(half_length, half_width).max() / res)) + 2  # window side, cells
    i = np.floor((grid.x_max - x) / res).astype(int)[:, None] + np.arange(size) - size // 2  # [M, S] rows
    j = np.floor((grid.y_max - y) / res).astype(int)[:, None] + np.arange(size) - size // 2  # [M, S] columns
    cx = grid.x_max - (i + 0.5) * res - x[:, None]  # [M, S] cell x minus box x
    cy = grid.y_max - (j + 0.5) * res - y[:, None]
    cos, sin = np.cos(yaw)[:, None, None], np.sin(yaw)[:, None, None]
    along = cos * cx[:, :, None] + sin * cy[:, None, :]  # [M, S, S]
    across = -sin * cx[:, :, None] + cos * cy[:, None, :]
    inside = (np.abs(along) <= half_length[:, None, None]) & (np.abs(across) <= half_width[:, None, None])
    inside &= ((i >= 0) & (i < height))[:, :, None] & ((j >= 0) & (j < width))[:, None, :]
    m, a, b = np.nonzero(inside)
    out[t[m], channel[t, n][m], i[m, a], j[m, b]] = True
    return out


def drivable_occupancy(grid: BevGrid, road: np.ndarray, road_lines: list[str]) -> np.ndarray:
    """bool [T, H, W]: cells between the left and right edge lines of road [T, K, P, 2] (ego frames).

    Where both edge lines run forward (x increasing, as when driving along the road) each row of
    cells is one interval between them; otherwise (a U-turn, an intersection) a polygon test.
    """
    left, right = road[:, road_lines.index("left_edge")], road[:, road_lines.index("right_edge")]  # [T, P, 2]
    centres = grid.cell_centres()  # [H, W, 2]
    x, y = centres[:, 0, 0], centres[0, :, 1]  # row x [H], column y [W]
    out = np.zeros((road.shape[0], *grid.shape), bool)
    for t in range(road.shape[0]):
        edges = [line[np.isfinite(line).all(-1)] for line in (left[t], right[t])]
        if min(len(e) for e in edges) < 2:
            continue
        if all((np.diff(e[:, 0]) > 0).all() for e in edges):
            inside = [(x >= e[0, 0]) & (x <= e[-1, 0]) for e in edges]
            y_left, y_right = (np.interp(x, e[:, 0], e[:, 1]) for e in edges)  # [H]
            out[t] = (inside[0] & inside[1])[:, None] & (y[None, :] <= y_left[:, None]) & (y[None, :] >= y_right[:, None])
        else:
            outline = np.concatenate([edges[0], edges[1][::-1]])
            out[t] = Path(outline).contains_points(centres.reshape(-1, 2)).reshape(grid.shape)
    return out


def rasterize(grid: BevGrid, agents: np.ndarray, agent_fields: list[str], road: np.ndarray | None,
              road_lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The BEV of T steps: (uint8 [T, 3, H, W] in BEV_CLASSES order, known bool [3]).

    agents [T, N, F] named by `agent_fields`; road [T, K, P, 2] named by `road_lines` (None or
    without edge lines: the drivable channel is unknown, all zeros, known False).
    """
    steps = agents.shape[0]
    out = np.zeros((steps, len(BEV_CLASSES), *grid.shape), np.uint8)
    known = np.zeros(len(BEV_CLASSES), bool)
    columns = agent_columns(agent_fields)
    if columns is not None:
        out[:, : len(AGENT_CLASSES)] = agent_occupancy(grid, agents, columns)
        known[: len(AGENT_CLASSES)] = True
    if road is not None and {"left_edge", "right_edge"} <= set(road_lines):
        out[:, BEV_CLASSES.index("drivable")] = drivable_occupancy(grid, road, list(road_lines))
        known[BEV_CLASSES.index("drivable")] = True
    return out, known
