"""`lwm shard nuscenes`: nuScenes (or any dataset in its layout) -> shards, through the real nuscenes-devkit.

The parent process loads the tables once (`loading`), assigns each scene its official split
(`nuscenes.utils.splits`) and pulls out each scene's frames, poses and boxes (`extract`);
workers then synchronise the cameras and resample to the shard rate (`sync`), derive poses and
actions (`sharding.logs.motion`, `can_bus`), boxes and hazard labels (`sharding.logs.agents`),
resize the images once (`sharding.logs.images`) and encode the samples.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sharding import contract
from sharding.contract import AGENT_FIELDS, CLASS_NAMES
from sharding.errors import ConfigError, LwmError, SourceError
from sharding.logs.agents import HazardConfig, agents_on_grid, hazard_from_agents
from sharding.logs.images import load_resized, scaled_intrinsics
from sharding.logs.motion import POSE_ACTIONS, interpolate_poses, pose_actions
from sharding.nuscenes.can_bus import CAN_ACTIONS, ZOE_WHEEL_RADIUS_M, can_dataroot, read_can_actions
from sharding.nuscenes.extract import SceneExtract, extract_scene
from sharding.nuscenes.loading import open_nuscenes
from sharding.nuscenes.sync import DROP_REASONS, GAP_RULE, chunk_steps_of, plan_sync
from sharding.nuscenes.tables import NUSCENES_CAMERAS
from sharding.samples import SceneArrays, encode_scene
from sharding.writer import SceneTask, fingerprint, plan_shards, write_dataset

SOURCE = "nuscenes"
# Official split lists (nuscenes.utils.splits) per version, and the shard split each becomes.
# The contract has train and val only: the test split (no annotations) is written as val.
OFFICIAL_SPLITS = {"v1.0-mini": {"mini_train": "train", "mini_val": "val"},
                   "v1.0-trainval": {"train": "train", "val": "val"}, "v1.0-test": {"test": "val"}}
UNLISTED_RULES = ("hash", "train", "val", "skip", "error")


@dataclass
class NuScenesSourceConfig:
    """Hydra schema of `source.*` for `lwm shard nuscenes` (conf/source/nuscenes.yaml)."""

    dataroot: str = ""  # folder holding <version>/, samples/, sweeps/ (and maybe can_bus/)
    version: str = "v1.0-trainval"  # table folder under dataroot: v1.0-mini, v1.0-trainval, v1.0-test or custom
    cameras: list[str] | None = None  # channels to keep, in order; null: the six nuScenes cameras, else every camera
    reference_camera: str | None = None  # cameras synchronise to it; null: CAM_FRONT if kept, else the first
    width: int = 112  # stored image width, pixels (16:9 rounded so the CNN can halve it 4 times)
    height: int = 64  # stored image height, pixels
    fps: float = 10.0  # shard rate, Hz (cameras run at ~12 Hz; 12 keeps every frame)
    sync_tolerance_ms: float = 50.0  # a camera's frame must be this close to the reference frame
    chunk_steps: int = 64  # steps per sample; a 20 s scene at 10 Hz gives 3
    scenes_per_shard: int = 8  # scenes per .tar file
    jpeg_quality: int = 90  # 1-100
    smooth_steps: int = 3  # centred moving average of speed, yaw rate, acceleration (1: none)
    can_bus: str | None = None  # folder holding can_bus/: adds steer, throttle, brake, wheel_speed actions
    wheel_radius_m: float = ZOE_WHEEL_RADIUS_M  # wheel rpm -> m/s
    scenes: list[str] | None = None  # scene names to shard; null: all
    unlisted_scenes: str = "hash"  # split of scenes in no split list: hash, train, val, skip or error
    val_fraction: float = 0.15  # share of unlisted scenes `hash` puts in val
    hazard_horizon_s: float = 2.0  # hazard[t] = 1 if a near-collision happens within this time
    near_collision_m: float = 0.5  # ego-agent gap counting as a near-collision
    ttc_threshold_s: float = 1.5  # time to collision counting as a near-collision
    ego_length_m: float = 4.084  # Renault Zoe body (nuScenes' car); origin at the rear axle
    ego_width_m: float = 1.73
    ego_rear_overhang_m: float = 0.66

    def __post_init__(self) -> None:
        checks = {
            "dataroot": (bool(self.dataroot), "the dataset folder (--dataroot)"),
            "width": (self.width >= 8, ">= 8 pixels"), "height": (self.height >= 8, ">= 8 pixels"),
            "fps": (0 < self.fps <= 100, "a rate in (0, 100] Hz"),
            "sync_tolerance_ms": (self.sync_tolerance_ms > 0, "> 0 ms"),
            "chunk_steps": (self.chunk_steps >= 1, ">= 1"), "scenes_per_shard": (self.scenes_per_shard >= 1, ">= 1"),
            "jpeg_quality": (1 <= self.jpeg_quality <= 100, "1-100"),
            "smooth_steps": (self.smooth_steps >= 1 and self.smooth_steps % 2 == 1, "an odd number >= 1"),
            "wheel_radius_m": (self.wheel_radius_m > 0, "> 0 metres"),
            "unlisted_scenes": (self.unlisted_scenes in UNLISTED_RULES, f"one of {', '.join(UNLISTED_RULES)}"),
            "val_fraction": (0.0 <= self.val_fraction <= 1.0, "in [0, 1]"),
            "hazard_horizon_s": (self.hazard_horizon_s >= 0, ">= 0 s"),
            "cameras": (self.cameras is None or len(self.cameras) >= 1, "null or at least one camera"),
        }
        for key, (ok, fix) in checks.items():
            if not ok:
                raise ConfigError(f"source.{key}={getattr(self, key)!r} is invalid; use {fix}")

    @property
    def action_names(self) -> list[str]:
        return list(POSE_ACTIONS) + (list(CAN_ACTIONS) if self.can_bus else [])


def select_cameras(nusc, config: NuScenesSourceConfig) -> tuple[list[str], str]:
    """The channels to shard and the reference camera; an unknown name is refused with the choices."""
    available = [row["channel"] for row in nusc.sensor if row.get("modality") == "camera"]
    if config.cameras is None:
        cameras = [c for c in NUSCENES_CAMERAS if c in available] or available
    else:
        cameras = list(config.cameras)
        for name in cameras:
            if name not in available:
                raise SourceError(f"--cameras {name}: no camera of that name in sensor.json; "
                                  f"the cameras are {', '.join(available)}")
    if not cameras:
        raise SourceError("sensor.json lists no sensor with modality 'camera'; nothing to shard")
    for name in cameras:
        contract.check_name("camera", name)
    reference = config.reference_camera or ("CAM_FRONT" if "CAM_FRONT" in cameras else cameras[0])
    if reference not in cameras:
        raise SourceError(f"source.reference_camera={reference!r} is not among the cameras {cameras}")
    return cameras, reference


def assign_splits(nusc, config: NuScenesSourceConfig, names: list[str]) -> tuple[dict[str, str | None], dict]:
    """Scene name -> "train" / "val" (None: skipped), and a description of the rule for the manifest.

    `<version>/splits.json` ({"train": [...], "val": [...]}, the devkit's custom splits) wins;
    else the official lists of the version; scenes in none follow `unlisted_scenes`.
    """
    from nuscenes.utils.splits import create_splits_scenes, get_scenes_of_custom_split

    custom = Path(config.dataroot) / config.version / "splits.json"
    if custom.is_file():
        lists = {split: set(get_scenes_of_custom_split(split, nusc)) for split in contract.SPLITS}
        rule = {"lists": f"{custom} (train, val)"}
    else:
        official = create_splits_scenes()
        mapping = OFFICIAL_SPLITS.get(config.version, {})
        lists = {split: set() for split in contract.SPLITS}
        for official_name, split in mapping.items():
            lists[split] |= set(official[official_name])
        rule = {"lists": f"nuscenes.utils.splits {sorted(mapping)}" if mapping else "none"}
    out: dict[str, str | None] = {}
    unlisted = []
    for name in names:
        listed = [split for split in contract.SPLITS if name in lists[split]]
        if listed:
            out[name] = listed[0]
            continue
        unlisted.append(name)
        if config.unlisted_scenes == "error":
            raise SourceError(f"scene {name} is in no split list of {config.version}; add {custom} with "
                              "train/val lists or set source.unlisted_scenes=hash|train|val|skip")
        if config.unlisted_scenes == "hash":
            fraction = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 2**32
            out[name] = "val" if fraction < config.val_fraction else "train"
        else:
            out[name] = None if config.unlisted_scenes == "skip" else config.unlisted_scenes
    rule.update(unlisted=config.unlisted_scenes, unlisted_scenes=unlisted)
    return out, rule


def camera_infos(extract: SceneExtract, config: NuScenesSourceConfig) -> list[contract.CameraInfo]:
    """The scene's calibration at the stored size (intrinsics scaled from each camera's own size)."""
    target = (config.width, config.height)
    return [contract.CameraInfo(c.channel, config.width, config.height,
                                scaled_intrinsics(c.intrinsics, c.size, target).tolist(), c.ego_from_camera.tolist())
            for c in extract.cameras]


def _plan(extract: SceneExtract, config: NuScenesSourceConfig, reference: str):
    channels = [c.channel for c in extract.cameras]
    return plan_sync([c.timestamps for c in extract.cameras], channels.index(reference), config.fps,
                     config.sync_tolerance_ms * 1000.0, extract.name, [c.duplicated for c in extract.cameras],
                     extract.span_us)


def scene_arrays(extract: SceneExtract, config: NuScenesSourceConfig, reference: str) -> SceneArrays:
    """The scene at the shard rate: synchronised frames, poses, actions, boxes and hazard (whole chunks only)."""
    plan = _plan(extract, config, reference)
    keep = chunk_steps_of(plan.valid, config.chunk_steps)
    if not keep.size:
        raise SourceError(f"scene {extract.name}: {int(plan.valid.sum())} synchronised steps, in no run of "
                          f"chunk_steps={config.chunk_steps}; lower source.chunk_steps")
    world_from_ego = interpolate_poses(extract.pose_times, extract.pose_translations, extract.pose_rotations,
                                       plan.grid_us)
    actions = pose_actions(world_from_ego, 1.0 / config.fps, config.smooth_steps)
    info: dict[str, Any] = {}
    if config.can_bus:
        can, can_info = read_can_actions(can_dataroot(config.can_bus), extract.name, plan.grid_us,
                                         config.wheel_radius_m)
        actions = np.concatenate([actions, can], axis=1)
        info.update(can_info)
    agents, velocity = agents_on_grid(extract.annotations, plan.grid_us, world_from_ego, hold_us=0.5e6 / config.fps)
    hazard_config = HazardConfig(config.ego_length_m, config.ego_width_m, config.ego_rear_overhang_m,
                                 config.near_collision_m, config.ttc_threshold_s, config.hazard_horizon_s)
    hazard, _ = hazard_from_agents(agents, velocity, actions[:, 0], config.fps, hazard_config)

    for camera in extract.cameras:  # every listed frame, used or not: a missing one means a broken copy
        missing = next((f for f in camera.filenames if not os.path.isfile(f)), None)
        if missing:
            raise SourceError(f"{missing}: listed in sample_data ({camera.channel}, {extract.name}) but missing on "
                              "disk; restore the file (or remove its row and re-link prev/next)")
    target = (config.width, config.height)
    images = np.empty((len(keep), len(extract.cameras), config.height, config.width, 3), np.uint8)
    cache: dict[tuple[int, int], np.ndarray] = {}
    for row, step in enumerate(keep):
        for v, camera in enumerate(extract.cameras):
            frame = int(plan.frames[step, v])
            if (v, frame) not in cache:
                cache[(v, frame)] = load_resized(camera.filenames[frame], target, camera.size)
            images[row, v] = cache[(v, frame)]
    ref = [c.channel for c in extract.cameras].index(reference)
    offset = np.abs(extract.cameras[ref].timestamps[plan.frames[keep, ref]] - plan.grid_us[keep])
    info.update(plan.counts(), dropped=plan.dropped, dropped_runs_us=plan.dropped_runs_us, steps_kept=int(keep.size),
                steps_dropped_by_chunking=int(plan.valid.sum() - keep.size),
                source_frames_read=len(cache), max_frame_offset_ms=round(float(offset.max()) / 1000, 2),
                annotations=int(len(extract.annotations.track)), hazard_steps=int(hazard[keep].sum()),
                scene_token=extract.token)
    return SceneArrays(extract.name, images, plan.grid_us[keep], world_from_ego[keep], actions[keep],
                       agents[keep], hazard[keep], info)


def _encode_nuscenes_scene(task: SceneTask, config: NuScenesSourceConfig, reference: str) -> list[dict[str, Any]]:
    """Process-pool worker: one scene's samples, or SourceError naming what is wrong with it."""
    extract: SceneExtract = task.handle
    if extract.error:
        raise SourceError(extract.error)
    scene = scene_arrays(extract, config, reference)
    return encode_scene(scene, source=SOURCE, split=task.split, cameras=camera_infos(extract, config),
                        chunk_steps=config.chunk_steps, jpeg_quality=config.jpeg_quality)


def dataset_fingerprint(config: NuScenesSourceConfig) -> str:
    return fingerprint({"source": SOURCE, "schema": contract.SCHEMA_VERSION, **asdict(config)})


def plan_nuscenes(config: NuScenesSourceConfig) -> tuple[list[SceneTask], dict[str, Any]]:
    """Load the tables, pick scenes and cameras, extract every scene: the writer's tasks and manifest fields."""
    if config.can_bus:
        can_dataroot(config.can_bus)  # refuse a wrong folder before the long table load
    nusc = open_nuscenes(config.dataroot, config.version)
    cameras, reference = select_cameras(nusc, config)
    names = [scene["name"] for scene in nusc.scene]
    if config.scenes is not None:
        unknown = sorted(set(config.scenes) - set(names))
        if unknown:
            raise SourceError(f"source.scenes: {unknown} are not scenes of {config.version} (e.g. {names[:3]})")
    splits, split_rule = assign_splits(nusc, config, names)
    tasks = []
    totals = dict.fromkeys(["steps", "steps_unsynced", "reference_frames", "reference_unsynced", "steps_kept"], 0)
    dropped, by_scene = dict.fromkeys(DROP_REASONS, 0), {}
    first_good = None
    for scene in nusc.scene:
        if splits[scene["name"]] is None or (config.scenes is not None and scene["name"] not in config.scenes):
            continue
        extract = extract_scene(nusc, scene, cameras)
        if not extract.error:
            try:  # timestamps only: cheap here, and the manifest can say how many steps were dropped
                plan = _plan(extract, config, reference)
                for key, value in plan.counts().items():
                    totals[key] += value
                for key, value in plan.dropped.items():
                    dropped[key] += value
                if any(plan.dropped.values()):
                    by_scene[scene["name"]] = {"dropped": {k: v for k, v in plan.dropped.items() if v},
                                               "first_step_us": int(plan.grid_us[0]),
                                               "last_step_us": int(plan.grid_us[-1]),
                                               "dropped_runs_us": plan.dropped_runs_us}
                totals["steps_kept"] += int(chunk_steps_of(plan.valid, config.chunk_steps).size)
                first_good = first_good or extract
            except SourceError as error:
                extract.error = str(error)
        try:
            contract.check_name("scene id", scene["name"])
        except LwmError as error:
            extract.error = f"scene.json row {scene['token']}: {error}"
        tasks.append(SceneTask(scene["name"], splits[scene["name"]], extract))
    if first_good is None:
        reason = next((t.handle.error for t in tasks if t.handle.error), "no scene selected")
        raise SourceError(f"{config.dataroot}/{config.version}: no scene can be sharded ({reason})")
    source_config = asdict(config)
    source_config.update(
        actions_from="ego poses + CAN bus" if config.can_bus else "ego poses",
        reference_camera=reference, camera_channels=cameras, splits=split_rule,
        sync={**totals, "dropped": dropped, "gap_rule": GAP_RULE, "scenes": by_scene},
        agent_classes={str(k): v for k, v in CLASS_NAMES.items()},
    )
    fields = dict(source=SOURCE, fps=config.fps, chunk_steps=config.chunk_steps, action_names=config.action_names,
                  agent_fields=list(AGENT_FIELDS), cameras=camera_infos(first_good, config),
                  fingerprint=dataset_fingerprint(config), source_config=source_config)
    return tasks, fields


def shard_nuscenes(config: NuScenesSourceConfig, out: str | Path, workers: int = 2, progress: bool = True,
                   **fleet: Any) -> contract.Manifest:
    """Shard the dataset at `config.dataroot` into `out` (folder or fsspec URL); `fleet`: partition, skip_bad."""
    tasks, fields = plan_nuscenes(config)
    reference = fields["source_config"]["reference_camera"]
    encode = functools.partial(_encode_nuscenes_scene, config=config, reference=reference)
    return write_dataset(out, plan_shards(tasks, config.scenes_per_shard), encode, fields,
                         workers=workers, progress=progress, **fleet)
