"""The rollout video's picture: ground truth | prediction | error, a row per camera, a header.

Frames in are floats in [0, 1], truth [T, V, 3, H, W] and prediction [T - C, V, 3, H, W]; frames
out are uint8 [T, H', W', 3] RGB for `lightning_wm.video_io`. Used by the rollout-video callback
and `lwm rollout`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

GAP = 1  # pixels between tiles, before upscaling
GAP_VALUE = 255  # white separators
HEADER = 14  # pixels of column labels above the grid, after upscaling
TIMELINE = 4  # pixels of the time bar under the labels: green while observed, orange while imagined
OBSERVED_RGB, IMAGINED_RGB = (40, 180, 70), (240, 140, 20)
LABEL_HEIGHT = 12  # pixels of a camera-name label (black box, white text) at a row's top-left corner


def tile_origin(view: int, column: int, height: int, width: int, gap: int = GAP) -> tuple[int, int]:
    """(row, col) pixel of the top-left corner of a tile in `compose_grid`'s output."""
    return view * (height + gap), column * (width + gap)


def compose_grid(truth: np.ndarray, pred: np.ndarray, error_gain: float, gap: int = GAP) -> np.ndarray:
    """One frame per step: a row per view, columns truth | prediction | error.

    truth, pred: float [T, V, 3, H, W] in [0, 1] -> uint8 [T, V*H + (V-1)*gap, 3*W + 2*gap, 3];
    the error tile is grey: mean over channels of |pred - truth| x error_gain, clipped to 1.
    """
    steps, views, _, height, width = truth.shape
    error = np.clip(np.abs(pred - truth).mean(axis=2, keepdims=True) * error_gain, 0, 1)  # [T, V, 1, H, W]
    tiles = [truth, pred, np.repeat(error, 3, axis=2)]
    grid = np.full((steps, views * (height + gap) - gap, 3 * (width + gap) - gap, 3), GAP_VALUE, np.uint8)
    for view in range(views):
        for column, tile in enumerate(tiles):
            row, col = tile_origin(view, column, height, width, gap)
            pixels = np.round(np.clip(tile[:, view], 0, 1) * 255).astype(np.uint8)  # [T, 3, H, W]
            grid[:, row : row + height, col : col + width] = pixels.transpose(0, 2, 3, 1)
    return grid


def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour [T, H, W, 3] -> [T, H*factor, W*factor, 3] (sharp pixels, no blur)."""
    return frames.repeat(factor, axis=1).repeat(factor, axis=2)


def label_font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's embedded font at 10 px; its fixed-size bitmap font where Pillow lacks FreeType
    (or predates 10.1, which added `size`)."""
    try:
        return ImageFont.load_default(size=10)
    except (ImportError, OSError, TypeError):
        return ImageFont.load_default()


def add_header(frames: np.ndarray, context: int, error_gain: float) -> np.ndarray:
    """Column labels and a time bar above [T, H, W, 3] -> [T, HEADER + TIMELINE + H, W, 3].

    The bar grows one step per frame (so no two frames are identical: GIF writers fold those)
    and is green over observed frames, orange over imagined ones.
    """
    steps, _, width, _ = frames.shape
    label = Image.new("RGB", (width, HEADER), (0, 0, 0))
    draw, font = ImageDraw.Draw(label), label_font()
    column = (width - 2 * GAP) / 3
    for index, text in enumerate(("ground truth", "prediction", f"|error| x{error_gain:g}")):
        draw.text((index * (column + GAP) + 3, 1), text, fill=(255, 255, 255), font=font)
    header = np.zeros((steps, HEADER + TIMELINE, width, 3), np.uint8)
    header[:, :HEADER] = np.asarray(label)
    for step in range(steps):
        filled = max(1, round(width * (step + 1) / steps))
        header[step, HEADER:, :filled] = OBSERVED_RGB if step < context else IMAGINED_RGB
    return np.concatenate([header, frames], axis=1)


def label_rows(frames: np.ndarray, names: list[str], tile_height: int, tile_width: int, gap: int) -> np.ndarray:
    """Each row's camera name in a small black box at the top-left of its ground-truth tile (cut to
    the tile), in place. frames: uint8 [T, H, W, 3], the upscaled grid, whose row v starts
    v * (tile_height + gap) pixels down."""
    font = label_font()
    for view, name in enumerate(names):
        top = view * (tile_height + gap)
        height = min(LABEL_HEIGHT, tile_height)
        width = min(tile_width, round(font.getlength(name)) + 4)
        label = Image.new("RGB", (width, height), (0, 0, 0))
        ImageDraw.Draw(label).text((2, 0), name, fill=(255, 255, 255), font=font)
        frames[:, top : top + height, :width] = np.asarray(label)
    return frames


def rollout_frames(truth: np.ndarray, predicted: np.ndarray, context: int, scale: int, error_gain: float,
                   max_side: int, camera_names: list[str] | None = None) -> np.ndarray:
    """A clip's video: truth [T, V, 3, H, W], predicted [T-C, V, 3, H, W] (floats in [0, 1]) ->
    uint8 [T, H', W', 3]. The first `context` frames show the observed truth in both columns;
    `scale` is lowered so that the longest side stays within `max_side` where it can. With more
    than one view, `camera_names` (one per view) label the rows."""
    shown = np.concatenate([truth[:context], predicted], axis=0)
    grid = compose_grid(truth, shown, error_gain)
    factor = max(1, min(scale, max_side // max(grid.shape[1:3])))
    frames = upscale(grid, factor)
    views = truth.shape[1]
    if camera_names is not None and views > 1:
        assert len(camera_names) == views, f"{len(camera_names)} camera names for {views} views: {camera_names}"
        label_rows(frames, camera_names, truth.shape[3] * factor, truth.shape[4] * factor, GAP * factor)
    return add_header(frames, context, error_gain)
