"""The synthetic world, written out in the nuScenes layout: the fixture `lwm shard nuscenes` is tested on.

Each scene is simulated at the nuScenes camera rate (12 Hz); every sixth frame is a keyframe
(`sample`, 2 Hz) with `sample_annotation` boxes, the others are sweeps. Camera timestamps carry
the per-camera offset of the real rig (cameras fire as the lidar sweeps past them, within 50 ms)
plus a little jitter; each `sample_data` row has its own `ego_pose` at its own timestamp. Images
are rendered at the simulation step, so a camera's image leads its stamp by its offset (<= 45 ms).
Variants (other camera names and counts, image sizes, missing optional tables, a lidarseg table
without label files) reproduce datasets in this layout made by other people.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image
from pyquaternion import Quaternion

from sharding.errors import ConfigError
from sharding.nuscenes_layout.export_can import poses_at, write_can_bus, yaw_of
from sharding.nuscenes_layout.tables import TABLES, make_token, map_stub, write_table
from sharding.synthetic import CLASS_PEDESTRIAN, CameraConfig, RigConfig, SceneRecord, WorldConfig, simulate_scene
from sharding.synthetic_source import scene_seed

CAMERA_HZ = 12.0  # nuScenes camera rate
KEYFRAME_EVERY = 6  # 12 Hz frames per 2 Hz keyframe
LIDAR_PERIOD_US = 50_000  # the lidar turns at 20 Hz; a camera fires when the sweep crosses its view
CATEGORIES = {0: "vehicle.car", CLASS_PEDESTRIAN: "human.pedestrian.adult"}
# Official scene names by version (nuscenes.utils.splits) so that exported scenes land in the
# official splits; CAN bus blacklisted scenes (161-176, 309-314) are not in these prefixes.
SPLIT_LISTS = {"v1.0-mini": ("mini_train", "mini_val"), "v1.0-trainval": ("train", "val"), "v1.0-test": (None, "test")}


def nuscenes_rig_cameras() -> list[CameraConfig]:
    """The six nuScenes cameras: 70 deg views 55 deg apart, a 110 deg back camera."""
    return [
        CameraConfig("CAM_FRONT", 0.0, 70.0), CameraConfig("CAM_FRONT_RIGHT", -55.0, 70.0),
        CameraConfig("CAM_BACK_RIGHT", -110.0, 70.0), CameraConfig("CAM_BACK", 180.0, 110.0),
        CameraConfig("CAM_BACK_LEFT", 110.0, 70.0), CameraConfig("CAM_FRONT_LEFT", 55.0, 70.0),
    ]


@dataclass
class NuScenesExportConfig:
    """What to write; the same settings always give the same files."""

    version: str = "v1.0-mini"  # table folder name; official versions get official scene names
    train_scenes: int = 2
    val_scenes: int = 1
    seed: int = 0
    samples_per_scene: int = 12  # 2 Hz keyframes per scene (a real scene has about 40)
    cameras: list[CameraConfig] = field(default_factory=nuscenes_rig_cameras)
    width: int = 64  # stored image size, pixels
    height: int = 36
    render_downscale: int = 1  # render at size / this and upscale before JPEG (big frames, fast)
    world: WorldConfig = field(default_factory=WorldConfig)  # fps and steps are set by the export
    scene_names: list[str] | None = None  # null: official names for the version (see SPLIT_LISTS)
    jitter_us: int = 2000  # per-frame camera timestamp jitter, +- microseconds
    can_bus: bool = True  # write <root>/can_bus/scene-XXXX_<message>.json
    lidar: bool = True  # LIDAR_TOP keyframe rows (and empty .pcd.bin files), as a real dataset has
    omit_tables: list[str] = field(default_factory=list)  # tables not to write, e.g. ["map"]
    lidarseg_table: bool = False  # write lidarseg.json without its label files (the devkit alone fails)
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.train_scenes < 0 or self.val_scenes < 0 or self.train_scenes + self.val_scenes < 1:
            raise ConfigError(f"train_scenes={self.train_scenes}, val_scenes={self.val_scenes}: "
                              "export at least one scene")
        if self.samples_per_scene < 2:
            raise ConfigError(f"samples_per_scene={self.samples_per_scene} must be >= 2")
        unknown = sorted(set(self.omit_tables) - set(TABLES))
        if unknown:
            raise ConfigError(f"omit_tables: {unknown} are not nuScenes tables; choose from {list(TABLES)}")
        if self.scene_names is not None and len(self.scene_names) != self.train_scenes + self.val_scenes:
            raise ConfigError(f"scene_names has {len(self.scene_names)} names for "
                              f"{self.train_scenes + self.val_scenes} scenes")

    @property
    def steps(self) -> int:
        return self.samples_per_scene * KEYFRAME_EVERY


@dataclass
class ExportedScene:
    """Ground truth of one exported scene, for tests: the 12 Hz simulation and its split."""

    name: str
    split: str
    seed: int
    record: SceneRecord


def official_scene_names(version: str, train: int, val: int) -> tuple[list[str], list[str]]:
    """The first `train` / `val` scene names of the version's official splits (custom: scene-9000+)."""
    from nuscenes.utils.splits import create_splits_scenes

    if version not in SPLIT_LISTS:
        names = [f"scene-{9000 + i}" for i in range(train + val)]
        return names[:train], names[train:]
    splits = create_splits_scenes()
    train_list, val_list = SPLIT_LISTS[version]
    if train and train_list is None:
        raise ConfigError(f"{version} has no train split; export val scenes only")
    train_names = splits[train_list][:train] if train_list else []
    val_names = splits[val_list][:val]
    if len(train_names) < train or len(val_names) < val:
        raise ConfigError(f"{version} lists only {len(train_names)} train / {len(val_names)} val scenes")
    return list(train_names), list(val_names)


def camera_offsets_us(cameras: list[CameraConfig]) -> np.ndarray:
    """int64 [V]: when each camera fires after the keyframe (the lidar sweeps clockwise from the front)."""
    return np.array([round(((-c.yaw_deg) % 360.0) / 360.0 * LIDAR_PERIOD_US) for c in cameras], np.int64)


def _yaw_quaternion(yaw: float) -> list[float]:
    return list(map(float, Quaternion(axis=[0.0, 0.0, 1.0], angle=float(yaw)).elements))


class _Tables:
    """Rows of every table, filled scene by scene."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict]] = {name: [] for name in TABLES}

    def add(self, table: str, **row) -> str:
        self.rows[table].append(row)
        return row["token"]


def _encode_image(image: np.ndarray, size: tuple[int, int], quality: int) -> bytes:
    """uint8 [h, w, 3] -> JPEG bytes at `size` (w, h), upscaled when rendered small."""
    if (image.shape[1], image.shape[0]) != size:
        image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    return simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality=quality, colorspace="RGB")


def _export_scene(root: Path, tables: _Tables, config: NuScenesExportConfig, name: str, index: int, seed: int,
                  record: SceneRecord, rig: RigConfig, sensors: dict[str, str]) -> None:
    """Rows and files of one scene: log, scene, samples, sample_data + ego_pose, annotations."""
    log_token = make_token("log", config.seed, name)
    logfile = f"n015-synthetic-s{config.seed}-{name}"
    tables.add("log", token=log_token, logfile=logfile, vehicle="n015", date_captured="2020-09-13",
               location="singapore-onenorth")
    scene_token = make_token("scene", config.seed, name)
    ts = record.timestamps_us
    keyframes = list(range(0, config.steps, KEYFRAME_EVERY))
    sample_tokens = [make_token("sample", scene_token, j) for j in range(len(keyframes))]
    for j, frame in enumerate(keyframes):
        tables.add("sample", token=sample_tokens[j], timestamp=int(ts[frame]), scene_token=scene_token,
                   prev=sample_tokens[j - 1] if j else "", next=sample_tokens[j + 1] if j + 1 < len(keyframes) else "")
    tables.add("scene", token=scene_token, log_token=log_token, nbr_samples=len(keyframes), name=name,
               first_sample_token=sample_tokens[0], last_sample_token=sample_tokens[-1],
               description=f"synthetic world, seed {seed}, {record.info.get('weather')}, {record.info.get('lighting')}")

    def add_channel(channel: str, frames: list[int], stamps: np.ndarray, size: tuple[int, int],
                    images: np.ndarray | None) -> None:
        calibration = make_token("calibrated_sensor", log_token, channel)
        if images is not None:
            v = rig.camera_names.index(channel)
            e = rig.ego_from_camera()[v]
            tables.add("calibrated_sensor", token=calibration, sensor_token=sensors[channel],
                       translation=list(map(float, e[:3, 3])),
                       rotation=list(map(float, Quaternion(matrix=e[:3, :3]).elements)),
                       camera_intrinsic=rig.intrinsics()[v].tolist())
        else:  # lidar: above the roof, x forward
            tables.add("calibrated_sensor", token=calibration, sensor_token=sensors[channel],
                       translation=[0.94, 0.0, 1.84], rotation=[1.0, 0.0, 0.0, 0.0], camera_intrinsic=[])
        tokens = [make_token("sample_data", scene_token, channel, k) for k in frames]
        translations, yaws = poses_at(record, stamps.astype(np.float64))
        for i, (frame, stamp) in enumerate(zip(frames, stamps)):
            key = frame % KEYFRAME_EVERY == 0
            folder = "samples" if key else "sweeps"
            ext = "jpg" if images is not None else "pcd.bin"
            filename = f"{folder}/{channel}/{logfile}__{channel}__{int(stamp)}.{ext}"
            (root / folder / channel).mkdir(parents=True, exist_ok=True)
            if images is not None:
                (root / filename).write_bytes(_encode_image(images[frame, rig.camera_names.index(channel)], size,
                                                            config.jpeg_quality))
            else:
                (root / filename).write_bytes(b"")
            pose_token = tables.add("ego_pose", token=make_token("ego_pose", tokens[i]), timestamp=int(stamp),
                                    translation=list(map(float, translations[i])), rotation=_yaw_quaternion(yaws[i]))
            sample = min(-(-frame // KEYFRAME_EVERY), len(keyframes) - 1)  # sweeps belong to the next keyframe
            tables.add("sample_data", token=tokens[i], sample_token=sample_tokens[sample], ego_pose_token=pose_token,
                       calibrated_sensor_token=calibration, timestamp=int(stamp),
                       fileformat="jpg" if images is not None else "pcd", is_key_frame=bool(key),
                       height=size[1] if images is not None else 0, width=size[0] if images is not None else 0,
                       filename=filename, prev=tokens[i - 1] if i else "",
                       next=tokens[i + 1] if i + 1 < len(tokens) else "")

    rng = np.random.default_rng([config.seed, index, 7])
    offsets = camera_offsets_us(config.cameras)
    for v, camera in enumerate(config.cameras):
        jitter = np.round(rng.normal(0.0, config.jitter_us / 2, config.steps)).clip(-config.jitter_us, config.jitter_us)
        stamps = ts + offsets[v] + jitter.astype(np.int64)
        add_channel(camera.name, list(range(config.steps)), stamps, (config.width, config.height), record.images)
    if config.lidar:
        add_channel("LIDAR_TOP", keyframes, ts[keyframes], (0, 0), None)
    _export_annotations(tables, record, keyframes, sample_tokens, scene_token)


def _export_annotations(tables: _Tables, record: SceneRecord, keyframes: list[int], sample_tokens: list[str],
                        scene_token: str) -> None:
    """Every agent on every keyframe as a world-frame box; one `instance` per track."""
    tracks: dict[int, list[dict]] = {}
    classes: dict[int, int] = {}
    for j, frame in enumerate(keyframes):
        pose, ego_yaw = record.world_from_ego[frame], float(yaw_of(record.world_from_ego[frame]))
        for row in record.agents[frame]:
            track = int(row[0])
            if track < 0:  # padding: the agent does not exist yet
                continue
            center = pose @ np.array([row[2], row[3], row[4], 1.0])
            classes[track] = int(row[1])
            tables.add("sample_annotation", token=make_token("sample_annotation", scene_token, track, j),
                               sample_token=sample_tokens[j],
                       instance_token=make_token("instance", scene_token, track), visibility_token="4",
                       attribute_tokens=[], translation=[float(c) for c in center[:3]],  # JSON floats (TRAPS.md)
                       size=[float(row[6]), float(row[5]), float(row[7])], rotation=_yaw_quaternion(ego_yaw + row[8]),
                       num_lidar_pts=10, num_radar_pts=0, prev="", next="")
            tracks.setdefault(track, []).append(tables.rows["sample_annotation"][-1])
    for track, rows in tracks.items():
        for a, b in zip(rows, rows[1:]):
            a["next"], b["prev"] = b["token"], a["token"]
        tokens = [row["token"] for row in rows]
        tables.add("instance", token=make_token("instance", scene_token, track),
                   category_token=make_token("category", CATEGORIES[classes[track]]), nbr_annotations=len(tokens),
                   first_annotation_token=tokens[0], last_annotation_token=tokens[-1])


def export_nuscenes(root: Path, config: NuScenesExportConfig) -> list[ExportedScene]:
    """Simulate and write `train_scenes + val_scenes` scenes under `root` in the nuScenes layout."""
    root = Path(root)
    table_root = root / config.version
    table_root.mkdir(parents=True, exist_ok=True)
    world = replace(config.world, fps=CAMERA_HZ, steps=config.steps)
    scale = max(1, config.render_downscale)
    render_rig = RigConfig(cameras=config.cameras, width=math.ceil(config.width / scale),
                           height=math.ceil(config.height / scale))
    rig = RigConfig(cameras=config.cameras, width=config.width, height=config.height)
    if config.scene_names is not None:
        names = list(config.scene_names)
        train_names, val_names = names[: config.train_scenes], names[config.train_scenes :]
    else:
        train_names, val_names = official_scene_names(config.version, config.train_scenes, config.val_scenes)

    tables = _Tables()
    channels = [(c.name, "camera") for c in config.cameras] + ([("LIDAR_TOP", "lidar")] if config.lidar else [])
    sensors = {name: tables.add("sensor", token=make_token("sensor", name), channel=name, modality=modality)
               for name, modality in channels}
    for index, name in enumerate(CATEGORIES.values()):
        tables.add("category", token=make_token("category", name), name=name, description=name, index=index)
    tables.add("attribute", token=make_token("attribute", "vehicle.moving"), name="vehicle.moving", description="")
    for level, name in enumerate(["v0-40", "v40-60", "v60-80", "v80-100"], start=1):
        tables.add("visibility", token=str(level), level=name, description=f"visibility of whole object is {name[1:]}%")

    exported = []
    for index, (name, split) in enumerate([(n, "train") for n in train_names] + [(n, "val") for n in val_names]):
        seed = scene_seed(config.seed, index)
        record = simulate_scene(seed, world, render_rig)
        _export_scene(root, tables, config, name, index, seed, record, rig, sensors)
        if config.can_bus:
            write_can_bus(root / "can_bus", name, record)
        exported.append(ExportedScene(name, split, seed, record))

    tables.rows["map"] = map_stub(root, [row["token"] for row in tables.rows["log"]])
    for name in TABLES:
        if name not in config.omit_tables:
            write_table(table_root, name, tables.rows[name])
    if config.lidarseg_table:
        write_table(table_root, "lidarseg", [{"token": make_token("lidarseg", 0), "filename": "lidarseg/missing.bin",
                                              "sample_data_token": tables.rows["sample_data"][0]["token"]}])
    return exported


def main(argv: list[str] | None = None) -> int:
    """`python -m sharding.nuscenes_layout.export ROOT`: write a small synthetic nuScenes-layout dataset."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder to write (dataroot of the new dataset)")
    parser.add_argument("--version", default="v1.0-mini")
    parser.add_argument("--train-scenes", type=int, default=2)
    parser.add_argument("--val-scenes", type=int, default=1)
    parser.add_argument("--samples", type=int, default=12, help="2 Hz keyframes per scene")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=36)
    parser.add_argument("--render-downscale", type=int, default=1)
    args = parser.parse_args(argv)
    config = NuScenesExportConfig(version=args.version, train_scenes=args.train_scenes, val_scenes=args.val_scenes,
                                  samples_per_scene=args.samples, width=args.width, height=args.height,
                                  render_downscale=args.render_downscale)
    scenes = export_nuscenes(Path(args.root), config)
    print(f"wrote {len(scenes)} scenes ({', '.join(s.name for s in scenes)}) to {args.root}/{args.version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
