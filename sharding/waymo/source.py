"""`lwm shard waymo`: Waymo Open Dataset v2 segments (parquet, read with pyarrow) -> shards.

One segment is one scene. Its 10 Hz frames are resampled onto the shard's fixed rate (nearest
frame for images, interpolated poses), images are resized once, actions come from the vehicle
poses (speed, yaw rate, acceleration, curvature), `lidar_box` labels become `agents.npy` in the
ego frame, and hazard labels come from ego-agent distance and time to collision. The Waymo
vehicle frame is the ego frame (x forward, y left, z up); cameras are converted to OpenCV.
"""

from __future__ import annotations

import functools
import io
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import simplejpeg
from PIL import Image

from sharding import contract
from sharding.contract import AGENT_FIELDS, CLASS_OBJECT, CLASS_PEDESTRIAN, CLASS_VEHICLE
from sharding.errors import ConfigError, SourceError
from sharding.logs.agents import Annotations, HazardConfig, agents_on_grid, hazard_from_agents
from sharding.logs.images import scaled_intrinsics
from sharding.logs.motion import POSE_ACTIONS, interpolate_poses, pose_actions
from sharding.samples import SceneArrays, encode_scene
from sharding.waymo import schema as ws
from sharding.waymo.reading import SegmentData, SegmentFiles, find_segments, read_calibration, read_segment
from sharding.writer import SceneTask, fingerprint, plan_shards, write_dataset

SOURCE = "waymo"
# Cyclists count as vehicles, as nuScenes' vehicle.bicycle does; signs and unknown boxes are objects.
BOX_CLASSES = {ws.BOX_TYPES["TYPE_VEHICLE"]: CLASS_VEHICLE, ws.BOX_TYPES["TYPE_CYCLIST"]: CLASS_VEHICLE,
               ws.BOX_TYPES["TYPE_PEDESTRIAN"]: CLASS_PEDESTRIAN}


@dataclass
class WaymoSourceConfig:
    """How `lwm shard waymo` reads a Waymo v2 folder; with the input files these fix the bytes."""

    root: str | None = None  # folder holding training/ and validation/ (Waymo v2 parquet layout)
    splits: list[str] = field(default_factory=lambda: list(ws.SPLITS))  # split folders to read
    cameras: list[str] = field(default_factory=lambda: list(ws.CAMERAS))  # Waymo camera names, in shard order
    width: int = 96  # output image width, pixels (every camera resized to it)
    height: int = 64  # output image height, pixels
    fps: float = 10.0  # shard rate, Hz (Waymo logs 10 Hz)
    sync_tolerance_ms: float = 60.0  # a shard step takes the nearest frame within this, else the segment fails
    chunk_steps: int = 64  # steps per WebDataset sample
    scenes_per_shard: int = 8  # segments per .tar file
    jpeg_quality: int = 90  # 1-100
    smooth_steps: int = 3  # moving-average width of speed and yaw rate, steps (1: none)
    ego_length_m: float = 4.9  # ego body for hazard labels (Jaguar I-Pace with sensors)
    ego_width_m: float = 2.1
    ego_rear_overhang_m: float = 1.0  # metres from the vehicle-frame origin back to the rear bumper
    near_collision_m: float = 0.5  # ego-agent gap that counts as a near-collision
    ttc_threshold_s: float = 1.5  # time to collision that counts as a near-collision
    hazard_horizon_s: float = 2.0  # hazard[t] = 1 if a near-collision happens within this

    def __post_init__(self) -> None:
        unknown = [s for s in self.splits if s not in ws.SPLITS]
        if unknown or not self.splits:
            raise ConfigError(f"splits={self.splits}: choose from {list(ws.SPLITS)} (e.g. --split training)")
        unknown = [c for c in self.cameras if c not in ws.CAMERAS]
        if unknown or not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ConfigError(f"cameras={self.cameras}: give distinct names from {list(ws.CAMERAS)}, "
                              "e.g. --cameras FRONT,FRONT_LEFT")
        checks = {"width": self.width >= 8, "height": self.height >= 8, "fps": 0 < self.fps <= 10.0,
                  "sync_tolerance_ms": self.sync_tolerance_ms > 0, "chunk_steps": self.chunk_steps >= 1,
                  "scenes_per_shard": self.scenes_per_shard >= 1, "jpeg_quality": 1 <= self.jpeg_quality <= 100,
                  "smooth_steps": self.smooth_steps >= 1, "hazard_horizon_s": self.hazard_horizon_s >= 0}
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"source.{key}={getattr(self, key)!r} is out of range; see `lwm shard waymo --help`")

    def hazard(self) -> HazardConfig:
        return HazardConfig(self.ego_length_m, self.ego_width_m, self.ego_rear_overhang_m, self.near_collision_m,
                            self.ttc_threshold_s, self.hazard_horizon_s)


def camera_infos(config: WaymoSourceConfig, files: SegmentFiles) -> list[contract.CameraInfo]:
    """The rig at the output size from one segment's calibration (intrinsics scaled, extrinsics to OpenCV)."""
    intrinsics, extrinsics, sizes, _ = read_calibration(files, config.cameras)
    target = (config.width, config.height)
    ego_from_camera = ws.opencv_extrinsic(extrinsics)
    return [contract.CameraInfo(name, config.width, config.height,
                                scaled_intrinsics(k, tuple(size), target).tolist(), e.tolist())
            for name, k, e, size in zip(config.cameras, intrinsics, ego_from_camera, sizes)]


def _decode_resized(data: bytes, target: tuple[int, int], where: str) -> np.ndarray:
    """JPEG bytes -> uint8 [H, W, 3] at `target` (w, h); libjpeg's DCT scaling first, then antialiased resize."""
    try:
        image = simplejpeg.decode_jpeg(data, colorspace="RGB", min_width=target[0], min_height=target[1])
    except ValueError:
        try:
            with Image.open(io.BytesIO(data)) as opened:
                image = np.asarray(opened.convert("RGB"))
        except OSError as error:
            raise SourceError(f"{where}: image is not a readable JPEG/PNG ({error}); re-download the segment") from error
    if (image.shape[1], image.shape[0]) != target:
        image = np.asarray(Image.fromarray(image).resize(target, Image.BILINEAR))
    return image


def _rotation_quaternions(rotations: np.ndarray) -> np.ndarray:
    """Rotation matrices [N, 3, 3] -> unit quaternions (w, x, y, z) [N, 4] (Shepperd's method, w >= 0)."""
    m = rotations
    trace = np.trace(m, axis1=1, axis2=2)
    candidates = np.stack([1 + trace, 1 + 2 * m[:, 0, 0] - trace, 1 + 2 * m[:, 1, 1] - trace,
                           1 + 2 * m[:, 2, 2] - trace], axis=1)  # 4 * component^2
    pick = np.argmax(candidates, axis=1)
    q = np.zeros((len(m), 4))
    for i, (row, k) in enumerate(zip(m, pick)):
        s = 2.0 * np.sqrt(max(candidates[i, k], 1e-12))
        if k == 0:
            q[i] = [s / 4, (row[2, 1] - row[1, 2]) / s, (row[0, 2] - row[2, 0]) / s, (row[1, 0] - row[0, 1]) / s]
        elif k == 1:
            q[i] = [(row[2, 1] - row[1, 2]) / s, s / 4, (row[0, 1] + row[1, 0]) / s, (row[0, 2] + row[2, 0]) / s]
        elif k == 2:
            q[i] = [(row[0, 2] - row[2, 0]) / s, (row[0, 1] + row[1, 0]) / s, s / 4, (row[1, 2] + row[2, 1]) / s]
        else:
            q[i] = [(row[1, 0] - row[0, 1]) / s, (row[0, 2] + row[2, 0]) / s, (row[1, 2] + row[2, 1]) / s, s / 4]
    q *= np.where(q[:, :1] < 0, -1.0, 1.0)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def step_grid(times_us: np.ndarray, fps: float, tolerance_us: float, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Shard step times int64 [T] from the first frame on, and the nearest frame index [T] of each.

    A step whose nearest frame is further than the tolerance (a gap in the log) fails the
    segment: a silent hole would break the fixed rate that actions and windows assume.
    """
    span = float(times_us[-1] - times_us[0])
    steps = int(np.floor(span * fps / 1e6 + 1e-3)) + 1
    grid = times_us[0] + np.round(np.arange(steps) * 1e6 / fps).astype(np.int64)
    right = np.clip(np.searchsorted(times_us, grid), 1, len(times_us) - 1) if len(times_us) > 1 else np.zeros(steps, int)
    left = np.maximum(right - 1, 0)
    nearest = np.where(np.abs(times_us[left] - grid) <= np.abs(times_us[right] - grid), left, right)
    error = np.abs(times_us[nearest] - grid)
    if (error > tolerance_us).any():
        bad = int(np.argmax(error > tolerance_us))
        raise SourceError(f"{where}: no frame within {tolerance_us / 1e3:.0f} ms of step {bad} "
                          f"(t={int(grid[bad])} us; nearest frame {int(error[bad]) / 1e3:.0f} ms away): the log has a gap; "
                          "raise source.sync_tolerance_ms or skip it with --skip-bad")
    return grid, nearest


def _annotations(data: SegmentData) -> tuple[Annotations, list[str]]:
    """lidar_box rows (vehicle frame at their frame) -> world-frame Annotations, and the object ids by track."""
    boxes = data.boxes
    frame_of = {int(t): i for i, t in enumerate(data.times_us)}
    times = boxes.column(ws.TIMESTAMP).to_numpy().astype(np.int64) if boxes.num_rows else np.zeros(0, np.int64)
    keep = np.array([int(t) in frame_of for t in times], bool)  # boxes of frames without images are dropped
    ids = np.array(boxes.column(ws.OBJECT_ID).to_pylist() if boxes.num_rows else [], dtype=object)[keep]
    center = np.column_stack([boxes.column(c).to_numpy()[keep] for c in ws.BOX_CENTER]) if keep.any() else np.zeros((0, 3))
    size = np.column_stack([boxes.column(c).to_numpy()[keep] for c in ws.BOX_SIZE]) if keep.any() else np.zeros((0, 3))
    heading = boxes.column(ws.BOX_HEADING).to_numpy()[keep] if keep.any() else np.zeros(0)
    types = boxes.column(ws.BOX_TYPE).to_numpy()[keep] if keep.any() else np.zeros(0, int)
    poses = data.world_from_vehicle[[frame_of[int(t)] for t in times[keep]]] if keep.any() else np.zeros((0, 4, 4))
    world_center = np.einsum("nij,nj->ni", poses[:, :3, :3], center) + poses[:, :3, 3]
    world_yaw = heading + np.arctan2(poses[:, 1, 0], poses[:, 0, 0])
    track_ids = sorted(set(ids.tolist()))
    track_of = {t: i for i, t in enumerate(track_ids)}
    track = np.array([track_of[i] for i in ids], np.int64)
    classes = np.full(len(track_ids), CLASS_OBJECT, np.int64)
    for i, kind in zip(track, types):
        classes[i] = BOX_CLASSES.get(int(kind), CLASS_OBJECT)
    # Annotations holds sizes as (width, length, height), nuScenes' order; Waymo's size is (length, width, height).
    return Annotations(track, times[keep], world_center, size[:, [1, 0, 2]], world_yaw, classes), track_ids


def segment_scene(files: SegmentFiles, config: WaymoSourceConfig) -> SceneArrays:
    """Read one segment and resample it into a SceneArrays at `config.fps` (see the module docstring)."""
    data = read_segment(files, config.cameras)
    grid, nearest = step_grid(data.times_us, config.fps, config.sync_tolerance_ms * 1e3, files.camera_image)
    target = (config.width, config.height)
    images = np.empty((len(grid), len(config.cameras), config.height, config.width, 3), np.uint8)
    for step, frame in enumerate(nearest):
        for view, jpeg in enumerate(data.images[frame]):
            images[step, view] = _decode_resized(jpeg, target, f"{files.camera_image} t={data.times_us[frame]}")
    rotations = _rotation_quaternions(data.world_from_vehicle[:, :3, :3])
    world_from_ego = interpolate_poses(data.times_us, data.world_from_vehicle[:, :3, 3], rotations, grid)
    actions = pose_actions(world_from_ego, 1.0 / config.fps, config.smooth_steps)
    annotations, track_ids = _annotations(data)
    agents, velocity = agents_on_grid(annotations, grid, world_from_ego, hold_us=0.5e6 / config.fps)
    hazard, _ = hazard_from_agents(agents, velocity, actions[:, 0].astype(np.float64), config.fps, config.hazard())
    info = {"segment": files.name, "waymo_split": files.split, "track_ids": track_ids, "frames": len(data.times_us),
            "distortion_k1_k2_p1_p2_k3": {c: d.tolist() for c, d in zip(config.cameras, data.distortion)}}
    return SceneArrays(files.name, images, grid, world_from_ego, actions, agents, hazard, info)


def _encode_segment(task: SceneTask, config: WaymoSourceConfig) -> list[dict[str, Any]]:
    """Process-pool worker: one segment -> its samples (a SourceError becomes a skipped scene)."""
    files: SegmentFiles = task.handle
    return encode_scene(segment_scene(files, config), source=SOURCE, split=task.split,
                        cameras=camera_infos(config, files), chunk_steps=config.chunk_steps,
                        jpeg_quality=config.jpeg_quality)


def dataset_fingerprint(config: WaymoSourceConfig, segments: list[SegmentFiles]) -> str:
    """Settings plus every input file's relative path and size (the data decide the bytes too)."""
    settings = {k: v for k, v in asdict(config).items() if k != "root"}
    inputs = [[os.path.relpath(p, config.root), os.path.getsize(p)] for s in segments for p in s.paths()]
    return fingerprint({"source": SOURCE, "schema": contract.SCHEMA_VERSION, **settings, "inputs": inputs})


def shard_waymo(config: WaymoSourceConfig, out: str | Path, workers: int = 2, progress: bool = True,
                **fleet: Any) -> contract.Manifest:
    """Shard every segment under `config.root`; `fleet` takes write_dataset's `partition` and `skip_bad`."""
    if not config.root:
        raise ConfigError("source.root is not set; pass --root D (the folder holding training/ and validation/)")
    segments = find_segments(config.root, config.splits)
    tasks = [SceneTask(s.name, ws.SPLITS[s.split], s) for s in segments]
    manifest_fields = dict(
        source=SOURCE,
        fps=config.fps,
        chunk_steps=config.chunk_steps,
        action_names=list(POSE_ACTIONS),
        agent_fields=list(AGENT_FIELDS),
        cameras=camera_infos(config, segments[0]),  # each sample's meta.json has its own segment's calibration
        fingerprint=dataset_fingerprint(config, segments),
        source_config={**asdict(config), "actions_from": "vehicle_pose", "segments": len(segments)},
    )
    return write_dataset(out, plan_shards(tasks, config.scenes_per_shard),
                         functools.partial(_encode_segment, config=config), manifest_fields,
                         workers=workers, progress=progress, **fleet)
