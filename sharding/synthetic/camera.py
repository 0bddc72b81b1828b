"""The synthetic camera rig: pinhole cameras at one mount point on the ego car.

`RigConfig` is both the Hydra schema of `rig.*` and the calibration written to the shards
(`intrinsics`, `ego_from_camera`), so the renderer and every reader agree on the geometry.
Frames: ego x forward, y left, z up; camera OpenCV (x right, y down, z forward).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from sharding.errors import ConfigError

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")  # the shard contract's rule for names in tar members


@dataclass
class CameraConfig:
    """One camera. Yaw turns it to the left (counter-clockwise seen from above)."""

    name: str = "front"  # letters, digits, '_' or '-' (it becomes part of tar member names)
    yaw_deg: float = 0.0  # heading relative to the ego x axis, + = left
    fov_deg: float = 80.0  # horizontal field of view, in (10, 170)
    pitch_deg: float = 5.0  # tilt below the horizon, + = down (shows more road than sky)


def _default_cameras() -> list[CameraConfig]:
    # +-55 deg with an 80 deg field of view: each side view overlaps the front one by 25 deg.
    return [
        CameraConfig("front", 0.0),
        CameraConfig("front_left", 55.0),
        CameraConfig("front_right", -55.0),
    ]


@dataclass
class RigConfig:
    """Cameras sharing one mount point and one image size (pixels)."""

    cameras: list[CameraConfig] = field(default_factory=_default_cameras)
    width: int = 64  # image width in pixels
    height: int = 64  # image height in pixels
    mount_x_m: float = 1.5  # mount point ahead of the ego origin (rear axle), metres
    mount_z_m: float = 1.6  # mount point above the ground, metres

    def __post_init__(self) -> None:
        if not self.cameras:
            raise ConfigError("rig.cameras is empty; give at least one camera (name, yaw_deg, fov_deg)")
        for key in ("width", "height"):
            if getattr(self, key) < 1:
                raise ConfigError(f"rig.{key}={getattr(self, key)} must be a positive pixel count")
        if self.mount_z_m <= 0:
            raise ConfigError(f"rig.mount_z_m={self.mount_z_m} must be above the ground (> 0 metres)")
        names = [c.name for c in self.cameras]
        for index, camera in enumerate(self.cameras):
            if not _NAME_RE.match(camera.name):
                raise ConfigError(f"rig.cameras[{index}].name={camera.name!r} may only hold letters, digits, "
                                  "'_' and '-' (it becomes part of tar member names); rename it")
            if names.count(camera.name) > 1:
                raise ConfigError(f"rig.cameras[{index}].name={camera.name!r} is used twice; "
                                  "give each camera a unique name")
            if not 10.0 < camera.fov_deg < 170.0:
                raise ConfigError(f"rig.cameras[{index}].fov_deg={camera.fov_deg} must be in (10, 170) degrees")
            if not -80.0 < camera.pitch_deg < 80.0:
                raise ConfigError(f"rig.cameras[{index}].pitch_deg={camera.pitch_deg} must be in (-80, 80) degrees")

    @property
    def camera_names(self) -> list[str]:
        return [c.name for c in self.cameras]

    @property
    def num_views(self) -> int:
        return len(self.cameras)

    def mount_point(self) -> np.ndarray:
        """float64 [3]: the optical centre of every camera in the ego frame."""
        return np.array([self.mount_x_m, 0.0, self.mount_z_m])

    def intrinsics(self) -> np.ndarray:
        """float64 [V, 3, 3] pinhole matrices in pixels, OpenCV convention.

        Pixel centres sit at integer coordinates, so the image spans [-0.5, width - 0.5] and the
        principal point is ((width - 1) / 2, (height - 1) / 2). Pixels are square.
        """
        out = np.zeros((self.num_views, 3, 3))
        for index, camera in enumerate(self.cameras):
            focal = (self.width / 2.0) / math.tan(math.radians(camera.fov_deg) / 2.0)
            out[index] = [[focal, 0.0, (self.width - 1) / 2.0], [0.0, focal, (self.height - 1) / 2.0], [0.0, 0.0, 1.0]]
        return out

    def ego_from_camera(self) -> np.ndarray:
        """float64 [V, 4, 4]: maps OpenCV camera coordinates to ego coordinates."""
        out = np.tile(np.eye(4), (self.num_views, 1, 1))
        for index, camera in enumerate(self.cameras):
            yaw, pitch = math.radians(camera.yaw_deg), math.radians(camera.pitch_deg)
            forward = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), -math.sin(pitch)])
            right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
            down = np.cross(forward, right)  # completes the right-handed frame x right, y down, z forward
            out[index, :3, :3] = np.stack([right, down, forward], axis=1)
            out[index, :3, 3] = self.mount_point()
        return out

    def camera_from_ego(self) -> np.ndarray:
        """float64 [V, 4, 4]: the inverse of `ego_from_camera` (rigid: R^T and -R^T t)."""
        ego_from_camera = self.ego_from_camera()
        rotation_t = ego_from_camera[:, :3, :3].transpose(0, 2, 1)
        out = np.tile(np.eye(4), (self.num_views, 1, 1))
        out[:, :3, :3] = rotation_t
        out[:, :3, 3] = -(rotation_t * ego_from_camera[:, None, :3, 3]).sum(-1)
        return out

    def project(self, points_ego: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project ego-frame points into every camera.

        points_ego: [N, 3]. Returns pixels float64 [V, N, 2] (u, v) and depth float64 [V, N]
        (camera z; a point is in front of the camera where depth > 0).
        """
        camera_from_ego = self.camera_from_ego()  # [V, 4, 4]
        points = np.asarray(points_ego, dtype=np.float64)
        in_camera = np.einsum("vij,nj->vni", camera_from_ego[:, :3, :3], points) + camera_from_ego[:, None, :3, 3]
        depth = in_camera[..., 2]
        pixels_h = np.einsum("vij,vnj->vni", self.intrinsics(), in_camera)
        with np.errstate(divide="ignore", invalid="ignore"):
            pixels = pixels_h[..., :2] / depth[..., None]
        return pixels, depth
