"""Shards damaged inside while their checksums match (a tool rewrote shard and manifest), manifests
with fields of the wrong type, and tars the manifest does not list: `lwm shard verify [--deep]` and
`lwm fit` each end with one line naming the shard, the sample key and the member (or the field),
never a traceback."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from lightning_wm.cli import main
from sharding import contract
from sharding.errors import ShardError
from tests.helpers import make_dataset
from tests.lightning_wm.conftest import TINY_FIT
from tests.sharding.test_road_contract import rewrite_shard

SHARD = "train-00000.tar"  # with train_scenes=1 the only train shard: samples scene-000-000 and -001


def _drop_action(name: str, data: bytes) -> bytes | None:
    return None if name.endswith(".action.npy") else data


def _garbage_jpeg(name: str, data: bytes) -> bytes:
    return b"\xff\xd8 not a JPEG at all" if name.endswith(".front.000.jpg") else data


def _action_float64(name: str, data: bytes) -> bytes:
    return contract.encode_npy(contract.decode_npy(data, name).astype(np.float64)) if name.endswith(".action.npy") \
        else data


def _hazard_short(name: str, data: bytes) -> bytes:
    return contract.encode_npy(contract.decode_npy(data, name)[:3]) if name.endswith(".hazard.npy") else data


DAMAGES = {  # damage -> (rewrite, member the error must name, words of the problem)
    "missing action.npy": (_drop_action, "action.npy", "missing"),
    "JPEG that does not decode": (_garbage_jpeg, "front.000.jpg", "JPEG"),
    "action.npy of the wrong dtype": (_action_float64, "action.npy", "float64, expected float32"),
    "hazard.npy of the wrong shape": (_hazard_short, "hazard.npy", "shape [3]"),
}


@pytest.fixture(autouse=True)
def _quiet_stale_log_handlers(monkeypatch):
    """Lightning's log handler keeps the stream of the test that imported it (a capture closed by
    now): without this every later fit here prints a '--- Logging error ---' traceback of Python's
    logging, which a real `lwm fit` process never does."""
    monkeypatch.setattr(logging, "raiseExceptions", False)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """One train shard (2 samples), one val shard, 32x32 frames: enough for the tiny fit."""
    root = tmp_path_factory.mktemp("clean") / "ds"
    make_dataset(root, train_scenes=1, val_scenes=1, steps=16, chunk_steps=8, size=32)
    return root


@pytest.fixture
def dataset(clean, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(clean, root)
    return root


def _edit_manifest(root, change) -> None:
    path = root / contract.MANIFEST_NAME
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def _fit(root, tmp_path, *extra) -> int:
    return main(["fit", f"data.path={root}", f"runs_dir={tmp_path / 'runs'}", *TINY_FIT, *extra])


def test_a_clean_dataset_passes_the_deep_check_and_says_how_long_it_took(clean, capsys):
    assert main(["shard", "verify", "--deep", str(clean)]) == 0
    assert "OK (deep check took" in capsys.readouterr().out


@pytest.mark.parametrize("damage", DAMAGES)
def test_deep_verify_names_shard_key_and_member_of_a_damaged_sample(dataset, damage, capsys):
    change, member, words = DAMAGES[damage]
    rewrite_shard(dataset, SHARD, change)
    assert main(["shard", "verify", "--deep", str(dataset)]) == 1
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 2, lines  # one per damaged sample
    for line, key in zip(lines, ("scene-000-000", "scene-000-001")):
        assert line.startswith(f"{dataset}: {SHARD}: sample {key}: ") and member in line and words in line, line
    assert "problem(s) found" in err and "deep check took" in err and "Traceback" not in err


@pytest.mark.parametrize("damage", DAMAGES)
def test_fit_on_a_damaged_sample_ends_in_one_line_naming_shard_key_and_member(dataset, damage, tmp_path, capsys):
    change, member, words = DAMAGES[damage]
    rewrite_shard(dataset, SHARD, change)
    capsys.readouterr()
    assert _fit(dataset, tmp_path) == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    line = err.splitlines()[-1]
    assert line.startswith(f"lwm fit: error: {dataset}/{SHARD} sample scene-000-00"), line
    assert f"member {member}" in line and words in line and "lwm shard verify --deep" in line, line


def test_fit_names_the_damage_also_from_a_dataloader_worker(dataset, tmp_path, capsys):
    rewrite_shard(dataset, SHARD, _garbage_jpeg)
    capsys.readouterr()
    assert _fit(dataset, tmp_path, "data.num_workers=1") == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    line = err.splitlines()[-1]
    assert line.startswith(f"lwm fit: error: {dataset}/{SHARD} sample scene-000-00"), line
    assert "member front.000.jpg does not decode as a JPEG" in line, line


def _samples_as_string(manifest: dict) -> None:
    manifest["shards"][0]["samples"] = "2"


@pytest.mark.parametrize("command", ["verify", "fit"])
def test_a_manifest_field_of_the_wrong_type_is_named(dataset, command, tmp_path, capsys):
    _edit_manifest(dataset, _samples_as_string)
    capsys.readouterr()
    code = main(["shard", "verify", str(dataset)]) if command == "verify" else _fit(dataset, tmp_path)
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "field shards[0].samples: expected an integer, got str '2'" in err and "manifest.json" in err, err


@pytest.mark.parametrize("field, value, named", [
    ("chunk_steps", "8", "chunk_steps: expected an integer"),
    ("fps", None, "fps: expected a number"),
    ("action_names", "speed", "action_names: expected a list"),
    ("cameras", [{"name": "front", "width": "32", "height": 32, "intrinsics": [], "ego_from_camera": []}],
     "cameras[0].width: expected an integer"),
])
def test_each_manifest_field_is_type_checked_when_read(dataset, field, value, named):
    _edit_manifest(dataset, lambda manifest: manifest.update({field: value}))
    with pytest.raises(ShardError, match=named.replace("[", r"\[").replace("]", r"\]")):
        contract.Manifest.from_json((dataset / contract.MANIFEST_NAME).read_text(), "manifest.json")


def test_verify_reports_a_tar_the_manifest_does_not_list(dataset, capsys):
    shutil.copy(dataset / SHARD, dataset / "train-00007.tar")  # e.g. left over from an earlier, larger run
    assert main(["shard", "verify", str(dataset)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"{dataset}: train-00007.tar: not listed in manifest.json"), out
    assert "stale or foreign" in out[0]
