"""Camera frames resized once, at shard time, and the intrinsics that go with the new size.

JPEGs are decoded with libjpeg-turbo's DCT scaling (simplejpeg `min_width`/`min_height`): a
1600x900 frame bound for 112x64 is decoded at 1/8 size (200x113) for a fraction of the cost,
then Pillow resamples it (antialiased) to the exact size. Other formats go through Pillow.
"""

from __future__ import annotations

import io

import numpy as np
import simplejpeg
from PIL import Image

from sharding.errors import SourceError


def scaled_intrinsics(intrinsics: np.ndarray, source: tuple[int, int], target: tuple[int, int]) -> np.ndarray:
    """[3, 3] pixel intrinsics for an image resized from `source` (w, h) to `target` (w, h).

    Pixel centres sit at integer coordinates, so a point at u maps to (u + 0.5) * s - 0.5.
    """
    sx, sy = target[0] / source[0], target[1] / source[1]
    out = np.array(intrinsics, np.float64).copy()
    out[0, 0], out[0, 1], out[0, 2] = out[0, 0] * sx, out[0, 1] * sx, (out[0, 2] + 0.5) * sx - 0.5
    out[1, 1], out[1, 2] = out[1, 1] * sy, (out[1, 2] + 0.5) * sy - 0.5
    return out


def image_size(data: bytes, path: str) -> tuple[int, int]:
    """(width, height) of an encoded image, from its header only."""
    try:
        if data[:2] == b"\xff\xd8":
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
            return int(width), int(height)
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (ValueError, OSError) as error:
        raise SourceError(f"{path}: not a readable image ({error}); re-export or remove the sample_data row") from error


def load_resized(path: str, target: tuple[int, int], expected: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 [H, W, 3] RGB of the image at `path`, resized to `target` (w, h).

    `expected` (w, h) is the size its sample_data row states; a file of another size is refused,
    because the calibration's intrinsics belong to the stated size.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as error:
        raise SourceError(f"{path}: listed in sample_data but missing on disk; restore the file "
                          "(or remove its row and re-link prev/next)") from error
    size = image_size(data, path)
    if expected is not None and tuple(expected) != size:
        raise SourceError(f"{path}: image is {size[0]}x{size[1]} but its sample_data row says "
                          f"{expected[0]}x{expected[1]}; fix the row's width/height (the intrinsics follow them)")
    try:
        if data[:2] == b"\xff\xd8":
            image = simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=target[0], min_height=target[1])
        else:
            with Image.open(io.BytesIO(data)) as opened:
                image = np.asarray(opened.convert("RGB"))
    except (ValueError, OSError) as error:
        raise SourceError(f"{path}: cannot decode ({error}); re-export the image") from error
    if (image.shape[1], image.shape[0]) != tuple(target):
        image = np.asarray(Image.fromarray(image).resize(tuple(target), Image.BILINEAR))
    return image
