"""Names and small helpers shared by the nuScenes-layout reader (`loading`) and writer (the fixture
`sharding.fixtures.nuscenes`).

Table schema: https://github.com/nutonomy/nuscenes-devkit/blob/master/docs/schema_nuscenes.md.
Quaternions are (w, x, y, z); timestamps are integer microseconds; sizes are (width, length,
height) in metres; a camera's calibrated_sensor maps its OpenCV frame (x right, y down, z
forward) into the ego frame (x forward, y left, z up), exactly the contract's `ego_from_camera`.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

from PIL import Image

# Every table `nuscenes.nuscenes.NuScenes` loads; it refuses to start if one is missing.
TABLES = ("category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose",
          "log", "scene", "sample", "sample_data", "sample_annotation", "map")
# Tables `lwm shard nuscenes` stands in for when absent: nothing it writes comes from them.
OPTIONAL_TABLES = ("attribute", "visibility", "map")
REQUIRED_TABLES = tuple(t for t in TABLES if t not in OPTIONAL_TABLES)

# The six cameras of the nuScenes rig, in the devkit's usual order.
NUSCENES_CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_FRONT_LEFT")


def make_token(*parts: Any) -> str:
    """A deterministic 32-hex token like nuScenes' own, from any identifying parts."""
    return hashlib.md5("/".join(str(p) for p in parts).encode()).hexdigest()


def write_table(table_root: Path, name: str, rows: list[dict[str, Any]]) -> None:
    """`<table_root>/<name>.json`, indented like the official tables."""
    (table_root / f"{name}.json").write_text(json.dumps(rows, indent=0))


def blank_png() -> bytes:
    """A 1x1 black PNG: the devkit only checks that a map mask file exists until a map is drawn."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    return buffer.getvalue()


def map_stub(dataroot: Path, log_tokens: list[str]) -> list[dict[str, Any]]:
    """One `map` row covering every log, with its (blank) mask file written under `dataroot`.

    `NuScenes()` needs a map row whose file exists and every log in some map's `log_tokens`;
    the shards hold no map layer, so a blank mask serves both the export and datasets without maps.
    """
    token = make_token("map", *log_tokens)
    filename = f"maps/{token}.png"
    (dataroot / "maps").mkdir(parents=True, exist_ok=True)
    (dataroot / filename).write_bytes(blank_png())
    return [{"token": token, "log_tokens": list(log_tokens), "category": "semantic_prior", "filename": filename}]
