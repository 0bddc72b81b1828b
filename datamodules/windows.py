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


# What to do about a sample that breaks the contract although its shard's checksum matches the
# manifest: the shard was written (or rewritten together with the manifest) that way.
DAMAGED_FIX = "re-shard the source, and check the whole dataset with `lwm shard verify --deep <dataset folder>`"


class _Members:
    """The members of one sample, decoded and checked against the contract on access; every
    problem is a one-line ShardError naming the shard, the sample key, the member and the fix."""

    def __init__(self, sample: dict, spec: contract.SampleSpec | None) -> None:
        self.sample, self.spec = sample, spec
        self.where = f"{sample.get('__url__')} sample {sample.get('__key__')}"

    def error(self, member: str, problem: str) -> ShardError:
        return ShardError(f"{self.where}: member {member} {problem}; {DAMAGED_FIX}")

    def raw(self, member: str) -> bytes:
        if member not in self.sample:
            raise self.error(member, "is missing")
        return self.sample[member]

    def array(self, member: str, rows: int) -> np.ndarray:
        """An .npy member, checked against the spec (or only for `rows` leading rows without one)."""
        try:
            array = np.load(io.BytesIO(self.raw(member)), allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise self.error(member, f"is not a plain .npy array ({error})") from error
        problem = self.spec.array_problem(member, array) if self.spec is not None and member in self.spec.arrays \
            else None
        if problem is None and (array.ndim == 0 or array.shape[0] < rows):
            problem = f"has shape {list(array.shape)}, fewer than the {rows} steps the window needs"
        if problem is not None:
            raise self.error(member, problem)
        return array

    def image(self, camera: str, step: int) -> np.ndarray:
        member = contract.image_member(camera, step)
        try:
            image = decode_jpeg(self.raw(member))
        except ShardError:
            raise
        except Exception as error:  # simplejpeg and Pillow raise several kinds on bad bytes
            raise self.error(member, f"does not decode as a JPEG ({type(error).__name__}: {error})") from error
        problem = self.spec.image_problem(camera, image) if self.spec is not None and camera in self.spec.images \
            else None
        if problem is not None:
            raise self.error(member, problem)
        return image

    def meta(self, cameras: list[str], start: int, steps: int) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
        """meta.json's camera index of each of `cameras`, their intrinsics [V, 3, 3] and
        ego_from_camera [V, 4, 4], and the window's timestamps [T]."""
        try:
            meta = json.loads(self.raw(contract.META))
            index = [meta["cameras"].index(c) for c in cameras]
            intrinsics = np.asarray(meta["intrinsics"], np.float32)[index]
            ego_from_camera = np.asarray(meta["ego_from_camera"], np.float32)[index]
            timestamps = np.asarray(meta["timestamps_us"][start : start + steps], np.int64)
        except ShardError:
            raise
        except (KeyError, ValueError, IndexError, TypeError, AttributeError) as error:
            raise self.error(contract.META, f"is not what the contract says ({type(error).__name__}: {error})") \
                from error
        if intrinsics.shape[1:] != (3, 3) or ego_from_camera.shape[1:] != (4, 4) or len(timestamps) != steps:
            raise self.error(contract.META, f"has intrinsics {list(intrinsics.shape)}, ego_from_camera "
                             f"{list(ego_from_camera.shape)}, {len(timestamps)} timestamps for {steps} steps")
        return index, intrinsics, ego_from_camera, timestamps


def decode_window(
    sample: dict, start: int, steps: int, cameras: list[str], action_index: list[int], bev: BevTarget | None = None,
    spec: contract.SampleSpec | None = None,
) -> dict[str, np.ndarray]:
    """One window of `steps` steps from `start` of a sample, as arrays (see datamodules.batch).

    frames uint8 [T, V, 3, H, W]; actions float32 [T, A]; ego float32 [T, 4, 4] relative to the
    window's first step; hazard float32 [T]; intrinsics [V, 3, 3]; ego_from_camera [V, 4, 4];
    timestamps int64 [T]; with `bev`, also bev uint8 [T, 3, h, w] and bev_known bool [3]
    (`datamodules.bev.rasterize` of agents.npy and road.npy). With `spec` (the manifest's), each
    member is checked against the contract; any damage is a ShardError naming shard, key and member.
    """
    members = _Members(sample, spec)
    end = start + steps
    _, intrinsics, ego_from_camera, timestamps = members.meta(cameras, start, steps)
    frames = np.stack([np.stack([members.image(c, t) for c in cameras]) for t in range(start, end)])  # [T, V, H, W, 3]
    world_from_ego = members.array(contract.EGO, end)[start:end]
    actions = members.array(contract.ACTION, end)[start:end]
    if actions.ndim != 2 or (action_index and max(action_index) >= actions.shape[1]):
        raise members.error(contract.ACTION, f"has shape {list(actions.shape)}, too few columns for {action_index}")
    hazard = members.array(contract.HAZARD, end)[start:end]
    try:
        first_from_world = np.linalg.inv(world_from_ego[0])
    except np.linalg.LinAlgError as error:
        raise members.error(contract.EGO, f"holds a singular pose at step {start} ({error})") from error
    extra = bev.window(members, start, steps) if bev is not None else {}
    return {**extra,
        "frames": np.ascontiguousarray(frames.transpose(0, 1, 4, 2, 3)),
        "actions": actions[:, action_index].astype(np.float32),
        "ego": (first_from_world @ world_from_ego).astype(np.float32),
        "hazard": hazard.astype(np.float32),
        "intrinsics": intrinsics,
        "ego_from_camera": ego_from_camera,
        "timestamps": timestamps,
    }


@dataclass(frozen=True)
class BevTarget:
    """What `decode_window` needs to rasterise a window's BEV: the grid and the manifest's names."""

    grid: BevGrid
    agent_fields: tuple[str, ...]
    road_lines: tuple[str, ...]

    def window(self, members: _Members, start: int, steps: int) -> dict[str, np.ndarray]:
        agents = members.array(contract.AGENTS, start + steps)[start : start + steps]
        road = None
        if self.road_lines:
            if contract.ROAD not in members.sample:
                raise members.error(contract.ROAD, "is missing, but the manifest's road_lines promise it")
            road = members.array(contract.ROAD, start + steps)[start : start + steps]
        raster, known = rasterize(self.grid, agents, list(self.agent_fields), road, list(self.road_lines))
        return {"bev": raster, "bev_known": known}


def collate(windows: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Stack per-window arrays into a batch: frames uint8 [B, T, V, 3, H, W] and the rest (see
    datamodules.batch); frames stay uint8 until the datamodule's transfer hook."""
    return {k: torch.from_numpy(np.stack([w[k] for w in windows])) for k in windows[0]}
