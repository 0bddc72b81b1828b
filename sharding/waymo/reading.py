"""Read one Waymo v2 segment with pyarrow: column-projected, joined on segment, timestamp and camera.

Only the columns in `schema.NEEDED` are read, and only the rows of the chosen cameras
(a parquet filter), so a 1-2 GB camera_image file costs the chosen cameras' JPEG bytes.
Joins run on key-and-row-index tables: pyarrow 25's `Table.join` rejects the list-typed
transform columns, so the values are taken by row index after the join. No TensorFlow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sharding.errors import SourceError
from sharding.waymo import schema as ws

_ROW, _POSE_ROW, _CAL_ROW = "__row", "__pose_row", "__calibration_row"


@dataclass
class SegmentFiles:
    """The component files of one segment; `lidar_box` is None when the split has no box labels."""

    name: str
    split: str  # Waymo split folder
    camera_image: str
    camera_calibration: str
    vehicle_pose: str
    lidar_box: str | None

    def paths(self) -> list[str]:
        return [p for p in (self.camera_image, self.camera_calibration, self.vehicle_pose, self.lidar_box) if p]


@dataclass
class SegmentData:
    """One segment's frames for V chosen cameras (F frames where every camera and the pose exist).

    times_us:        int64 [F], sorted
    images:          list of F lists of V JPEG bytes
    world_from_vehicle: float64 [F, 4, 4]
    intrinsics:      float64 [V, 3, 3] at the calibrated size
    extrinsics:      float64 [V, 4, 4] Waymo camera frame -> vehicle
    sizes:           int [V, 2] calibrated (width, height)
    distortion:      float64 [V, 5] k1, k2, p1, p2, k3 (zeros when the columns are absent)
    boxes:           pyarrow Table of lidar_box rows (may be empty)
    """

    times_us: np.ndarray
    images: list[list[bytes]]
    world_from_vehicle: np.ndarray
    intrinsics: np.ndarray
    extrinsics: np.ndarray
    sizes: np.ndarray
    distortion: np.ndarray
    boxes: pa.Table


def check_columns(path: str, component: str) -> None:
    """Refuse a file without the columns `lwm shard waymo` reads, naming the file and the columns."""
    try:
        names = set(pq.read_schema(path).names)
    except (OSError, pa.ArrowException) as error:
        raise SourceError(f"{path}: not a readable parquet file ({error}); re-download the segment") from error
    missing = [c for c in ws.NEEDED[component] if c not in names]
    if missing:
        raise SourceError(f"{path}: missing column(s) {', '.join(missing)}; expected a Waymo Open Dataset v2 "
                          f"{component} component file (v2 parquet, flattened column names)")


def find_segments(root: str, splits: list[str]) -> list[SegmentFiles]:
    """Every segment of the given split folders, in split then name order, with its files checked."""
    if not os.path.isdir(root):
        raise SourceError(f"{root}: no such folder; point --root at the folder holding training/ and validation/")
    segments = []
    present = [s for s in splits if os.path.isdir(os.path.join(root, s))]
    if not present:
        raise SourceError(f"{root}: none of the split folders {splits} exist; expected "
                          f"{root}/<split>/camera_image/<segment>.parquet (Waymo v2 layout)")
    for split in present:
        image_dir = os.path.join(root, split, ws.CAMERA_IMAGE)
        if not os.path.isdir(image_dir):
            raise SourceError(f"{image_dir}: missing; a Waymo v2 split holds camera_image/, camera_calibration/, "
                              "vehicle_pose/ (and lidar_box/) folders")
        has_boxes = os.path.isdir(os.path.join(root, split, ws.LIDAR_BOX))
        for file in sorted(os.listdir(image_dir)):
            if not file.endswith(".parquet"):
                continue
            name = file.removesuffix(".parquet")
            paths = {c: ws.component_path(root, split, c, name)
                     for c in (ws.CAMERA_IMAGE, ws.CAMERA_CALIBRATION, ws.VEHICLE_POSE, ws.LIDAR_BOX)}
            if not has_boxes:
                paths[ws.LIDAR_BOX] = None
            for component, path in paths.items():
                if path is None:
                    continue
                if not os.path.exists(path):
                    raise SourceError(f"{path}: missing, but {paths[ws.CAMERA_IMAGE]} exists; every segment needs "
                                      f"its {component} file (re-download it or remove the segment)")
                check_columns(path, component)
            segments.append(SegmentFiles(name, split, *paths.values()))
    if not segments:
        raise SourceError(f"{root}: no segments (*.parquet) under {', '.join(present)}/camera_image/")
    return segments


def _read(path: str, component: str, columns: tuple[str, ...], filters=None) -> pa.Table:
    try:
        names = set(pq.read_schema(path).names)
        optional = [c for c in ws.OPTIONAL.get(component, ()) if c in names]
        return pq.read_table(path, columns=[*columns, *optional], filters=filters)
    except (OSError, pa.ArrowException) as error:
        raise SourceError(f"{path}: cannot read ({type(error).__name__}: {error}); re-download the segment") from error


def _transforms(table: pa.Table, column: str, where: str) -> np.ndarray:
    """A list<double>[16] column -> float64 [N, 4, 4] (row-major, as Waymo stores them)."""
    values = table.column(column).combine_chunks()
    lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
    if values.null_count or (lengths != 16).any():
        raise SourceError(f"{where}: column {column} must hold 16 numbers (a row-major 4x4) in every row")
    return values.flatten().to_numpy().astype(np.float64).reshape(-1, 4, 4)


def _check_times(table: pa.Table, where: str) -> None:
    kind = table.schema.field(ws.TIMESTAMP).type
    if not pa.types.is_integer(kind):
        raise SourceError(f"{where}: {ws.TIMESTAMP} is {kind}, expected integer microseconds (int64)")


def _with_row(table: pa.Table, name: str, keys: list[str]) -> pa.Table:
    return table.select(keys).append_column(name, pa.array(np.arange(table.num_rows)))


def read_segment(files: SegmentFiles, cameras: list[str]) -> SegmentData:
    """Frames of the chosen cameras joined with their vehicle pose and camera calibration."""
    ids = [ws.CAMERAS[c] for c in cameras]
    images = _read(files.camera_image, ws.CAMERA_IMAGE, ws.NEEDED[ws.CAMERA_IMAGE], [(ws.CAMERA, "in", ids)])
    poses = _read(files.vehicle_pose, ws.VEHICLE_POSE, ws.NEEDED[ws.VEHICLE_POSE])
    calibration = _read(files.camera_calibration, ws.CAMERA_CALIBRATION, ws.NEEDED[ws.CAMERA_CALIBRATION])
    _check_times(images, files.camera_image)
    _check_times(poses, files.vehicle_pose)

    keys = _with_row(images, _ROW, [ws.SEGMENT, ws.TIMESTAMP, ws.CAMERA])
    joined = keys.join(_with_row(poses, _POSE_ROW, [ws.SEGMENT, ws.TIMESTAMP]), keys=[ws.SEGMENT, ws.TIMESTAMP],
                       join_type="inner")
    joined = joined.join(_with_row(calibration, _CAL_ROW, [ws.SEGMENT, ws.CAMERA]), keys=[ws.SEGMENT, ws.CAMERA],
                         join_type="inner")
    intrinsics, extrinsics, sizes, distortion = _calibration(calibration, files, cameras)  # refuses absent cameras
    joined = joined.sort_by([(ws.TIMESTAMP, "ascending"), (ws.CAMERA, "ascending")])
    times = joined.column(ws.TIMESTAMP).to_numpy()
    camera_col = joined.column(ws.CAMERA).to_numpy()
    rows, pose_rows = joined.column(_ROW).to_numpy(), joined.column(_POSE_ROW).to_numpy()
    frame_times = np.unique(times)
    if not len(frame_times):
        raise SourceError(f"{files.camera_image}: no frame has both an image of {cameras} and a vehicle pose "
                          f"in {files.vehicle_pose}")

    image_column = images.column(ws.IMAGE)
    frames, frame_pose_rows = [], []
    starts = np.searchsorted(times, frame_times, side="left")
    ends = np.searchsorted(times, frame_times, side="right")
    for time_us, start, end in zip(frame_times, starts, ends):
        by_camera = dict(zip(camera_col[start:end].tolist(), rows[start:end].tolist()))
        if end - start != len(by_camera):
            raise SourceError(f"{files.camera_image}: two rows for one camera at {ws.TIMESTAMP}={time_us}; "
                              "each (timestamp, camera) must appear once")
        absent = [c for c, i in zip(cameras, ids) if i not in by_camera]
        if absent:
            raise SourceError(f"{files.camera_image}: frame {ws.TIMESTAMP}={time_us} has no image of "
                              f"{', '.join(absent)} (or no pose in {files.vehicle_pose}); drop the camera with --cameras")
        frames.append([image_column[by_camera[i]].as_py() for i in ids])
        frame_pose_rows.append(pose_rows[start])
    pose_matrices = _transforms(poses, ws.WORLD_FROM_VEHICLE, files.vehicle_pose)[np.array(frame_pose_rows)]
    boxes = pa.table({c: pa.array([], pa.float64()) for c in ws.NEEDED[ws.LIDAR_BOX]})
    if files.lidar_box:
        boxes = _read(files.lidar_box, ws.LIDAR_BOX, ws.NEEDED[ws.LIDAR_BOX])
        _check_times(boxes, files.lidar_box)
    return SegmentData(frame_times.astype(np.int64), frames, pose_matrices, intrinsics, extrinsics, sizes,
                       distortion, boxes)


def _calibration(table: pa.Table, files: SegmentFiles, cameras: list[str]) -> tuple[np.ndarray, ...]:
    """(intrinsics [V, 3, 3], Waymo extrinsics [V, 4, 4], sizes int [V, 2], distortion [V, 5]) in `cameras` order."""
    rows = {int(c): r for r, c in enumerate(table.column(ws.CAMERA).to_pylist())}
    absent = [c for c in cameras if ws.CAMERAS[c] not in rows]
    if absent:
        raise SourceError(f"{files.camera_calibration}: no calibration row for camera(s) {', '.join(absent)}; "
                          "choose cameras it has with --cameras")
    index = np.array([rows[ws.CAMERAS[c]] for c in cameras])
    fu, fv, cu, cv = (table.column(c).to_numpy()[index].astype(np.float64) for c in ws.INTRINSIC)
    k = np.zeros((len(cameras), 3, 3))
    k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = fu, fv, cu, cv, 1.0
    if (fu <= 0).any() or (fv <= 0).any():
        raise SourceError(f"{files.camera_calibration}: focal lengths f_u, f_v must be positive, got {fu}, {fv}")
    sizes = np.column_stack([table.column(ws.CAL_WIDTH).to_numpy()[index],
                             table.column(ws.CAL_HEIGHT).to_numpy()[index]]).astype(int)
    distortion = np.column_stack([table.column(c).to_numpy()[index] if c in table.column_names
                                  else np.zeros(len(cameras)) for c in ws.DISTORTION]).astype(np.float64)
    return k, _transforms(table, ws.EXTRINSIC, files.camera_calibration)[index], sizes, distortion


def read_calibration(files: SegmentFiles, cameras: list[str]) -> tuple[np.ndarray, ...]:
    """One segment's calibration (see `_calibration`) without its images, for the manifest's rig."""
    table = _read(files.camera_calibration, ws.CAMERA_CALIBRATION, ws.NEEDED[ws.CAMERA_CALIBRATION])
    return _calibration(table, files, cameras)
