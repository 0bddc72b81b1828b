"""The camera rig a model is trained on: read from the manifest, checked, matched by name.

Every family takes the rig as a constructor argument (`rig_from_manifest`: the data's cameras in
the datamodule's order, and the fps) and keeps it in its checkpoint: the world models use it for
the turn prior and, with several cameras, for camera embeddings (no per-camera weights, so a rig
is data, not architecture); the IDM uses it to refuse video from another camera or frame rate.
A camera is a plain dict {name, width, height, intrinsics [3][3], ego_from_camera [4][4]}
(plain lists: checkpoints load with `weights_only=True`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sharding.errors import ConfigError

MIN_VIEWS = 2  # of the multi-camera model


def camera_dict(camera: Any) -> dict[str, Any]:
    """A `sharding.contract.CameraInfo` (or a dict of its fields) as a plain checked dict.

    Checkpoints written before the rig was unified keyed the name `camera`; that key is read too.
    """
    fields = camera if isinstance(camera, dict) else vars(camera)
    name = str(fields.get("name", fields.get("camera")))
    intrinsics, ego_from_camera = fields.get("intrinsics"), fields.get("ego_from_camera")
    matrices = []
    for key, value in (("intrinsics", intrinsics), ("ego_from_camera", ego_from_camera)):
        try:
            matrices.append(torch.as_tensor(value, dtype=torch.float64))
        except (TypeError, ValueError, RuntimeError):
            matrices.append(torch.empty(0))
        if value is None or matrices[-1].numel() == 0:
            raise ConfigError(f"camera {name!r} has no {key} (got {value!r}); the world models need each "
                              "camera's calibration: re-shard the data with calibration")
    check_calibration(*matrices, name)
    get = fields.get
    return {"name": name, "width": int(get("width")), "height": int(get("height")),
            "intrinsics": [[float(x) for x in row] for row in intrinsics],
            "ego_from_camera": [[float(x) for x in row] for row in ego_from_camera]}


def check_calibration(intrinsics: torch.Tensor, ego_from_camera: torch.Tensor, name: str) -> None:
    """One camera: intrinsics [3, 3] with positive focal lengths, a rigid ego_from_camera [4, 4]."""
    if tuple(intrinsics.shape) != (3, 3) or not bool(torch.isfinite(intrinsics).all()) \
            or not (intrinsics[0, 0] > 0 and intrinsics[1, 1] > 0):
        raise ConfigError(f"camera {name!r}: intrinsics {intrinsics.tolist()} are missing or invalid (need a 3x3 "
                          "pixel matrix with focal lengths > 0); re-shard the data with calibration")
    rotation = ego_from_camera[:3, :3].double()
    if tuple(ego_from_camera.shape) != (4, 4) or not bool(torch.isfinite(ego_from_camera).all()) or not torch.allclose(
            rotation @ rotation.T, torch.eye(3, dtype=rotation.dtype), atol=1e-3):
        raise ConfigError(f"camera {name!r}: ego_from_camera {ego_from_camera.tolist()} is missing or not a rigid "
                          "transform; re-shard the data with calibration")


def check_rig(rig: list[dict[str, Any]], where: str, min_views: int = 1) -> list[dict[str, Any]]:
    """At least `min_views` cameras of one image size; returns the rig as plain checked dicts."""
    cameras = [camera_dict(c) for c in rig]
    names = [c["name"] for c in cameras]
    if len(cameras) < min_views:
        raise ConfigError(f"{where}: the multi-camera model needs at least {min_views} cameras, got {names}; "
                          "use data.cameras=null (all cameras) or model=single_cam for one camera")
    sizes = {(c["height"], c["width"]) for c in cameras}
    if len(sizes) > 1:
        raise ConfigError(f"{where}: cameras {names} have different image sizes {sorted(sizes)}; the shared encoder "
                          "needs one size: re-shard at one resolution")
    return cameras


def rig_from_manifest(manifest: Any, camera_names: list[str], min_views: int = 1) -> dict[str, Any]:
    """The constructor arguments every family reads from the data: `rig` (the chosen cameras in the
    datamodule's order, checked: at least `min_views`) and `fps`."""
    by_name = {c.name: c for c in manifest.cameras}
    rig = check_rig([by_name[name] for name in camera_names], f"data.cameras={list(camera_names)}", min_views)
    return {"rig": rig, "fps": float(manifest.fps)}


def match_cameras(trained: list[str], data: list[str]) -> list[int]:
    """Indices into `trained` of each data camera (data may be a subset, in any order).

    Raises ConfigError naming both lists when a data camera is unknown to the model.
    """
    unknown = [name for name in data if name not in trained]
    if unknown:
        raise ConfigError(f"cameras {unknown} of the data are not among the cameras the model was trained on "
                          f"{trained}; data has {data}: set data.cameras to a subset of {trained}")
    if len(data) < MIN_VIEWS:
        raise ConfigError(f"data cameras {data}: the multi-camera model needs at least {MIN_VIEWS} cameras "
                          f"(trained on {trained})")
    return [trained.index(name) for name in data]


def rig_tensors(rig: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rig dicts -> (intrinsics [V, 3, 3], ego_from_camera [V, 4, 4]), float32."""
    return (torch.tensor([c["intrinsics"] for c in rig], dtype=torch.float32),
            torch.tensor([c["ego_from_camera"] for c in rig], dtype=torch.float32))


def check_batch_calibration(intrinsics: torch.Tensor | None, ego_from_camera: torch.Tensor | None,
                            names: list[str]) -> None:
    """Batch calibration [B, V, 3, 3] / [B, V, 4, 4] present and valid; errors name the camera."""
    if intrinsics is None or ego_from_camera is None:
        missing = "intrinsics" if intrinsics is None else "ego_from_camera"
        raise ConfigError(f"the batch has no {missing} for cameras {names}; the multi-camera model needs each "
                          "camera's calibration (datamodules.batch.Batch)")
    for index, name in enumerate(names):
        check_calibration(intrinsics[0, index], ego_from_camera[0, index], name)
        if not (torch.isfinite(intrinsics[:, index]).all() and torch.isfinite(ego_from_camera[:, index]).all()):
            raise ConfigError(f"camera {name!r}: non-finite calibration in the batch; "
                              "re-shard the data with calibration")


def rig_mismatch(trained: dict[str, Any], trained_fps: float, camera: Any, fps: float) -> str | None:
    """Why video from `camera` (a CameraInfo or camera dict) at `fps` is not what a model trained on
    the camera `trained` at `trained_fps` saw, or None when it is (calibration within 0.1%).
    Image motion per step depends on both, so the IDM refuses other video."""
    trained, seen = camera_dict(trained), camera_dict(camera)
    if abs(trained_fps - fps) > 1e-6 * max(1.0, fps):
        return f"it was trained at {trained_fps:g} fps, the data is at {fps:g} fps"
    if trained["name"] != seen["name"]:
        return f"it was trained on camera {trained['name']!r}, the evaluation reads {seen['name']!r}"
    for key in ("width", "height"):
        if trained[key] != seen[key]:
            return (f"it was trained on {trained['width']}x{trained['height']} frames, "
                    f"the data has {seen['width']}x{seen['height']}")
    for key in ("intrinsics", "ego_from_camera"):
        if not np.allclose(trained[key], seen[key], rtol=1e-3, atol=1e-4):
            return (f"camera {seen['name']!r} has other {key} than the rig it was trained on "
                    f"({trained[key]} vs {seen[key]})")
    return None
