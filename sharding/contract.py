"""The shard contract: what one WebDataset sample and one dataset manifest hold.

Writers (`sharding.writer`) and readers (`datamodules`) both import this module, so the
member names, the schema version and the manifest fields are written down exactly once.
See ../DESIGN.md "Shard contract" for the prose version.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sharding.errors import ShardError

# Bump when a member or manifest field changes meaning; readers refuse other versions.
SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
SPLITS = ("train", "val")

# Members of one sample besides the images (`<camera>.<step:03d>.jpg`).
META = "meta.json"
EGO = "ego.npy"  # float64 [T, 4, 4] world_from_ego
ACTION = "action.npy"  # float32 [T, A], names in the manifest
AGENTS = "agents.npy"  # float32 [T, N, len(agent_fields)], ego frame; N may be 0
HAZARD = "hazard.npy"  # uint8 [T]
ARRAY_MEMBERS = (EGO, ACTION, AGENTS, HAZARD)

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
    except ValueError as error:
        raise ShardError(f"{where}: not a plain .npy array ({error}); re-create the shard") from error


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
        if version != SCHEMA_VERSION:
            raise ShardError(
                f"{where}: schema version {version!r}, this lightning-wm reads version "
                f"{SCHEMA_VERSION}; re-shard the source with this version's `lwm shard`"
            )
        data.pop("splits", None)
        try:
            data["cameras"] = [CameraInfo(**c) for c in data["cameras"]]
            data["shards"] = [ShardInfo(**s) for s in data["shards"]]
            return cls(**data)
        except (KeyError, TypeError) as error:
            raise ShardError(f"{where}: missing or unexpected field ({error}); re-create the dataset") from error
