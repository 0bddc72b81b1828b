"""Open a nuScenes-layout dataset with the real devkit, refusing what it cannot read with one clear line.

`NuScenes()` needs all 13 tables, a map row whose mask file exists with every log in some
map's `log_tokens`, and crashes with a bare AssertionError or KeyError on a dangling token.
The devkit is therefore pointed at an overlay folder: links to the dataset's own tables, a
stub for each missing optional table (attribute, visibility) and always a stub map (the
shards hold no map layer, so maps may be absent or broken); lidarseg/panoptic are not linked,
so their label folders are never needed. When the devkit still fails, the tables are scanned
to name the file, row and field at fault.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from sharding.errors import SourceError
from sharding.nuscenes.tables import OPTIONAL_TABLES, REQUIRED_TABLES, TABLES, map_stub, write_table

# Fields whose value is a token of another table (what the devkit dereferences while indexing).
REFERENCES = {
    "sample_data": {"sample_token": "sample", "ego_pose_token": "ego_pose",
                    "calibrated_sensor_token": "calibrated_sensor"},
    "calibrated_sensor": {"sensor_token": "sensor"},
    "sample": {"scene_token": "scene"},
    "scene": {"log_token": "log", "first_sample_token": "sample", "last_sample_token": "sample"},
    "sample_annotation": {"sample_token": "sample", "instance_token": "instance"},
    "instance": {"category_token": "category"},
}
UNIT_TOLERANCE = 1e-3  # |norm - 1| a rotation quaternion may have


def versions_in(dataroot: Path) -> list[str]:
    """Folders under `dataroot` that hold a scene table (what --version may name)."""
    return sorted(p.name for p in dataroot.iterdir() if (p / "scene.json").is_file()) if dataroot.is_dir() else []


def _read_table(table_root: Path, name: str) -> list[dict[str, Any]]:
    path = table_root / f"{name}.json"
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SourceError(f"{path}: not valid JSON ({error}); re-copy the table from the release") from error
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise SourceError(f"{path}: expected a JSON list of row objects")
    for index, row in enumerate(rows):
        if "token" not in row:
            raise SourceError(f"{path}: row {index} has no 'token' field; every nuScenes row needs one")
    return rows


def diagnose(table_root: Path, error: BaseException) -> SourceError:
    """A one-line SourceError naming the table, row and field behind a devkit crash."""
    present = [name for name in TABLES if (table_root / f"{name}.json").is_file()]
    tables = {name: _read_table(table_root, name) for name in present}  # names a table that is not valid JSON
    tables.update({name: [] for name in TABLES if name not in tables})
    tokens = {name: {row["token"] for row in rows} for name, rows in tables.items()}
    for table, fields in REFERENCES.items():
        for row in tables[table]:
            for field, target in fields.items():
                if field not in row:
                    return SourceError(f"{table_root / table}.json row {row['token']}: no '{field}' field "
                                       f"(expected a token of {target}.json)")
                if row[field] not in tokens[target] and not (field.startswith(("first_", "last_")) and not row[field]):
                    return SourceError(f"{table_root / table}.json row {row['token']}: {field} {row[field]!r} "
                                       f"is not a token of {target}.json; fix the reference or restore the row")
    return SourceError(f"{table_root}: nuscenes-devkit cannot load the tables ({type(error).__name__}: {error}); "
                       "check them against the nuScenes schema")


def _build_overlay(table_root: Path, overlay: Path) -> None:
    """<overlay>/<version>/: links to the dataset's tables, stubs for missing optional tables, a stub map."""
    version_dir = overlay / table_root.name
    version_dir.mkdir(parents=True)
    for name in REQUIRED_TABLES + OPTIONAL_TABLES:
        source = table_root / f"{name}.json"
        if name == "map":
            continue
        if source.is_file():
            try:
                os.symlink(source.resolve(), version_dir / source.name)
            except OSError:  # file systems without symlinks
                shutil.copyfile(source, version_dir / source.name)
        else:
            write_table(version_dir, name, [])
    logs = [row["token"] for row in _read_table(table_root, "log")]
    if not logs:
        raise SourceError(f"{table_root / 'log.json'}: the table is empty; every scene needs a log row")
    write_table(version_dir, "map", map_stub(overlay, logs))


def open_nuscenes(dataroot: str, version: str):
    """The devkit's `NuScenes` for `<dataroot>/<version>`, after checking what the devkit would trip on."""
    from nuscenes.nuscenes import NuScenes  # the devkit pulls in matplotlib and cv2: import on use

    root = Path(dataroot)
    if not root.is_dir():
        raise SourceError(f"--dataroot {dataroot}: no such folder; give the folder holding {version}/, "
                          "samples/, sweeps/")
    table_root = root / version
    if not table_root.is_dir():
        found = versions_in(root)
        raise SourceError(f"{table_root}: no such version folder; --version names the folder of JSON tables under "
                          f"--dataroot (found: {', '.join(found) or 'none'})")
    for name in REQUIRED_TABLES:
        if not (table_root / f"{name}.json").is_file():
            raise SourceError(f"{table_root / name}.json: table missing; a nuScenes dataset needs "
                              f"{', '.join(REQUIRED_TABLES)} (attribute, visibility and map may be absent)")
    overlay = Path(tempfile.mkdtemp(prefix="lwm-nuscenes-"))
    try:
        _build_overlay(table_root, overlay)
        try:
            nusc = NuScenes(version=version, dataroot=str(overlay), verbose=False)
        except (AssertionError, KeyError, IndexError, TypeError, ValueError) as error:
            raise diagnose(table_root, error) from error
    finally:
        shutil.rmtree(overlay, ignore_errors=True)
    nusc.dataroot = str(root)  # file names resolve against the real dataset
    check_tables(nusc, table_root)
    return nusc


def check_unit_quaternion(rotation: Any, where: str) -> np.ndarray:
    """float64 [4] (w, x, y, z), or a SourceError naming `where` if it is not a unit quaternion."""
    try:
        q = np.asarray(rotation, np.float64)
    except (TypeError, ValueError):
        q = np.zeros(0)
    if q.shape != (4,) or not np.isfinite(q).all() or abs(np.linalg.norm(q) - 1.0) > UNIT_TOLERANCE:
        norm = f"norm {np.linalg.norm(q):.4g}" if q.shape == (4,) and np.isfinite(q).all() else "not 4 numbers"
        raise SourceError(f"{where}: rotation {rotation!r} is not a unit quaternion ({norm}); "
                          "expected [w, x, y, z] with norm 1")
    return q


def check_tables(nusc, table_root: Path) -> None:
    """Dataset-wide checks after loading: poses present, calibrations usable."""
    if not nusc.ego_pose:
        raise SourceError(f"{table_root / 'ego_pose.json'}: the table is empty; expected one ego pose per "
                          "sample_data row (its ego_pose_token)")
    sensors = {row["token"]: row for row in nusc.sensor}
    for row in nusc.calibrated_sensor:
        sensor = sensors.get(row.get("sensor_token"), {})
        where = f"{table_root / 'calibrated_sensor.json'} row {row['token']} ({sensor.get('channel', '?')})"
        check_unit_quaternion(row.get("rotation"), where)
        if sensor.get("modality") == "camera":
            k = np.asarray(row.get("camera_intrinsic") or [], np.float64)
            if k.shape != (3, 3) or k[0, 0] <= 0 or k[1, 1] <= 0:
                raise SourceError(f"{where}: camera_intrinsic {row.get('camera_intrinsic')!r} is not a 3x3 pinhole "
                                  "matrix with positive focal lengths")
