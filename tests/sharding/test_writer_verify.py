"""The shard writer (atomic, resumable, deterministic) and `lwm shard verify`."""

import json
import os
import tarfile

import pytest

from lightning_wm.cli import main
from sharding import contract
from sharding.errors import ShardError
from sharding.verify import verify_dataset
from sharding.writer import PROGRESS_NAME
from tests.helpers import make_dataset


def test_manifest_lists_shards_splits_and_counts(tmp_path):
    manifest = make_dataset(tmp_path, train_scenes=5, val_scenes=2, steps=16, chunk_steps=8, scenes_per_shard=2)
    names = sorted(p.name for p in tmp_path.glob("*.tar"))
    assert names == ["train-00000.tar", "train-00001.tar", "train-00002.tar", "val-00000.tar"]
    assert [s.samples for s in manifest.shards] == [4, 4, 2, 4]  # 2 chunks per scene
    splits = manifest.splits()
    assert not set(splits["train"]["scenes"]) & set(splits["val"]["scenes"])  # split by scene
    assert len(splits["train"]["scenes"]) == 5 and splits["val"]["samples"] == 4
    on_disk = json.loads((tmp_path / contract.MANIFEST_NAME).read_text())
    assert on_disk["schema_version"] == contract.SCHEMA_VERSION and on_disk["action_names"][0] == "speed"
    assert not (tmp_path / PROGRESS_NAME).exists()
    assert verify_dataset(tmp_path) == []


def test_same_settings_give_byte_identical_shards(tmp_path):
    make_dataset(tmp_path / "a")
    make_dataset(tmp_path / "b", workers=2)  # the process pool does not change the bytes
    for shard in (tmp_path / "a").glob("*.tar"):
        assert shard.read_bytes() == (tmp_path / "b" / shard.name).read_bytes()


def test_a_failing_scene_leaves_only_complete_shards_and_a_rerun_finishes(tmp_path, monkeypatch):
    import tests.helpers as helpers

    real = helpers.make_scene

    def broken(index, *args):
        if index == 3:  # the 2nd scene of the 2nd shard
            raise RuntimeError("source crashed")
        return real(index, *args)

    monkeypatch.setattr(helpers, "make_scene", broken)
    with pytest.raises(RuntimeError):
        make_dataset(tmp_path)
    assert sorted(os.listdir(tmp_path)) == [PROGRESS_NAME, "train-00000.tar"]  # no partial file, no manifest
    first = (tmp_path / "train-00000.tar").stat().st_mtime_ns

    monkeypatch.setattr(helpers, "make_scene", real)
    make_dataset(tmp_path)
    assert (tmp_path / "train-00000.tar").stat().st_mtime_ns == first  # kept, not rewritten
    assert verify_dataset(tmp_path) == []


def test_rerun_with_other_settings_is_refused(tmp_path):
    make_dataset(tmp_path, train_scenes=4)
    with pytest.raises(ShardError, match="other settings"):
        make_dataset(tmp_path, train_scenes=5)


def flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_verify_names_the_shard_with_a_flipped_byte(tmp_path, capsys):
    make_dataset(tmp_path)
    assert main(["shard", "verify", str(tmp_path)]) == 0
    flip_byte(tmp_path / "train-00001.tar", 2000)
    assert main(["shard", "verify", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "train-00001.tar: sha256" in out.out
    assert "train-00000.tar" not in out.out and "1 problem(s)" in out.err


def test_verify_reports_truncation_missing_shards_and_schema(tmp_path):
    make_dataset(tmp_path)
    shard = tmp_path / "val-00000.tar"
    shard.write_bytes(shard.read_bytes()[:1000])
    (tmp_path / "train-00002.tar").unlink()
    problems = verify_dataset(tmp_path)
    assert any(p.startswith("val-00000.tar: 1000 bytes") for p in problems)
    assert any(p.startswith("train-00002.tar: missing") for p in problems)

    manifest = json.loads((tmp_path / contract.MANIFEST_NAME).read_text())
    manifest["schema_version"] = 99
    (tmp_path / contract.MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="schema version 99"):
        verify_dataset(tmp_path)


def test_verify_checks_members_when_the_manifest_matches_a_bad_tar(tmp_path):
    """A shard rewritten with a missing member and a matching manifest entry is still caught."""
    make_dataset(tmp_path)
    shard = tmp_path / "train-00000.tar"
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers() if not m.name.endswith("hazard.npy")]
    with tarfile.open(shard, "w") as tar:
        for member, data in members:
            import io
            tar.addfile(member, io.BytesIO(data))
    from sharding.writer import sha256_file

    manifest = json.loads((tmp_path / contract.MANIFEST_NAME).read_text())
    entry = next(s for s in manifest["shards"] if s["name"] == shard.name)
    entry.update(bytes=shard.stat().st_size, sha256=sha256_file(shard))
    (tmp_path / contract.MANIFEST_NAME).write_text(json.dumps(manifest))
    problems = verify_dataset(tmp_path)
    assert problems and all("hazard.npy" in p for p in problems)


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "no such dataset folder"),
    (lambda d: d.mkdir(), "no manifest.json"),
])
def test_verify_refuses_missing_or_empty_folder(tmp_path, setup, message, capsys):
    folder = tmp_path / "ds"
    setup(folder)
    assert main(["shard", "verify", str(folder)]) == 1
    err = capsys.readouterr().err
    assert message in err and str(folder) in err and len(err.strip().splitlines()) == 1
