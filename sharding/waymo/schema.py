"""The Waymo Open Dataset v2 parquet layout, as far as lightning-wm reads and writes it.

One file per segment and component: `<root>/<split>/<component>/<segment>.parquet`. Column
names are the flattened v2 dataclasses (waymo-open-dataset `src/waymo_open_dataset/v2/`):
keys as `key.<field>`, values as `[<Component>].<field>.<subfield>`. Transforms are 16 float64,
a row-major 4x4. The Waymo camera frame is x forward, y left, z up, not OpenCV: `CV_TO_WAYMO`
converts. Both the exporter (the test fixture) and the reader import these names, so they are
written down once.
"""

from __future__ import annotations

import numpy as np

SPLITS = {"training": "train", "validation": "val"}  # Waymo split folder -> shard split
CAMERAS = {"FRONT": 1, "FRONT_LEFT": 2, "FRONT_RIGHT": 3, "SIDE_LEFT": 4, "SIDE_RIGHT": 5}  # CameraName enum
BOX_TYPES = {"TYPE_UNKNOWN": 0, "TYPE_VEHICLE": 1, "TYPE_PEDESTRIAN": 2, "TYPE_SIGN": 3, "TYPE_CYCLIST": 4}

SEGMENT = "key.segment_context_name"
TIMESTAMP = "key.frame_timestamp_micros"
CAMERA = "key.camera_name"
OBJECT_ID = "key.laser_object_id"

CAMERA_IMAGE = "camera_image"
CAMERA_CALIBRATION = "camera_calibration"
VEHICLE_POSE = "vehicle_pose"
LIDAR_BOX = "lidar_box"

IMAGE = "[CameraImageComponent].image"
IMAGE_POSE = "[CameraImageComponent].pose.transform"
IMAGE_POSE_TIMESTAMP = "[CameraImageComponent].pose_timestamp"
_CAL = "[CameraCalibrationComponent]"
INTRINSIC = tuple(f"{_CAL}.intrinsic.{k}" for k in ("f_u", "f_v", "c_u", "c_v"))
DISTORTION = tuple(f"{_CAL}.intrinsic.{k}" for k in ("k1", "k2", "p1", "p2", "k3"))
EXTRINSIC = f"{_CAL}.extrinsic.transform"
CAL_WIDTH, CAL_HEIGHT = f"{_CAL}.width", f"{_CAL}.height"
ROLLING_SHUTTER = f"{_CAL}.rolling_shutter_direction"
WORLD_FROM_VEHICLE = "[VehiclePoseComponent].world_from_vehicle.transform"
_BOX = "[LiDARBoxComponent]"
BOX_CENTER = tuple(f"{_BOX}.box.center.{a}" for a in "xyz")
BOX_SIZE = tuple(f"{_BOX}.box.size.{a}" for a in "xyz")  # length, width, height
BOX_HEADING = f"{_BOX}.box.heading"
BOX_TYPE = f"{_BOX}.type"
BOX_SPEED = tuple(f"{_BOX}.speed.{a}" for a in "xyz")  # optional in v2; m/s, vehicle frame

# What `lwm shard waymo` reads from each component (column projection).
NEEDED = {
    CAMERA_IMAGE: (SEGMENT, TIMESTAMP, CAMERA, IMAGE),
    CAMERA_CALIBRATION: (SEGMENT, CAMERA, *INTRINSIC, EXTRINSIC, CAL_WIDTH, CAL_HEIGHT),
    VEHICLE_POSE: (SEGMENT, TIMESTAMP, WORLD_FROM_VEHICLE),
    LIDAR_BOX: (SEGMENT, TIMESTAMP, OBJECT_ID, *BOX_CENTER, *BOX_SIZE, BOX_HEADING, BOX_TYPE),
}
OPTIONAL = {CAMERA_CALIBRATION: DISTORTION}  # read when present

# p_waymo_camera = CV_TO_WAYMO @ p_opencv: OpenCV x right = -y, y down = -z, z forward = x.
CV_TO_WAYMO = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def opencv_extrinsic(vehicle_from_waymo_camera: np.ndarray) -> np.ndarray:
    """[..., 4, 4] Waymo extrinsic (Waymo camera frame -> vehicle) -> `ego_from_camera` (OpenCV camera)."""
    return vehicle_from_waymo_camera @ CV_TO_WAYMO


def waymo_extrinsic(ego_from_opencv_camera: np.ndarray) -> np.ndarray:
    """The inverse conversion, for the exporter: `ego_from_camera` (OpenCV) -> Waymo extrinsic."""
    return ego_from_opencv_camera @ CV_TO_WAYMO.T


def component_path(root: str, split: str, component: str, segment: str) -> str:
    return f"{root}/{split}/{component}/{segment}.parquet"
