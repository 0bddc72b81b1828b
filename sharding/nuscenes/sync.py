"""Which camera frames make each shard step: synchronise to a reference camera, resample to a fixed rate.

nuScenes cameras run at about 12 Hz each, but fire at different moments (as the lidar sweeps
past them, up to ~45 ms apart), and a frame is sometimes missing. Every reference frame is
paired with each other camera's nearest frame; the pair holds if it is within the tolerance.
The shard's steps are a fixed-rate grid from the first to the last synchronised reference
frame; a step takes the reference frame nearest to it. A step is dropped, and counted, when
that frame is more than 0.6 camera periods away (a hole in the log) or is not synchronised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sharding.errors import SourceError

HOLE_PERIODS = 0.6  # a step whose nearest reference frame is farther than this many frame periods is a hole


@dataclass
class SyncPlan:
    """grid_us int64 [T]; frames int64 [T, V] (frame index per camera, -1 where dropped); valid bool [T]."""

    grid_us: np.ndarray
    frames: np.ndarray
    valid: np.ndarray
    reference_frames: int  # frames of the reference camera in the scene
    reference_unsynced: int  # of those, frames some camera had no partner for
    steps_unsynced: int  # grid steps dropped: hole in the log or unsynchronised frame

    def counts(self) -> dict[str, int]:
        return {"steps": int(len(self.grid_us)), "steps_unsynced": self.steps_unsynced,
                "reference_frames": self.reference_frames, "reference_unsynced": self.reference_unsynced}


def nearest(times: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index into sorted `times` of the nearest entry to each query."""
    right = np.clip(np.searchsorted(times, query), 1, len(times) - 1) if len(times) > 1 else np.zeros(len(query), int)
    if len(times) == 1:
        return right
    left = right - 1
    return np.where(np.abs(times[left] - query) <= np.abs(times[right] - query), left, right)


def plan_sync(camera_times: list[np.ndarray], reference: int, fps: float, tolerance_us: float,
              scene: str) -> SyncPlan:
    """Plan the steps of one scene from each camera's sorted frame timestamps (int64 microseconds)."""
    ref = camera_times[reference]
    partners = np.stack([nearest(times, ref) for times in camera_times], axis=1)  # [F_ref, V]
    gaps = np.stack([np.abs(times[partners[:, v]] - ref) for v, times in enumerate(camera_times)], axis=1)
    synced = (gaps <= tolerance_us).all(axis=1)
    if not synced.any():
        worst = int(np.min(gaps.max(axis=1)))
        raise SourceError(f"scene {scene}: no reference frame has every camera within {tolerance_us / 1000:g} ms "
                          f"(best case {worst / 1000:g} ms); raise source.sync_tolerance_ms or drop a camera")
    first, last = ref[np.argmax(synced)], ref[len(synced) - 1 - np.argmax(synced[::-1])]
    step_us = 1e6 / fps
    count = int(np.floor((last - first) / step_us + 1e-9)) + 1
    grid = first + np.round(np.arange(count) * step_us).astype(np.int64)
    period = float(np.median(np.diff(ref))) if len(ref) > 1 else step_us
    chosen = nearest(ref, grid)
    valid = synced[chosen] & (np.abs(ref[chosen] - grid) <= HOLE_PERIODS * period)
    frames = np.where(valid[:, None], partners[chosen], -1)
    return SyncPlan(grid, frames, valid, len(ref), int((~synced).sum()), int((~valid).sum()))


def chunk_steps_of(valid: np.ndarray, chunk_steps: int) -> np.ndarray:
    """Indices of the steps kept: whole chunks of `chunk_steps` consecutive valid steps.

    A sample (chunk) never spans a dropped step, so every window a reader cuts is evenly spaced.
    Within each run of valid steps, chunks start at the run's first step; the rest is left out.
    """
    keep = []
    padded = np.concatenate([[False], valid, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    for start, stop in zip(edges[::2], edges[1::2]):
        whole = (stop - start) // chunk_steps * chunk_steps
        keep.extend(range(start, start + whole))
    return np.array(keep, np.int64)
