"""The synthetic world, written out in the Waymo Open Dataset v2 parquet layout.

This is the fixture `lwm shard waymo` is tested and benchmarked on: each segment is one
synthetic scene at 10 Hz with the five Waymo cameras, written as the `camera_image`,
`camera_calibration`, `vehicle_pose` and `lidar_box` components with the real v2 column names
(sharding.waymo_schema). The ground truth stays in the returned records.

    python -m sharding.waymo_export OUT [--train N] [--val M] [--steps T]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import simplejpeg

from sharding import waymo_schema as ws
from sharding.errors import ConfigError
from sharding.synthetic import CLASS_PEDESTRIAN, CameraConfig, RigConfig, SceneRecord, WorldConfig, simulate_scene
from sharding.synthetic_source import scene_seed

_TRANSFORM = pa.list_(pa.float64(), 16)  # Waymo stores transforms as fixed-size lists of 16


def waymo_rig_cameras() -> list[CameraConfig]:
    """The five Waymo cameras: front, front corners at +-45 deg, sides at +-90 deg (about 50 deg views)."""
    return [CameraConfig("FRONT", 0.0, 50.0), CameraConfig("FRONT_LEFT", 45.0, 50.0),
            CameraConfig("FRONT_RIGHT", -45.0, 50.0), CameraConfig("SIDE_LEFT", 90.0, 50.0),
            CameraConfig("SIDE_RIGHT", -90.0, 50.0)]


@dataclass
class WaymoExportConfig:
    """What to write; the same settings always give the same files."""

    train_segments: int = 2  # segments under training/
    val_segments: int = 1  # segments under validation/
    seed: int = 0
    steps: int = 40  # 10 Hz frames per segment (a real segment has about 199)
    width: int = 48  # image size of every camera, pixels
    height: int = 32
    cameras: list[CameraConfig] = field(default_factory=waymo_rig_cameras)
    world: WorldConfig = field(default_factory=WorldConfig)  # fps and steps are set by the export
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.train_segments < 0 or self.val_segments < 0 or self.train_segments + self.val_segments < 1:
            raise ConfigError(f"train_segments={self.train_segments}, val_segments={self.val_segments}: "
                              "export at least one segment")
        unknown = [c.name for c in self.cameras if c.name not in ws.CAMERAS]
        if unknown:
            raise ConfigError(f"cameras {unknown} are not Waymo camera names; choose from {list(ws.CAMERAS)}")


@dataclass
class ExportedSegment:
    """Ground truth of one exported segment, for tests."""

    name: str
    split: str  # Waymo split folder, e.g. "training"
    seed: int
    record: SceneRecord


def segment_name(seed: int, index: int) -> str:
    """Looks like a real one: `<context id>_<start>_<end>` (digits and underscores)."""
    context = int(np.random.default_rng([seed, index, 7]).integers(10**17, 10**18))
    return f"{context}_{index * 20:d}_000_{index * 20 + 20:d}_000"


def _flat(transforms: np.ndarray) -> pa.Array:
    """[N, 4, 4] -> a fixed-size-list column of row-major 16 floats."""
    return pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(transforms, np.float64).reshape(-1)), 16)


def _write(path: Path, columns: dict[str, pa.Array]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


def _export_segment(root: Path, split: str, name: str, record: SceneRecord, rig: RigConfig, quality: int) -> None:
    steps, views = record.images.shape[:2]
    camera_ids = np.array([ws.CAMERAS[c.name] for c in rig.cameras], np.int8)
    times = record.timestamps_us.astype(np.int64)
    _write(Path(ws.component_path(str(root), split, ws.CAMERA_IMAGE, name)), {
        ws.SEGMENT: pa.array([name] * steps * views),
        ws.TIMESTAMP: pa.array(np.repeat(times, views)),
        ws.CAMERA: pa.array(np.tile(camera_ids, steps)),
        ws.IMAGE: pa.array([simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality=quality, colorspace="RGB")
                            for frame in record.images for image in frame], pa.binary()),
        ws.IMAGE_POSE: _flat(np.repeat(record.world_from_ego, views, axis=0)),
        ws.IMAGE_POSE_TIMESTAMP: pa.array(np.repeat(times, views) / 1e6),
    })
    k, extrinsic = rig.intrinsics(), ws.waymo_extrinsic(rig.ego_from_camera())
    _write(Path(ws.component_path(str(root), split, ws.CAMERA_CALIBRATION, name)), {
        ws.SEGMENT: pa.array([name] * views),
        ws.CAMERA: pa.array(camera_ids),
        **{column: pa.array(k[:, i, j]) for column, (i, j) in zip(ws.INTRINSIC, [(0, 0), (1, 1), (0, 2), (1, 2)])},
        **{column: pa.array(np.zeros(views)) for column in ws.DISTORTION},
        ws.EXTRINSIC: _flat(extrinsic),
        ws.CAL_WIDTH: pa.array(np.full(views, rig.width, np.int32)),
        ws.CAL_HEIGHT: pa.array(np.full(views, rig.height, np.int32)),
        ws.ROLLING_SHUTTER: pa.array(np.full(views, 2, np.int8)),  # LEFT_TO_RIGHT, as Waymo's cameras
    })
    _write(Path(ws.component_path(str(root), split, ws.VEHICLE_POSE, name)), {
        ws.SEGMENT: pa.array([name] * steps), ws.TIMESTAMP: pa.array(times),
        ws.WORLD_FROM_VEHICLE: _flat(record.world_from_ego),
    })
    live = record.agents[..., 0] >= 0  # [T, N]; padding rows are not boxes
    t_index, n_index = np.nonzero(live)
    rows = record.agents[t_index, n_index].astype(np.float64)  # [M, F] in the ego (= vehicle) frame
    speed = rows[:, 9]
    box_type = np.where(rows[:, 1] == CLASS_PEDESTRIAN, ws.BOX_TYPES["TYPE_PEDESTRIAN"], ws.BOX_TYPES["TYPE_VEHICLE"])
    _write(Path(ws.component_path(str(root), split, ws.LIDAR_BOX, name)), {
        ws.SEGMENT: pa.array([name] * len(rows), pa.string()),
        ws.TIMESTAMP: pa.array(times[t_index]),
        ws.OBJECT_ID: pa.array([f"obj-{int(track):05d}" for track in rows[:, 0]], pa.string()),
        **{column: pa.array(rows[:, 2 + i]) for i, column in enumerate(ws.BOX_CENTER)},
        **{column: pa.array(rows[:, 5 + i]) for i, column in enumerate(ws.BOX_SIZE)},
        ws.BOX_HEADING: pa.array(rows[:, 8]),
        ws.BOX_TYPE: pa.array(box_type.astype(np.int8)),
        # speed along the box heading, in the vehicle frame (Waymo's box speed is a vector)
        ws.BOX_SPEED[0]: pa.array(speed * np.cos(rows[:, 8])),
        ws.BOX_SPEED[1]: pa.array(speed * np.sin(rows[:, 8])),
        ws.BOX_SPEED[2]: pa.array(np.zeros(len(rows))),
        "[LiDARBoxComponent].num_lidar_points_in_box": pa.array(np.full(len(rows), 100, np.int64)),
    })


def export_waymo(root: str | Path, config: WaymoExportConfig) -> list[ExportedSegment]:
    """Simulate and write every segment under `root`; returns their ground truth."""
    root = Path(root)
    rig = RigConfig(cameras=config.cameras, width=config.width, height=config.height)
    world = replace(config.world, fps=10.0, steps=config.steps)
    exported = []
    for index in range(config.train_segments + config.val_segments):
        split = "training" if index < config.train_segments else "validation"
        seed = scene_seed(config.seed + 7919, index)  # other seeds than `lwm shard synthetic` uses
        name = segment_name(config.seed, index)
        record = simulate_scene(seed, world, rig)
        _export_segment(root, split, name, record, rig, config.jpeg_quality)
        exported.append(ExportedSegment(name, split, seed, record))
    return exported


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write synthetic segments in the Waymo v2 parquet layout.")
    parser.add_argument("out")
    parser.add_argument("--train", type=int, default=2, help="segments under training/")
    parser.add_argument("--val", type=int, default=1, help="segments under validation/")
    parser.add_argument("--steps", type=int, default=40, help="10 Hz frames per segment")
    parser.add_argument("--width", type=int, default=48)
    parser.add_argument("--height", type=int, default=32)
    args = parser.parse_args(argv)
    config = WaymoExportConfig(train_segments=args.train, val_segments=args.val, steps=args.steps,
                               width=args.width, height=args.height)
    segments = export_waymo(args.out, config)
    print(f"wrote {len(segments)} segments to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
