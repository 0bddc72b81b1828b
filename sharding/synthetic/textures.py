"""Procedural noise for the synthetic world: tileable value noise, drawn once per scene.

Ground texture, clouds and the mountain skyline all read from such tiles, so a scene's look
comes from its seed and costs one table lookup per pixel while rendering.
"""

from __future__ import annotations

import numpy as np


def _upsample_periodic(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a periodic [n, n] grid to [size, size], wrapping at the borders."""
    n = grid.shape[0]
    coords = np.arange(size) * (n / size)
    low = np.floor(coords).astype(np.int64)
    frac = coords - low
    high = (low + 1) % n
    rows = grid[low] * (1 - frac)[:, None] + grid[high] * frac[:, None]  # [size, n]
    return rows[:, low] * (1 - frac)[None, :] + rows[:, high] * frac[None, :]


def noise_tile(rng: np.random.Generator, size: int = 64, octaves: int = 4) -> np.ndarray:
    """float32 [size, size] tileable fractal value noise with zero mean and unit std.

    Octave k has 2**(k + 2) random values per side, smoothly interpolated, and half the
    amplitude of octave k - 1: large soft blotches plus fine grain.
    """
    tile = np.zeros((size, size))
    for octave in range(octaves):
        cells = min(size, 2 ** (octave + 2))
        tile += 0.5**octave * _upsample_periodic(rng.standard_normal((cells, cells)), size)
    tile -= tile.mean()
    return (tile / max(float(tile.std()), 1e-6)).astype(np.float32)


def noise_profile(rng: np.random.Generator, size: int = 512, octaves: int = 5) -> np.ndarray:
    """float32 [size] periodic 1-D fractal noise in [0, 1] (a skyline, indexed by azimuth)."""
    profile = np.zeros(size)
    positions = np.arange(size) / size
    for octave in range(octaves):
        cells = 2 ** (octave + 2)
        values = rng.standard_normal(cells)
        x = positions * cells
        low = np.floor(x).astype(np.int64)
        frac = x - low
        smooth = frac * frac * (3 - 2 * frac)  # smoothstep: no kinks at the knots
        profile += 0.55**octave * (values[low % cells] * (1 - smooth) + values[(low + 1) % cells] * smooth)
    profile -= profile.min()
    return (profile / max(float(profile.max()), 1e-6)).astype(np.float32)


def sample_tile(tile: np.ndarray, x: np.ndarray, y: np.ndarray, cell_m: float) -> np.ndarray:
    """Nearest lookup of a square tile laid on the ground with `cell_m` metres per texel.

    x, y: float arrays of one shape (metres). Returns float32 of that shape.
    """
    size = tile.shape[0]
    col = np.floor(x * (1.0 / cell_m)).astype(np.int64) % size
    row = np.floor(y * (1.0 / cell_m)).astype(np.int64) % size
    return tile[row, col]
