"""Small datasets made by the real shard writer from hand-made scenes (no renderer needed).

Each frame encodes (scene, step, camera) in its pixel values, so a test can read back which
window of which scene a batch came from.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from sharding import contract
from sharding.samples import SceneArrays, encode_scene
from sharding.writer import SceneTask, plan_shards, write_dataset

CAMERAS = ["front", "front_left", "front_right"]
ACTIONS = ["speed", "yaw_rate", "steer", "throttle", "brake"]


def camera_infos(size: int = 16, cameras: list[str] = CAMERAS) -> list[contract.CameraInfo]:
    k = [[size / 2, 0, size / 2], [0, size / 2, size / 2], [0, 0, 1]]
    return [contract.CameraInfo(c, size, size, k, np.eye(4).tolist()) for c in cameras]


# A camera looking straight ahead: camera z (optical axis) = ego x, camera x = ego -y, camera y = ego -z.
FORWARD = [[0.0, 0.0, 1.0, 1.5], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 1.6], [0.0, 0.0, 0.0, 1.0]]


def forward_camera(size: int = 32, name: str = "front") -> contract.CameraInfo:
    """A 90-degree pinhole camera mounted 1.6 m up, facing along the ego's x axis."""
    return contract.CameraInfo(name, size, size, [[size / 2, 0, (size - 1) / 2], [0, size / 2, (size - 1) / 2], [0, 0, 1]],
                               FORWARD)


def make_scene(index: int, steps: int, size: int, views: int = len(CAMERAS), road_lines: int = 0) -> SceneArrays:
    """Scene `index`: frame pixel (0, 0) holds [index, step, camera]; the ego drives along x.

    With `road_lines` K > 0 it has road.npy rows too: K straight lines y = 2 k - 3 (ego frame), 5 points each.
    """
    images = np.full((steps, views, size, size, 3), 128, np.uint8)
    for t in range(steps):
        for v in range(views):
            images[t, v, :8, :8] = [index * 20 % 250, t * 12 % 250, v * 80]  # one JPEG block
    poses = np.tile(np.eye(4), (steps, 1, 1))
    poses[:, 0, 3] = np.arange(steps) * 1.0 + 1000.0 * index
    actions = np.zeros((steps, len(ACTIONS)), np.float32)
    actions[:, 0] = 10.0 + index
    actions[:, 1] = np.arange(steps) * 0.01
    x, y = np.meshgrid(np.linspace(-10.0, 30.0, 5), 2.0 * np.arange(road_lines) - 3.0)  # [K, 5] each
    road = np.stack([x, y], axis=-1)  # [K, 5, 2]
    return SceneArrays(
        scene_id=f"scene-{index:03d}",
        images=images,
        timestamps_us=np.arange(steps, dtype=np.int64) * 100_000,
        world_from_ego=poses,
        actions=actions,
        agents=np.zeros((steps, 0, 3), np.float32),
        hazard=(np.arange(steps) % 7 == 0).astype(np.uint8),
        road=np.broadcast_to(road, (steps, *road.shape)).astype(np.float32) if road_lines else None,
    )


def _encode(task: SceneTask, steps: int, size: int, chunk_steps: int, cameras: list[str],
            road_lines: int = 0) -> list[dict]:
    scene = make_scene(task.handle, steps, size, len(cameras), road_lines)
    return encode_scene(scene, source="test", split=task.split, cameras=camera_infos(size, cameras),
                        chunk_steps=chunk_steps, jpeg_quality=95)


def make_dataset(
    out: Path,
    train_scenes: int = 6,
    val_scenes: int = 2,
    steps: int = 16,
    chunk_steps: int = 8,
    scenes_per_shard: int = 2,
    size: int = 16,
    workers: int = 1,
    cameras: list[str] = CAMERAS,
    road_lines: list[str] | None = None,
) -> contract.Manifest:
    """Write a dataset of hand-made scenes with the real writer; scene i is seeded by i.

    `road_lines` names road.npy's rows (none: no road geometry, as a real-log source without maps)."""
    road_lines = list(road_lines or [])
    tasks = [SceneTask(f"scene-{i:03d}", "train" if i < train_scenes else "val", i)
             for i in range(train_scenes + val_scenes)]
    fields = dict(source="test", fps=10.0, chunk_steps=chunk_steps, action_names=ACTIONS,
                  agent_fields=["a", "b", "c"], cameras=camera_infos(size, cameras),
                  road_lines=road_lines,
                  fingerprint=f"test-{train_scenes}-{val_scenes}-{steps}-{chunk_steps}-{scenes_per_shard}-{size}"
                  + (f"-road{len(road_lines)}" if road_lines else ""))
    encode = functools.partial(_encode, steps=steps, size=size, chunk_steps=chunk_steps, cameras=cameras,
                               road_lines=len(road_lines))
    return write_dataset(out, plan_shards(tasks, scenes_per_shard), encode, fields, workers=workers, progress=False)


REPO = Path(__file__).resolve().parents[1]
RUN_ENVIRONMENT = ("MLFLOW_TRACKING_URI", "LWM_RUN_NAME")  # would point a test's run at another store or name


def lwm_environment() -> dict[str, str]:
    """The environment for an `lwm` subprocess: this checkout importable (for test callbacks named by
    `_target_`), and none of the variables that would send its run elsewhere."""
    env = {k: v for k, v in os.environ.items() if k not in RUN_ENVIRONMENT}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env
