"""`lwm shard synthetic`: render procedural scenes and write them as shards.

Scene i of a dataset is simulated from a seed derived from (dataset seed, i), so any scene
can be re-rendered alone, and the same settings always give byte-identical shards.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sharding import contract
from sharding.errors import ConfigError
from sharding.samples import SceneArrays, encode_scene
from sharding.synthetic import ACTION_NAMES, AGENT_FIELDS, CameraConfig, RigConfig, WorldConfig, simulate_scene
from sharding.synthetic.road_lines import ROAD_LINES
from sharding.writer import SceneTask, fingerprint, plan_shards, write_dataset

SOURCE = "synthetic"


@dataclass
class SyntheticDatasetConfig:
    """What a synthetic dataset holds; these settings alone determine its bytes."""

    train_scenes: int = 64  # scenes in the train split
    val_scenes: int = 16  # scenes in the val split (other seeds: no leakage)
    seed: int = 0  # dataset seed; scene i uses a seed derived from (seed, i)
    chunk_steps: int = 64  # steps per WebDataset sample (one chunk of one scene)
    scenes_per_shard: int = 8  # scenes per .tar file
    jpeg_quality: int = 90  # 1-100
    world: WorldConfig = field(default_factory=WorldConfig)
    rig: RigConfig = field(default_factory=RigConfig)

    def __post_init__(self) -> None:
        checks = {
            "train_scenes": self.train_scenes >= 1,
            "val_scenes": self.val_scenes >= 0,
            "seed": self.seed >= 0,
            "chunk_steps": 1 <= self.chunk_steps <= self.world.steps,
            "scenes_per_shard": self.scenes_per_shard >= 1,
            "jpeg_quality": 1 <= self.jpeg_quality <= 100,
        }
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(
                    f"{key}={getattr(self, key)!r} is out of range; see `lwm shard synthetic --help`"
                    + (f" (chunk_steps must be <= world.steps={self.world.steps})" if key == "chunk_steps" else "")
                )


def config_from_dict(values: dict[str, Any]) -> SyntheticDatasetConfig:
    """The settings a synthetic manifest's `source_config` records, as a SyntheticDatasetConfig."""
    values = dict(values)
    world = WorldConfig(**values.pop("world", {}))
    rig = dict(values.pop("rig", {}))
    cameras = [CameraConfig(**c) for c in rig.pop("cameras", [])] or None
    return SyntheticDatasetConfig(world=world, rig=RigConfig(**rig, **({"cameras": cameras} if cameras else {})),
                                  **values)


def scene_seed(dataset_seed: int, index: int) -> int:
    return int(np.random.SeedSequence([dataset_seed, index]).generate_state(1)[0])


def camera_infos(rig: RigConfig) -> list[contract.CameraInfo]:
    intrinsics, extrinsics = rig.intrinsics(), rig.ego_from_camera()
    return [
        contract.CameraInfo(name, rig.width, rig.height, k.tolist(), e.tolist())
        for name, k, e in zip(rig.camera_names, intrinsics, extrinsics)
    ]


def _encode_synthetic_scene(task: SceneTask, config: SyntheticDatasetConfig) -> list[dict[str, Any]]:
    """Process-pool worker: simulate one scene and encode its chunks."""
    record = simulate_scene(task.handle, config.world, config.rig)
    scene = SceneArrays(
        scene_id=task.scene_id,
        images=record.images,
        timestamps_us=record.timestamps_us,
        world_from_ego=record.world_from_ego,
        actions=record.actions,
        agents=record.agents,
        hazard=record.hazard,
        info={"seed": task.handle, **record.info},
        road=record.road,
    )
    return encode_scene(
        scene,
        source=SOURCE,
        split=task.split,
        cameras=camera_infos(config.rig),
        chunk_steps=config.chunk_steps,
        jpeg_quality=config.jpeg_quality,
    )


def dataset_fingerprint(config: SyntheticDatasetConfig) -> str:
    return fingerprint({"source": SOURCE, "schema": contract.SCHEMA_VERSION, **asdict(config)})


def shard_synthetic(
    config: SyntheticDatasetConfig, out: str | Path, workers: int = 2, progress: bool = True, **fleet: Any
) -> contract.Manifest:
    """Render `train_scenes + val_scenes` scenes into shards under `out`, `workers` at a time.

    `out` is a folder or fsspec URL; `fleet` takes write_dataset's `partition` and `skip_bad`.
    """
    tasks = [
        SceneTask(f"synth-{config.seed}-{i:05d}", "train" if i < config.train_scenes else "val",
                  scene_seed(config.seed, i))
        for i in range(config.train_scenes + config.val_scenes)
    ]
    manifest_fields = dict(
        source=SOURCE,
        fps=config.world.fps,
        chunk_steps=config.chunk_steps,
        action_names=list(ACTION_NAMES),
        agent_fields=list(AGENT_FIELDS),
        road_lines=list(ROAD_LINES),
        cameras=camera_infos(config.rig),
        fingerprint=dataset_fingerprint(config),
        source_config=asdict(config),
    )
    return write_dataset(
        out,
        plan_shards(tasks, config.scenes_per_shard),
        functools.partial(_encode_synthetic_scene, config=config),
        manifest_fields,
        workers=workers,
        progress=progress,
        **fleet,
    )
