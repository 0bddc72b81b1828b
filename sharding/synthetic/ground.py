"""The ground's colour at any point: asphalt, lane markings, shoulder, sidewalk and grass.

Every ground pixel covers a patch of ground (its footprint, which grows with distance). Edges
and markings are box-filtered over that footprint and texture fades with it, so far markings
thin out smoothly instead of flickering from frame to frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sharding.synthetic.road import LaneLayout
from sharding.synthetic.textures import noise_tile, sample_tile

MARKING_WIDTH_M = 0.15
DASH_M, DASH_PERIOD_M = 3.0, 9.0  # dashed lane lines: 3 m of paint every 9 m
CENTER_GAP_M = 0.18  # between the two yellow lines that split a two-way road
_FINE_CELL_M, _COARSE_CELL_M = 0.35, 2.5


@dataclass
class GroundStyle:
    """Colours (RGB albedo in [0, 1], float32 [3]) and texture tiles of one scene's ground."""

    asphalt: np.ndarray
    shoulder: np.ndarray
    sidewalk: np.ndarray
    grass: np.ndarray
    white: np.ndarray
    yellow: np.ndarray
    fine: np.ndarray  # float32 [64, 64] unit noise, texel _FINE_CELL_M
    coarse: np.ndarray  # float32 [64, 64] unit noise, texel _COARSE_CELL_M (patches, mowing stripes)

    @classmethod
    def sample(cls, rng: np.random.Generator, wet: bool) -> GroundStyle:
        shade = rng.uniform(0.26, 0.40) * (0.6 if wet else 1.0)  # wet asphalt is darker
        grass = rng.uniform([0.18, 0.32, 0.10], [0.45, 0.50, 0.22])  # lush green to dry yellow
        return cls(
            asphalt=np.array([shade, shade, shade * 1.04], np.float32),
            shoulder=np.array(rng.uniform([0.40, 0.37, 0.32], [0.55, 0.50, 0.44]), np.float32),
            sidewalk=np.full(3, rng.uniform(0.55, 0.7), np.float32),
            grass=np.array(grass, np.float32),
            white=np.full(3, 0.92 if not wet else 0.75, np.float32),
            yellow=np.array([0.9, 0.72, 0.15], np.float32),
            fine=noise_tile(rng, 64, octaves=3),
            coarse=noise_tile(rng, 64, octaves=4),
        )


def _step(x: np.ndarray, edge: float, footprint: np.ndarray) -> np.ndarray:
    """Box-filtered step: the fraction of a footprint centred at x that lies beyond `edge`."""
    return np.clip((x - edge) / footprint + 0.5, 0.0, 1.0)


def _stripe(x: np.ndarray, center: np.ndarray | float, width: float, footprint: np.ndarray) -> np.ndarray:
    """Fraction of a footprint [x - f/2, x + f/2] covered by a stripe [c - w/2, c + w/2]."""
    overlap = np.minimum(x + footprint / 2, center + width / 2) - np.maximum(x - footprint / 2, center - width / 2)
    return np.clip(overlap / footprint, 0.0, 1.0)


def _dashes(s: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Fraction of a footprint along s covered by paint of a dashed line (exact box filter)."""

    def painted_up_to(x: np.ndarray) -> np.ndarray:  # metres of paint in [0, x]
        return np.floor(x / DASH_PERIOD_M) * DASH_M + np.minimum(np.mod(x, DASH_PERIOD_M), DASH_M)

    return (painted_up_to(s + footprint / 2) - painted_up_to(s - footprint / 2)) / footprint


def shade_ground(
    style: GroundStyle,
    layout: LaneLayout,
    s: np.ndarray,
    d: np.ndarray,
    on_road_map: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    footprint_d: np.ndarray,
    footprint_s: np.ndarray,
    footprint: np.ndarray,
) -> np.ndarray:
    """Albedo of P ground points, float32 [P, 3].

    s, d: road coordinates (m); on_road_map: bool, False where (s, d) is meaningless (far off the
    road: painted as grass); x, y: world position (m), anchors the textures;
    footprint_d, footprint_s: pixel footprint across / along the road (m);
    footprint: the footprint's larger side (m), which decides how much texture survives.
    """
    # a texture fades out as one pixel starts to average over several of its texels
    fine_gain = np.clip(1.5 - footprint / _FINE_CELL_M, 0.0, 1.0)
    coarse_gain = np.clip(1.5 - footprint / _COARSE_CELL_M, 0.0, 1.0)
    fine = sample_tile(style.fine, x, y, _FINE_CELL_M) * fine_gain
    coarse = sample_tile(style.coarse, x, y, _COARSE_CELL_M) * coarse_gain
    a = np.abs(np.where(on_road_map, d, 1e3))
    half = layout.half_width
    beyond_road = _step(a, half, footprint_d)[:, None]
    beyond_shoulder = _step(a, half + layout.shoulder, footprint_d)[:, None]
    beyond_sidewalk = _step(a, half + layout.shoulder + layout.sidewalk, footprint_d)[:, None]

    asphalt = style.asphalt * (1.0 + 0.07 * fine + 0.1 * coarse)[:, None]
    shoulder = style.shoulder * (1.0 + 0.12 * fine)[:, None]
    sidewalk = style.sidewalk * (1.0 + 0.05 * fine)[:, None]
    grass = style.grass * (1.0 + 0.25 * fine + 0.15 * coarse)[:, None]
    color = asphalt * (1 - beyond_road) + shoulder * beyond_road
    color = color * (1 - beyond_shoulder) + sidewalk * beyond_shoulder
    color = color * (1 - beyond_sidewalk) + grass * beyond_sidewalk

    # paint: solid edge lines just inside each edge, dashed lines between lanes of one direction,
    # double solid yellow between the two directions
    white = _stripe(a, half - 0.3, MARKING_WIDTH_M, footprint_d)
    boundary = np.clip(np.rint((d + half) / layout.lane_width), 1, max(layout.lanes - 1, 1))
    offset = d - (-half + boundary * layout.lane_width)
    is_center = (boundary == layout.forward_lanes) & (layout.oncoming > 0)
    lane_line = _stripe(offset, 0.0, MARKING_WIDTH_M, footprint_d) * _dashes(s, footprint_s)
    white = np.maximum(white, np.where(is_center | (layout.lanes < 2), 0.0, lane_line))
    yellow = np.maximum(_stripe(offset, CENTER_GAP_M / 2 + MARKING_WIDTH_M / 2, MARKING_WIDTH_M, footprint_d),
                        _stripe(offset, -CENTER_GAP_M / 2 - MARKING_WIDTH_M / 2, MARKING_WIDTH_M, footprint_d))
    yellow = np.where(is_center, yellow, 0.0)
    road_only = np.where(on_road_map, 1.0 - beyond_road[:, 0], 0.0)
    white, yellow = (white * road_only)[:, None], (yellow * road_only)[:, None]
    color = color * (1 - white - yellow) + style.white * white + style.yellow * yellow
    return color.astype(np.float32)
