"""The camera rig of a multi-camera model: read from the manifest, checked, matched by name.

The model learns no per-camera weights (camera embeddings come from calibration), so a rig
is data, not architecture: `rig_from_manifest` hands the dataset's cameras to the model
(`ModelFamily.manifest_args`), and the model keeps them in its checkpoint so that callers
that pass no calibration (the rollout Protocol) use the rig it was trained on, and so that
data with other cameras is refused with both camera lists named.
A rig is a list of plain dicts {name, width, height, intrinsics [3][3], ego_from_camera [4][4]}
(plain lists: checkpoints load with `weights_only=True`).
"""

from __future__ import annotations

from typing import Any

import torch

from sharding.errors import ConfigError

MIN_VIEWS = 2


def camera_dict(camera: Any) -> dict[str, Any]:
    """A `sharding.contract.CameraInfo` (or a dict of its fields) as a plain dict, checked."""
    fields = camera if isinstance(camera, dict) else vars(camera)
    name = str(fields.get("name"))
    intrinsics, ego_from_camera = fields.get("intrinsics"), fields.get("ego_from_camera")
    matrices = []
    for key, value in (("intrinsics", intrinsics), ("ego_from_camera", ego_from_camera)):
        try:
            matrices.append(torch.as_tensor(value, dtype=torch.float64))
        except (TypeError, ValueError, RuntimeError):
            matrices.append(torch.empty(0))
        if value is None or matrices[-1].numel() == 0:
            raise ConfigError(f"camera {name!r} has no {key} (got {value!r}); the multi-camera model needs each "
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


def check_rig(rig: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """At least two cameras of one image size; returns the rig as plain checked dicts."""
    cameras = [camera_dict(c) for c in rig]
    names = [c["name"] for c in cameras]
    if len(cameras) < MIN_VIEWS:
        raise ConfigError(f"{where}: the multi-camera model needs at least {MIN_VIEWS} cameras, got {names}; "
                          "use data.cameras=null (all cameras) or model=single_cam for one camera")
    sizes = {(c["height"], c["width"]) for c in cameras}
    if len(sizes) > 1:
        raise ConfigError(f"{where}: cameras {names} have different image sizes {sorted(sizes)}; the shared encoder "
                          "needs one size: re-shard at one resolution")
    return cameras


def rig_from_manifest(manifest: Any, camera_names: list[str]) -> dict[str, Any]:
    """`ModelFamily.manifest_args`: the rig of the chosen cameras, in the datamodule's order, and the fps."""
    by_name = {c.name: c for c in manifest.cameras}
    return {"rig": check_rig([by_name[name] for name in camera_names], f"data.cameras={list(camera_names)}"),
            "fps": float(manifest.fps)}


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
