"""Which camera frames make each shard step: synchronise to a reference camera, resample to a fixed rate.

nuScenes cameras run at about 12 Hz each, but fire at different moments (as the lidar sweeps
past them, up to ~45 ms apart), and a frame is sometimes missing. Every reference frame is
paired with each other camera's nearest frame; the pair holds if it is within the tolerance.
The shard's steps are a fixed-rate grid from the first to the last synchronised reference
frame, so a scene starts where every requested camera exists and stops where the first one
ends (sensors that start late or stop early); the steps of the scene outside that are dropped
and counted. A step takes the reference frame nearest to it; inside the grid a step is dropped,
and counted by reason, when some camera has missing frames there (a gap: the reference frame is
more than 0.6 periods away, or a camera's frames around it are more than 1.5 periods apart),
when its frames are not synchronised, or when a frame it needs shares its timestamp with
another row (which image belongs to that moment is unknown). A sample never spans a dropped
step, so a gap drops steps and the scene goes on after it under the same id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sharding.errors import SourceError

HOLE_PERIODS = 0.6  # a step whose nearest reference frame is farther than this many frame periods is a hole
GAP_PERIODS = 1.5  # frames of one camera farther apart than this many periods have frames missing between them
# Why a step of the scene is left out: outside the span every camera covers, or inside it (steps_unsynced).
DROP_REASONS = ("before_start", "after_end", "gap", "unsynced", "duplicate_timestamp")
GAP_RULE = "drop_steps"  # what a gap does: its steps are dropped; no sample spans it; the scene keeps its id


@dataclass
class SyncPlan:
    """grid_us int64 [T]; frames int64 [T, V] (frame index per camera, -1 where dropped); valid bool [T]."""

    grid_us: np.ndarray
    frames: np.ndarray
    valid: np.ndarray
    reference_frames: int  # frames of the reference camera in the scene
    reference_unsynced: int  # of those, frames some camera had no partner for
    steps_unsynced: int  # grid steps dropped inside the grid: gap, unsynchronised or duplicated timestamp
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))  # steps per reason
    dropped_runs_us: list[list[int]] = field(default_factory=list)  # [first, last] grid time of each dropped run

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


def period_of(times: np.ndarray, default_us: float) -> float:
    """Median frame spacing of sorted `times` (microseconds); `default_us` for a single frame."""
    return float(np.median(np.diff(times))) if len(times) > 1 else default_us


def in_gap(times: np.ndarray, query: np.ndarray, period_us: float) -> np.ndarray:
    """bool [Q]: the query falls outside sorted `times` or between two frames more than GAP_PERIODS apart."""
    after = np.searchsorted(times, query)  # times[after - 1] < query <= times[after]
    outside = (after == 0) | (after == len(times))
    span = times[np.clip(after, 0, len(times) - 1)] - times[np.clip(after - 1, 0, len(times) - 1)]
    return outside | (span > GAP_PERIODS * period_us)


def _runs(dropped: np.ndarray, grid: np.ndarray) -> list[list[int]]:
    padded = np.concatenate([[False], dropped, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [[int(grid[a]), int(grid[b - 1])] for a, b in zip(edges[::2], edges[1::2])]


def plan_sync(camera_times: list[np.ndarray], reference: int, fps: float, tolerance_us: float, scene: str,
              duplicated: list[np.ndarray] | None = None, span_us: tuple[int, int] | None = None) -> SyncPlan:
    """Plan the steps of one scene from each camera's sorted frame timestamps (int64 microseconds).

    duplicated: bool [F_v] per camera, frames whose timestamp another row of that camera shares.
    span_us: (first, last) time of the scene (any sensor); the steps before and after the grid are counted.
    """
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
    chosen = nearest(ref, grid)
    hole = np.abs(ref[chosen] - grid) > HOLE_PERIODS * period_of(ref, step_us)
    gap = hole | np.any([in_gap(times, grid, period_of(times, step_us)) for times in camera_times], axis=0)
    ambiguous = np.zeros(count, bool)
    for v, flags in enumerate(duplicated or []):
        ambiguous |= flags[partners[chosen, v]]
    valid = synced[chosen] & ~hole & ~ambiguous
    dropped = ~valid
    counts = {"gap": int((dropped & gap).sum()), "unsynced": int((dropped & ~gap & ~synced[chosen]).sum()),
              "duplicate_timestamp": int((dropped & ~gap & synced[chosen]).sum())}
    lo, hi = span_us if span_us is not None else (first, last)  # steps that fit before `first`, after `last`
    counts["before_start"] = int(np.floor((first - lo) / step_us + 1e-9)) if lo < first else 0
    counts["after_end"] = int(np.floor((hi - last) / step_us + 1e-9)) if hi > last else 0
    frames = np.where(valid[:, None], partners[chosen], -1)
    return SyncPlan(grid, frames, valid, len(ref), int((~synced).sum()), int(dropped.sum()),
                    {reason: counts[reason] for reason in DROP_REASONS}, _runs(dropped, grid))


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
