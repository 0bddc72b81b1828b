"""The shard contract: what one WebDataset sample and one dataset manifest hold.

Writers (`sharding.writer`) and readers (`datamodules`) both import this module, so the
member names, the schema version and the manifest fields are written down exactly once.
The README section "Data: the shard contract" is the prose version.

Schema versions: 1 had no road geometry; 2 adds the optional `road.npy` member and the
manifest's `road_lines`. Version 1 datasets still read, as datasets without road geometry.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import typing
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sharding.errors import ShardError

# Bump when a member or manifest field changes meaning; readers refuse versions they cannot read.
SCHEMA_VERSION = 2  # what this lightning-wm writes
READABLE_SCHEMA_VERSIONS = (1, 2)  # what it reads (1: no road geometry)
MANIFEST_NAME = "manifest.json"
SPLITS = ("train", "val")

# Members of one sample besides the images (`<camera>.<step:03d>.jpg`).
META = "meta.json"
EGO = "ego.npy"  # float64 [T, 4, 4] world_from_ego
ACTION = "action.npy"  # float32 [T, A], names in the manifest
AGENTS = "agents.npy"  # float32 [T, N, len(agent_fields)], ego frame; N may be 0
HAZARD = "hazard.npy"  # uint8 [T]
ARRAY_MEMBERS = (EGO, ACTION, AGENTS, HAZARD)  # in every sample
# Only where the source knows the road (the manifest's `road_lines` is not empty):
# float32 [T, K, P, 2], K = len(road_lines) polylines of P points (x forward, y left; metres,
# ego frame at that step), sampled along the road around the ego. NaN rows: lines this scene's
# road does not have (e.g. `lane_5` on a 2-lane road). The synthetic source writes the edge lines
# (`left_edge`, `right_edge`: the drivable area lies between them) and lane centre lines
# `lane_0` (rightmost) ...; meta.json's info says which lanes are oncoming (`lane_directions`).
ROAD = "road.npy"

# Columns of agents.npy (the manifest's `agent_fields`): x, y, z is the box centre in the ego
# frame (m), length/width/height in m, yaw relative to the ego (rad), speed in m/s. Padding rows
# (an agent not present at that step) have track_id -1 and zeros elsewhere.
AGENT_FIELDS = ("track_id", "class_id", "x", "y", "z", "length", "width", "height", "yaw", "speed")
# class_id values; objects are static obstacles (barriers, cones, signs), which only real logs have.
CLASS_VEHICLE, CLASS_PEDESTRIAN, CLASS_OBJECT = 0, 1, 2
CLASS_NAMES = {CLASS_VEHICLE: "vehicle", CLASS_PEDESTRIAN: "pedestrian", CLASS_OBJECT: "object"}

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def image_member(camera: str, step: int) -> str:
    """Tar member suffix of one camera image, e.g. `front.007.jpg`."""
    return f"{camera}.{step:03d}.jpg"


def check_name(kind: str, name: str) -> str:
    """Scene ids and camera names become parts of tar member names: no dots or slashes."""
    if not _NAME_RE.match(name):
        raise ShardError(
            f"{kind} {name!r} may only hold letters, digits, '_' and '-' "
            "(it becomes part of a tar member name); rename it"
        )
    return name


def encode_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def decode_npy(data: bytes, where: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ShardError(f"{where}: not a plain .npy array ({error}); re-create the shard") from error


@dataclass(frozen=True)
class SampleSpec:
    """What the members of every sample of a dataset decode to, as its manifest says.

    arrays: member -> (dtype, shape); a name stands for any length (agents' N, road's P);
    images: camera -> (height, width) of its uint8 [H, W, 3] frames.
    """

    arrays: dict[str, tuple[str, tuple[int | str, ...]]]
    images: dict[str, tuple[int, int]]

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> SampleSpec:
        steps = manifest.chunk_steps
        arrays = {
            EGO: ("float64", (steps, 4, 4)),
            ACTION: ("float32", (steps, len(manifest.action_names))),
            AGENTS: ("float32", (steps, "N", len(manifest.agent_fields))),
            HAZARD: ("uint8", (steps,)),
        }
        if manifest.road_lines:
            arrays[ROAD] = ("float32", (steps, len(manifest.road_lines), "P", 2))
        return cls(arrays, {c.name: (c.height, c.width) for c in manifest.cameras})

    def array_problem(self, name: str, array: np.ndarray) -> str | None:
        """Why `array`, decoded from member `name`, breaks the contract (None: it does not)."""
        dtype, shape = self.arrays[name]
        if array.ndim != len(shape) or any(isinstance(n, int) and n != m for n, m in zip(shape, array.shape)):
            return f"has shape {list(array.shape)}, expected [{', '.join(map(str, shape))}]"
        if array.dtype != np.dtype(dtype):
            return f"is {array.dtype}, expected {dtype}"
        return None

    def image_problem(self, camera: str, image: np.ndarray) -> str | None:
        """Why a decoded frame of `camera` breaks the contract (None: it does not)."""
        height, width = self.images[camera]
        if image.shape != (height, width, 3):
            return f"decodes to shape {list(image.shape)}, the manifest's camera is [{height}, {width}, 3]"
        return None


@dataclass
class CameraInfo:
    """One camera of the rig, at the resolution stored in the shards."""

    name: str
    width: int
    height: int
    intrinsics: list[list[float]]  # [3, 3] pixels
    ego_from_camera: list[list[float]]  # [4, 4], OpenCV camera frame


@dataclass
class ShardInfo:
    name: str  # file name relative to the dataset root, e.g. `train-00003.tar`
    split: str
    samples: int
    bytes: int
    sha256: str
    scenes: list[str]


@dataclass
class Manifest:
    """`manifest.json`: everything a reader needs before opening a shard."""

    source: str
    fps: float
    chunk_steps: int
    action_names: list[str]
    agent_fields: list[str]
    cameras: list[CameraInfo]
    shards: list[ShardInfo]
    fingerprint: str  # hash of the settings that made the data; resume refuses a mismatch
    source_config: dict[str, Any] = field(default_factory=dict)
    skipped_scenes: list[dict[str, str]] = field(default_factory=list)
    road_lines: list[str] = field(default_factory=list)  # names of road.npy's rows; empty: no road.npy
    schema_version: int = SCHEMA_VERSION

    @property
    def camera_names(self) -> list[str]:
        return [c.name for c in self.cameras]

    def split_shards(self, split: str) -> list[ShardInfo]:
        return [s for s in self.shards if s.split == split]

    def splits(self) -> dict[str, dict[str, Any]]:
        """Per split: its scenes (disjoint across splits) and sample count."""
        out: dict[str, dict[str, Any]] = {}
        for split in SPLITS:
            shards = self.split_shards(split)
            out[split] = {
                "scenes": [scene for s in shards for scene in s.scenes],
                "samples": sum(s.samples for s in shards),
                "shards": [s.name for s in shards],
            }
        return out

    def to_json(self) -> str:
        data = asdict(self)
        data["splits"] = self.splits()  # derived, stored for people reading the file
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ShardError(f"{where}: not valid JSON ({error}); re-create the dataset") from error
        if not isinstance(data, dict):
            raise ShardError(f"{where}: expected a JSON object; re-create the dataset")
        version = data.get("schema_version")
        if type(version) is not int or version not in READABLE_SCHEMA_VERSIONS:
            raise ShardError(
                f"{where}: schema version {version!r}, this lightning-wm reads versions "
                f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))}; re-shard the source with this version's `lwm shard`"
            )
        data.pop("splits", None)
        try:
            _check_fields(cls, data, "")
            data["cameras"] = [CameraInfo(**c) for c in data["cameras"]]
            data["shards"] = [ShardInfo(**s) for s in data["shards"]]
            return cls(**data)
        except _FieldError as error:
            raise ShardError(f"{where}: field {error}; re-create the dataset (or fix the field)") from error
        except (KeyError, TypeError) as error:
            raise ShardError(f"{where}: missing or unexpected field ({error}); re-create the dataset") from error


class _FieldError(Exception):
    """A manifest field of the wrong type: the message starts with the field's path."""


_KINDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _check_value(hint: Any, value: Any, path: str) -> None:
    """Raise _FieldError unless `value` (parsed JSON) fits the type hint `hint` of a manifest field."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise _FieldError(f"{path}: expected an object, got {type(value).__name__} {value!r:.40}")
        _check_fields(hint, value, f"{path}.")
    elif origin is list:
        if not isinstance(value, list):
            raise _FieldError(f"{path}: expected a list, got {type(value).__name__} {value!r:.40}")
        (item,) = typing.get_args(hint)
        for index, element in enumerate(value):
            _check_value(item, element, f"{path}[{index}]")
    elif origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise _FieldError(f"{path}: expected an object, got {type(value).__name__} {value!r:.40}")
    elif hint in _KINDS:
        allowed = (int, float) if hint is float else (hint,)
        if type(value) not in allowed:  # `type`, not isinstance: JSON true is no count
            raise _FieldError(f"{path}: expected {_KINDS[hint]}, got {type(value).__name__} {value!r:.40}")


def _check_fields(cls: type, data: dict, prefix: str) -> None:
    """The fields of dataclass `cls` present in `data` have the JSON types its annotations say."""
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        if name in hints:
            _check_value(hints[name], value, f"{prefix}{name}")
