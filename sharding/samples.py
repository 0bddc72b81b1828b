"""Turn one scene's arrays into WebDataset samples: one sample per chunk of `chunk_steps`.

Every source (synthetic, nuScenes, Waymo) ends here, so the members of a sample are made in
exactly one place. Images are JPEG-encoded once, at shard time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simplejpeg

from sharding import contract
from sharding.errors import ShardError


@dataclass
class SceneArrays:
    """A whole scene, resampled to the dataset's fixed rate.

    images:         uint8 [T, V, H, W, 3] (RGB)
    timestamps_us:  int64 [T]
    world_from_ego: float64 [T, 4, 4]
    actions:        float32 [T, A]
    agents:         float32 [T, N, F] in the ego frame (N may be 0)
    hazard:         uint8 [T]
    road:           float32 [T, K, P, 2] road polylines in the ego frame, or None where the
                    source does not know the road (contract.ROAD; K = the manifest's road_lines)
    """

    scene_id: str
    images: np.ndarray
    timestamps_us: np.ndarray
    world_from_ego: np.ndarray
    actions: np.ndarray
    agents: np.ndarray
    hazard: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    road: np.ndarray | None = None

    def __post_init__(self) -> None:
        steps = self.images.shape[0]
        for name in ("timestamps_us", "world_from_ego", "actions", "agents", "hazard", "road"):
            array = getattr(self, name)
            if array is not None and array.shape[0] != steps:
                raise ShardError(f"scene {self.scene_id}: {name} has {array.shape[0]} steps, images have {steps}")
        if self.images.dtype != np.uint8 or self.images.ndim != 5:
            raise ShardError(f"scene {self.scene_id}: images must be uint8 [T, V, H, W, 3], got "
                             f"{self.images.dtype} {list(self.images.shape)}")
        if self.road is not None and (self.road.ndim != 4 or self.road.shape[-1] != 2):
            raise ShardError(f"scene {self.scene_id}: road must be [T, K, P, 2], got {list(self.road.shape)}")


def encode_scene(
    scene: SceneArrays,
    *,
    source: str,
    split: str,
    cameras: list[contract.CameraInfo],
    chunk_steps: int,
    jpeg_quality: int,
) -> list[dict[str, Any]]:
    """Cut `scene` into full chunks of `chunk_steps` and encode each as one sample.

    A trailing part shorter than a chunk is dropped (windows never span scenes).
    Returns dicts `{"__key__": ..., "<member>": bytes}` ready for a tar writer.
    """
    contract.check_name("scene id", scene.scene_id)
    num_chunks = scene.images.shape[0] // chunk_steps
    camera_names = [c.name for c in cameras]
    samples = []
    for chunk in range(num_chunks):
        steps = slice(chunk * chunk_steps, (chunk + 1) * chunk_steps)
        sample: dict[str, Any] = {"__key__": f"{scene.scene_id}-{chunk:03d}"}
        for step, frame_views in enumerate(scene.images[steps]):  # [V, H, W, 3]
            for camera, image in zip(camera_names, frame_views):
                sample[contract.image_member(camera, step)] = simplejpeg.encode_jpeg(
                    np.ascontiguousarray(image), quality=jpeg_quality, colorspace="RGB"
                )
        meta = {
            "schema_version": contract.SCHEMA_VERSION,
            "scene_id": scene.scene_id,
            "source": source,
            "split": split,
            "chunk_index": chunk,
            "first_step": steps.start,
            "cameras": camera_names,
            "intrinsics": [c.intrinsics for c in cameras],
            "ego_from_camera": [c.ego_from_camera for c in cameras],
            "timestamps_us": scene.timestamps_us[steps].astype(np.int64).tolist(),
            "info": scene.info,
        }
        sample[contract.META] = json.dumps(meta, sort_keys=True).encode()
        sample[contract.EGO] = contract.encode_npy(scene.world_from_ego[steps].astype(np.float64))
        sample[contract.ACTION] = contract.encode_npy(scene.actions[steps].astype(np.float32))
        sample[contract.AGENTS] = contract.encode_npy(scene.agents[steps].astype(np.float32))
        sample[contract.HAZARD] = contract.encode_npy(scene.hazard[steps].astype(np.uint8))
        if scene.road is not None:
            sample[contract.ROAD] = contract.encode_npy(scene.road[steps].astype(np.float32))
        samples.append(sample)
    return samples
