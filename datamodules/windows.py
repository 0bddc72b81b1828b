"""One window of one sample decoded into arrays, and windows stacked into a batch.

Step 2 of the batch path (tar -> `shard_set` samples -> `decode_window` -> `WindowStream`
batches -> `ShardDataModule.on_after_batch_transfer`). Decoding is lazy: only the frames of the
chosen cameras inside the chosen window are decoded. The JPEG decoder is simplejpeg (about 3x
Pillow on 64x64 frames here, see benchmarks/bench_data.py); Pillow is the fallback.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import torch

from datamodules.bev import BevGrid, rasterize
from sharding import contract
from sharding.errors import ShardError

try:
    import simplejpeg
except ImportError:  # pragma: no cover - simplejpeg is a dependency; Pillow keeps it working
    simplejpeg = None


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG bytes -> uint8 [H, W, 3] RGB."""
    if simplejpeg is not None:
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def decode_window(
    sample: dict, start: int, steps: int, cameras: list[str], action_index: list[int], bev: BevTarget | None = None
) -> dict[str, np.ndarray]:
    """One window of `steps` steps from `start` of a sample, as arrays (see datamodules.batch).

    frames uint8 [T, V, 3, H, W]; actions float32 [T, A]; ego float32 [T, 4, 4] relative to the
    window's first step; hazard float32 [T]; intrinsics [V, 3, 3]; ego_from_camera [V, 4, 4];
    timestamps int64 [T]; with `bev`, also bev uint8 [T, 3, h, w] and bev_known bool [3]
    (`datamodules.bev.rasterize` of agents.npy and road.npy).
    """
    key = f"{sample.get('__url__')} sample {sample['__key__']}"
    try:
        meta = json.loads(sample[contract.META])
        camera_index = [meta["cameras"].index(c) for c in cameras]
        window = range(start, start + steps)
        frames = np.stack([
            np.stack([decode_jpeg(sample[contract.image_member(c, t)]) for c in cameras]) for t in window
        ])  # [T, V, H, W, 3]
        world_from_ego = contract.decode_npy(sample[contract.EGO], key)[start : start + steps]
    except KeyError as error:
        raise ShardError(f"{key}: lacks member {error}; re-shard it") from error
    first_from_world = np.linalg.inv(world_from_ego[0])
    actions = contract.decode_npy(sample[contract.ACTION], key)[start : start + steps]
    hazard = contract.decode_npy(sample[contract.HAZARD], key)[start : start + steps]
    extra = bev.window(sample, start, steps, key) if bev is not None else {}
    return {**extra,
        "frames": np.ascontiguousarray(frames.transpose(0, 1, 4, 2, 3)),
        "actions": actions[:, action_index].astype(np.float32),
        "ego": (first_from_world @ world_from_ego).astype(np.float32),
        "hazard": hazard.astype(np.float32),
        "intrinsics": np.asarray(meta["intrinsics"], np.float32)[camera_index],
        "ego_from_camera": np.asarray(meta["ego_from_camera"], np.float32)[camera_index],
        "timestamps": np.asarray(meta["timestamps_us"][start : start + steps], np.int64),
    }


@dataclass(frozen=True)
class BevTarget:
    """What `decode_window` needs to rasterise a window's BEV: the grid and the manifest's names."""

    grid: BevGrid
    agent_fields: tuple[str, ...]
    road_lines: tuple[str, ...]

    def window(self, sample: dict, start: int, steps: int, key: str) -> dict[str, np.ndarray]:
        agents = contract.decode_npy(sample[contract.AGENTS], key)[start : start + steps]
        road = None
        if self.road_lines:
            if contract.ROAD not in sample:
                raise ShardError(f"{key}: lacks member {contract.ROAD!r} that the manifest's road_lines promise; re-shard it")
            road = contract.decode_npy(sample[contract.ROAD], key)[start : start + steps]
        raster, known = rasterize(self.grid, agents, list(self.agent_fields), road, list(self.road_lines))
        return {"bev": raster, "bev_known": known}


def collate(windows: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Stack per-window arrays into a batch: frames uint8 [B, T, V, 3, H, W] and the rest (see
    datamodules.batch); frames stay uint8 until the datamodule's transfer hook."""
    return {k: torch.from_numpy(np.stack([w[k] for w in windows])) for k in windows[0]}
