"""Pull one scene's camera frames, ego poses, calibration and boxes out of the devkit's tables.

The result (`SceneExtract`) is plain numpy and strings, small enough to hand to a worker
process, so workers never load the tables themselves. Problems that concern one scene
(timestamps, chains, calibration changing mid-scene) are kept in `error` and raised by the
worker, so `--skip-bad` can leave that scene out while the others are written. Data from the
wild: a camera may start at a later sample than the scene (its stream starts at its first
keyframe), and rows of one camera may share a timestamp (kept once, flagged for `sync` to drop).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from sharding.errors import SourceError
from sharding.logs.agents import Annotations, class_of
from sharding.logs.images import image_size
from sharding.logs.motion import quaternion_matrices
from sharding.nuscenes.loading import check_unit_quaternion

MIN_FRAME_GAP_US, MAX_FRAME_GAP_US = 1_000, 2_000_000  # a camera's median frame spacing, if in microseconds


@dataclass
class CameraStream:
    """One camera's frames in a scene: timestamps int64 [F], files, and its calibration."""

    channel: str
    tokens: list[str]
    timestamps: np.ndarray
    filenames: list[str]  # absolute paths
    size: tuple[int, int]  # (width, height) of the stored images
    intrinsics: np.ndarray  # [3, 3] at `size`
    ego_from_camera: np.ndarray  # [4, 4]
    duplicated: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # bool [F]: another row had this stamp


@dataclass
class SceneExtract:
    name: str
    token: str
    cameras: list[CameraStream] = field(default_factory=list)
    pose_times: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # int64 [P]
    pose_translations: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # [P, 3]
    pose_rotations: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # [P, 4] (w, x, y, z)
    annotations: Annotations | None = None
    span_us: tuple[int, int] = (0, 0)  # first and last time of the scene: its samples and its camera frames
    error: str | None = None  # why this scene cannot be sharded (raised by the worker)


def _timestamp(row: dict, table: str, where: str) -> int:
    value = row.get("timestamp")
    if not isinstance(value, int) or isinstance(value, bool):
        raise SourceError(f"{table}.json row {row['token']} ({where}): timestamp {value!r} is not an integer; "
                          "expected integer microseconds since the epoch")
    return value


def _in_scene(nusc, sd: dict, scene_token: str) -> bool:
    return nusc.get("sample", sd["sample_token"])["scene_token"] == scene_token


def _scene_samples(nusc, scene: dict) -> list[dict]:
    """The scene's samples (keyframes) in order, following `next` from its first sample."""
    samples, token = [], scene["first_sample_token"]
    while token and len(samples) <= len(nusc.sample):
        sample = nusc.get("sample", token)
        if sample["scene_token"] != scene["token"]:
            break
        samples.append(sample)
        token = sample["next"]
    return samples


def _camera_stream(nusc, scene: dict, samples: list[dict], channel: str) -> tuple[CameraStream, list[dict]]:
    """The camera's frames in the scene (walking prev/next from its first keyframe), and their ego poses.

    The first keyframe may be in a later sample than the scene's first (a camera that starts late).
    """
    where = f"{channel}, {scene['name']}"
    first = next((sample for sample in samples if channel in sample["data"]), None)
    if first is None:
        sensors = sorted({name for sample in samples for name in sample["data"]})
        raise SourceError(f"scene {scene['name']}: no {channel} keyframe in any of its {len(samples)} samples; "
                          f"its sensors are {sensors}; leave the camera out (--cameras) or the scene "
                          "(source.scenes, --skip-bad)")
    token = first["data"][channel]
    while (prev := nusc.get("sample_data", token)["prev"]) and _in_scene(nusc, nusc.get("sample_data", prev),
                                                                         scene["token"]):
        token = prev  # some logs have sweeps before the first keyframe
    rows, seen = [], set()
    while token and token not in seen:
        sd = nusc.get("sample_data", token)
        if not _in_scene(nusc, sd, scene["token"]):
            break
        seen.add(token)
        rows.append(sd)
        token = sd["next"]
    if token in seen:
        raise SourceError(f"sample_data.json row {token} ({where}): the prev/next chain loops back; fix 'next'")
    stamps = np.array([_timestamp(sd, "sample_data", where) for sd in rows], np.int64)
    back = np.flatnonzero(np.diff(stamps) < 0)
    if back.size:
        i = int(back[0]) + 1
        raise SourceError(f"sample_data.json row {rows[i]['token']} ({where}): timestamp {stamps[i]} is not after "
                          f"the previous frame's {stamps[i - 1]} (row {rows[i - 1]['token']}); timestamps must "
                          "increase along prev/next")
    repeat = np.concatenate([[False], np.diff(stamps) == 0])  # [F] this row repeats the previous row's stamp
    duplicated = np.concatenate([repeat[1:], [False]])[~repeat]  # [F'] the next row repeats this kept row's stamp
    poses = [nusc.get("ego_pose", sd["ego_pose_token"]) for sd in rows]
    rows, stamps = [sd for sd, again in zip(rows, repeat) if not again], stamps[~repeat]
    if len(stamps) > 1:
        gap = float(np.median(np.diff(stamps)))
        if not MIN_FRAME_GAP_US <= gap <= MAX_FRAME_GAP_US:
            raise SourceError(f"sample_data.json ({where}): frames are a median {gap:g} timestamp units apart; "
                              "expected microseconds (a 12 Hz camera is ~83333 apart); convert the timestamps")
    calibrations = {sd["calibrated_sensor_token"] for sd in rows}
    if len(calibrations) > 1:
        raise SourceError(f"sample_data.json ({where}): frames use {len(calibrations)} calibrated_sensor rows; "
                          "expected one calibration per camera per scene")
    cs = nusc.get("calibrated_sensor", rows[0]["calibrated_sensor_token"])
    rotation = check_unit_quaternion(cs["rotation"], f"calibrated_sensor.json row {cs['token']} ({channel})")
    ego_from_camera = np.eye(4)
    ego_from_camera[:3, :3] = quaternion_matrices(rotation[None])[0]
    ego_from_camera[:3, 3] = np.asarray(cs["translation"], np.float64)
    filenames = [os.path.join(nusc.dataroot, sd["filename"]) for sd in rows]
    sizes = {(sd.get("width") or 0, sd.get("height") or 0) for sd in rows}
    if len(sizes) > 1:
        raise SourceError(f"sample_data.json ({where}): frames of {len(sizes)} sizes {sorted(sizes)}; "
                          "expected one image size per camera")
    size = sizes.pop()
    if 0 in size:  # some exports leave width/height 0: read the first image's header instead
        try:
            with open(filenames[0], "rb") as f:
                size = image_size(f.read(), filenames[0])
        except FileNotFoundError as error:
            raise SourceError(f"{filenames[0]}: listed in sample_data but missing on disk") from error
    stream = CameraStream(channel, [sd["token"] for sd in rows], stamps, filenames, (int(size[0]), int(size[1])),
                          np.asarray(cs["camera_intrinsic"], np.float64), ego_from_camera, duplicated)
    return stream, poses


def _poses(rows: list[dict], scene_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted, de-duplicated ego poses: times int64 [P], translations [P, 3], rotations [P, 4]."""
    by_time: dict[int, dict] = {}
    for row in rows:
        by_time.setdefault(_timestamp(row, "ego_pose", scene_name), row)
    times = np.array(sorted(by_time), np.int64)
    translations = np.array([by_time[t]["translation"] for t in times], np.float64)
    if translations.shape != (len(times), 3) or not np.isfinite(translations).all():
        raise SourceError(f"ego_pose.json ({scene_name}): translations must be 3 finite numbers each")
    rotations = np.array([check_unit_quaternion(by_time[t]["rotation"], f"ego_pose.json row {by_time[t]['token']}")
                          for t in times])
    return times, translations, rotations


def _annotations(nusc, scene: dict, samples: list[dict]) -> Annotations:
    """Every box of the scene's keyframes, tracks numbered in order of first appearance."""
    tracks: dict[str, int] = {}
    classes, track, times, centers, sizes, yaws = [], [], [], [], [], []
    for sample in samples:
        stamp = _timestamp(sample, "sample", scene["name"])
        for ann_token in sample["anns"]:
            ann = nusc.get("sample_annotation", ann_token)
            where = f"sample_annotation.json row {ann['token']} ({scene['name']})"
            if ann["instance_token"] not in tracks:
                tracks[ann["instance_token"]] = len(tracks)
                classes.append(class_of(ann["category_name"]))
            w, x, y, z = check_unit_quaternion(ann["rotation"], where)
            track.append(tracks[ann["instance_token"]])
            times.append(stamp)
            centers.append(ann["translation"])
            sizes.append(ann["size"])
            yaws.append(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))
    return Annotations(np.array(track, np.int64), np.array(times, np.int64),
                       np.array(centers, np.float64).reshape(-1, 3), np.array(sizes, np.float64).reshape(-1, 3),
                       np.array(yaws, np.float64), np.array(classes, np.int64))


def extract_scene(nusc, scene: dict, channels: list[str]) -> SceneExtract:
    """Everything the worker needs for `scene` with the given cameras, or the reason it cannot be read."""
    extract = SceneExtract(scene["name"], scene["token"])
    try:
        samples = _scene_samples(nusc, scene)
        pose_rows = []
        for channel in channels:
            stream, poses = _camera_stream(nusc, scene, samples, channel)
            extract.cameras.append(stream)
            pose_rows.extend(poses)
        extract.pose_times, extract.pose_translations, extract.pose_rotations = _poses(pose_rows, scene["name"])
        extract.annotations = _annotations(nusc, scene, samples)
        times = [_timestamp(s, "sample", scene["name"]) for s in samples[:1] + samples[-1:]]
        times += [int(t) for c in extract.cameras for t in c.timestamps[[0, -1]]]
        extract.span_us = (min(times), max(times))
    except SourceError as error:
        return SceneExtract(scene["name"], scene["token"], error=str(error))
    except KeyError as error:
        return SceneExtract(scene["name"], scene["token"],
                            error=f"a row of scene {scene['name']} lacks the field or token {error}")
    return extract
