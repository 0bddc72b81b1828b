"""Frames to files a browser plays: H.264 MP4 (PyAV) and animated GIF (Pillow), size-bounded.

MLflow's UI plays an MP4 inline only as H.264 `yuv420p` with even width and height (TRAPS.md),
and previews GIFs as images, so every rollout video is written both ways. Frames are uint8
`[T, H, W, 3]` RGB. Files never exceed `VideoLimits.max_bytes`: a file that would is
re-encoded at lower quality, then at a lower resolution, until it fits.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from sharding.errors import ConfigError

MAX_CRF = 51  # x264's lowest quality


@dataclass(frozen=True)
class VideoLimits:
    """Bounds that keep artifacts small enough for a tracking server and a browser tab.

    max_frames: frames kept (the first ones); max_side: longest side in pixels;
    crf: x264 constant rate factor to start from (0 lossless .. 51 worst; 23 is x264's default);
    max_bytes: hard cap per file (MP4 and GIF each).
    """

    max_frames: int = 64
    max_side: int = 768
    crf: int = 28
    max_bytes: int = 2_000_000

    def __post_init__(self) -> None:
        if self.max_frames < 1:
            raise ConfigError(f"max_frames={self.max_frames} must be >= 1")
        if self.max_side < 16:
            raise ConfigError(f"max_side={self.max_side} must be >= 16 pixels")
        if not 0 <= self.crf <= MAX_CRF:
            raise ConfigError(f"crf={self.crf} must be in [0, {MAX_CRF}] (x264 quality; lower is better)")
        if self.max_bytes < 10_000:
            raise ConfigError(f"max_bytes={self.max_bytes} must be >= 10000 (a few frames need that much)")


def check_frames(frames: np.ndarray) -> None:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"frames must be uint8 [T, H, W, 3] with T >= 1, got {frames.dtype} {list(frames.shape)}")


def pad_to_even(frames: np.ndarray) -> np.ndarray:
    """[T, H, W, 3] -> [T, H', W', 3] with H', W' even (a black row/column added where odd):
    yuv420p stores colour at half resolution, so libx264 refuses odd sizes."""
    height, width = frames.shape[1:3]
    return np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)))


def shrink(frames: np.ndarray, factor: float) -> np.ndarray:
    """[T, H, W, 3] -> [T, ~H*factor, ~W*factor, 3] (factor < 1) by area averaging (BOX filter)."""
    height, width = frames.shape[1:3]
    size = (max(2, int(width * factor)), max(2, int(height * factor)))
    return np.stack([np.asarray(Image.fromarray(f).resize(size, Image.Resampling.BOX)) for f in frames])


def next_factor(size: int, max_bytes: int) -> float:
    """How much to shrink each side so that a file of `size` bytes fits `max_bytes`: bytes grow
    with the pixel count, so the square root of the ratio, with a margin, and at least halving."""
    return min(0.5, 0.9 * (max_bytes / size) ** 0.5)


def write_mp4(frames: np.ndarray, path: Path, fps: float, crf: int) -> int:
    """uint8 [T, H, W, 3] -> an H.264 yuv420p MP4 at `path`; returns its size in bytes.

    The moov atom goes first (`+faststart`), so a browser starts playing before the whole
    file has arrived; that needs a second pass over the file, hence a path, not a buffer.
    """
    check_frames(frames)
    frames = pad_to_even(frames)
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        rate = Fraction(fps).limit_denominator(1001)  # 29.97 -> 30000/1001
        stream = container.add_stream("libx264", rate=rate, options={"crf": str(crf), "preset": "veryfast"})
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())  # flush the encoder's delayed frames
    return path.stat().st_size


def gif_bytes(frames: np.ndarray, fps: float) -> bytes:
    """uint8 [T, H, W, 3] -> an animated GIF that loops (adaptive 256-colour palette per frame).

    Pillow folds a frame identical to the one before into it, so callers that need a frame
    count should make frames differ (the rollout videos carry a time bar).
    """
    check_frames(frames)
    images = [Image.fromarray(f) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(20, round(1000 / fps)), loop=0)
    return buffer.getvalue()


def fit_side(frames: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink [T, H, W, 3] so that its longest side is at most `max_side`."""
    longest = max(frames.shape[1:3])
    return shrink(frames, max_side / longest) if longest > max_side else frames


def write_bounded_mp4(frames: np.ndarray, path: Path, fps: float, limits: VideoLimits) -> int:
    """The MP4 of `frames` within `limits` at `path`: first `max_frames`, longest side <=
    `max_side`, at most `max_bytes` (quality lowered by CRF steps of 6, then the resolution).
    Returns the file's size."""
    frames = fit_side(frames[: limits.max_frames], limits.max_side)
    while True:
        crf = limits.crf
        while True:
            size = write_mp4(frames, path, fps, crf)
            if size <= limits.max_bytes or crf >= MAX_CRF:
                break
            crf = min(MAX_CRF, crf + 6)
        if size <= limits.max_bytes or max(frames.shape[1:3]) <= 16:
            break
        frames = shrink(frames, next_factor(size, limits.max_bytes))
    if size > limits.max_bytes:
        path.unlink()
        raise ConfigError(f"max_bytes={limits.max_bytes}: even a 16-pixel video at crf {MAX_CRF} is {size} "
                          "bytes; raise max_bytes or lower max_frames")
    return size


def bounded_gif(frames: np.ndarray, fps: float, limits: VideoLimits) -> bytes:
    """The GIF of `frames` within `limits` (GIF has no quality knob: only the resolution drops)."""
    frames = fit_side(frames[: limits.max_frames], limits.max_side)
    data = gif_bytes(frames, fps)
    while len(data) > limits.max_bytes and max(frames.shape[1:3]) > 16:
        frames = shrink(frames, next_factor(len(data), limits.max_bytes))
        data = gif_bytes(frames, fps)
    if len(data) > limits.max_bytes:
        raise ConfigError(f"max_bytes={limits.max_bytes}: even a 16-pixel GIF is {len(data)} bytes; "
                          "raise max_bytes or lower max_frames")
    return data


def write_video_pair(frames: np.ndarray, stem: Path, fps: float, limits: VideoLimits) -> tuple[Path, Path]:
    """Write `<stem>.mp4` and `<stem>.gif` of uint8 [T, H, W, 3] frames within `limits`."""
    mp4, gif = stem.with_suffix(".mp4"), stem.with_suffix(".gif")
    write_bounded_mp4(frames, mp4, fps, limits)
    gif.write_bytes(bounded_gif(frames, fps, limits))
    return mp4, gif
