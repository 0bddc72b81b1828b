"""Fleet-scale writing: --partition i/k + `lwm shard merge`, --skip-bad, fsspec outputs, resume.

The scenes are the hand-made ones of tests.helpers (pixel (0, 0) encodes scene/step/camera),
written by the real writer; fsspec targets are real `memory://` and `file://` filesystems.
"""

import functools
import json
import os
import shutil

import fsspec
import pytest

from datamodules.shard_set import iter_samples, open_shard_set
from lightning_wm.cli import main
from sharding import contract
from sharding.errors import ShardError, SourceError
from sharding.merge import merge_parts
from sharding.samples import encode_scene
from sharding.verify import verify_dataset
from sharding.writer import PROGRESS_NAME, SceneTask, plan_shards, write_dataset
from tests.helpers import ACTIONS, camera_infos, make_scene

STEPS, CHUNK, SIZE = 16, 8, 16
ENCODED: list[str] = []  # scene ids encoded in this process (workers=1), to prove what a resume redoes


def _encode(task: SceneTask, bad: frozenset = frozenset()) -> list[dict]:
    ENCODED.append(task.scene_id)
    if task.handle in bad:
        raise SourceError(f"{task.scene_id}: CAM_FRONT image missing on disk")
    scene = make_scene(task.handle, STEPS, SIZE)
    return encode_scene(scene, source="test", split=task.split, cameras=camera_infos(SIZE),
                        chunk_steps=CHUNK, jpeg_quality=95)


def write(out, train=6, val=2, bad=(), fingerprint="fleet-v1", **options) -> contract.Manifest:
    """Scenes 0..train+val-1, two per shard: train-00000..00002 and val-00000 by default."""
    tasks = [SceneTask(f"scene-{i:03d}", "train" if i < train else "val", i) for i in range(train + val)]
    fields = dict(source="test", fps=10.0, chunk_steps=CHUNK, action_names=ACTIONS, agent_fields=["a", "b", "c"],
                  cameras=camera_infos(SIZE), fingerprint=fingerprint)
    options.setdefault("workers", 1)
    options.setdefault("progress", False)
    return write_dataset(out, plan_shards(tasks, 2), functools.partial(_encode, bad=frozenset(bad)), fields,
                         **options)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A single-machine dataset and the same written as two partitions (not merged yet)."""
    root = tmp_path_factory.mktemp("fleet")
    write(root / "single")
    write(root / "parts", partition=(0, 2), workers=2)  # the spawn pool gives the same bytes
    write(root / "parts", partition=(1, 2))
    return root


def tars(folder):
    return sorted(p.name for p in folder.glob("*.tar"))


def test_two_partitions_merged_equal_the_single_run_byte_for_byte(fleet, tmp_path):
    parts = tmp_path / "parts"
    shutil.copytree(fleet / "parts", parts)
    assert not (parts / contract.MANIFEST_NAME).exists()  # only part manifests before the merge
    part0 = json.loads((parts / "manifest.part-00000-of-00002.json").read_text())
    part1 = json.loads((parts / "manifest.part-00001-of-00002.json").read_text())
    names0, names1 = {s["name"] for s in part0["shards"]}, {s["name"] for s in part1["shards"]}
    assert names0 == {"train-00000.tar", "train-00002.tar"} and names1 == {"train-00001.tar", "val-00000.tar"}
    assert part0["partition"]["planned_shards"] == tars(fleet / "single")

    assert main(["shard", "merge", str(parts)]) == 0
    single = fleet / "single"
    assert tars(parts) == tars(single)
    for name in tars(single):
        assert (parts / name).read_bytes() == (single / name).read_bytes(), name
    assert (parts / contract.MANIFEST_NAME).read_bytes() == (single / contract.MANIFEST_NAME).read_bytes()
    assert verify_dataset(parts) == []
    assert main(["shard", "verify", str(parts)]) == 0
    dataset = open_shard_set(str(parts))  # the datamodule's reader
    shard = dataset.manifest.shards[0]
    keys = [s["__key__"] for s in iter_samples(dataset.urls[shard.name], shard.samples)]
    assert keys == ["scene-000-000", "scene-000-001", "scene-001-000", "scene-001-001"]


def test_a_partition_rerun_keeps_its_shards_and_leaves_the_others_alone(fleet, tmp_path):
    parts = tmp_path / "parts"
    shutil.copytree(fleet / "parts", parts)
    other = (parts / "train-00001.tar").stat().st_mtime_ns
    (parts / "train-00002.tar").unlink()  # part 0 lost a shard
    (parts / ".train-00001.tar.tmp-999").write_bytes(b"part 1 is uploading")  # another machine's temp file
    ENCODED.clear()
    write(parts, partition=(0, 2))
    assert ENCODED == ["scene-004", "scene-005"]  # only the lost shard's scenes are encoded again
    assert (parts / ".train-00001.tar.tmp-999").exists() and (parts / "train-00001.tar").stat().st_mtime_ns == other
    (parts / ".train-00001.tar.tmp-999").unlink()
    merge_parts(parts)
    assert verify_dataset(parts) == []


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "manifest.part-00001-of-00002.json").unlink(),
         "1 of 2 parts missing, e.g. manifest.part-00001-of-00002.json; .* --partition 1/2"),
        (lambda d: (d / "val-00000.tar").unlink(), "val-00000.tar: listed in a part manifest but missing"),
        (lambda d: (d / "train-00002.tar").write_bytes(b"short"), "train-00002.tar: 5 bytes, its part manifest says"),
        (lambda d: [p.unlink() for p in d.glob("manifest.part-*")], "no part manifests"),
        (lambda d: shutil.copy(d / "manifest.part-00000-of-00002.json", d / "manifest.part-00000-of-00003.json"),
         r"different partition counts \[2, 3\]"),
    ],
    ids=["missing-part", "missing-shard", "wrong-size", "no-parts", "mixed-k"],
)
def test_merge_refuses_incomplete_or_mismatched_parts(fleet, tmp_path, damage, message):
    parts = tmp_path / "parts"
    shutil.copytree(fleet / "parts", parts)
    damage(parts)
    with pytest.raises(ShardError, match=message):
        merge_parts(parts)
    assert not (parts / contract.MANIFEST_NAME).exists()


def test_merge_refuses_parts_made_with_other_settings(fleet, tmp_path, capsys):
    parts = tmp_path / "parts"
    shutil.copytree(fleet / "parts", parts)
    path = parts / "manifest.part-00001-of-00002.json"
    data = json.loads(path.read_text())
    data["fingerprint"] = "another-run"
    path.write_text(json.dumps(data))
    assert main(["shard", "merge", str(parts)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lwm shard: error: ") and "manifest.part-00001-of-00002.json: fingerprint differs" in err
    assert len(err.splitlines()) == 1 and not (parts / contract.MANIFEST_NAME).exists()
    with pytest.raises(ShardError, match="manifest.part-00000-of-00002.json: fingerprint fleet-v1.*other --out"):
        write(parts, partition=(0, 2), fingerprint="fleet-v2")  # a machine with other settings is refused early


def test_a_bad_scene_stops_before_its_shard_and_skip_bad_lists_it(tmp_path, capsys):
    out = tmp_path / "ds"
    with pytest.raises(SourceError, match="scene scene-003: scene-003: CAM_FRONT image missing.*--skip-bad"):
        write(out, bad={3})  # 2nd scene of train-00001
    assert sorted(os.listdir(out)) == [PROGRESS_NAME, "train-00000.tar"]  # nothing for the bad scene's shard
    first = (out / "train-00000.tar").stat().st_mtime_ns

    manifest = write(out, bad={3, 4, 5}, skip_bad=True, workers=2)  # resume; failures cross the spawn pool
    assert (out / "train-00000.tar").stat().st_mtime_ns == first
    assert [s["scene"] for s in manifest.skipped_scenes] == ["scene-003", "scene-004", "scene-005"]
    assert manifest.skipped_scenes[0]["reason"] == "scene-003: CAM_FRONT image missing on disk"
    assert manifest.skipped_scenes[0]["shard"] == "train-00001.tar"
    assert tars(out) == ["train-00000.tar", "train-00001.tar", "val-00000.tar"]  # train-00002: all scenes bad
    assert manifest.split_shards("train")[1].scenes == ["scene-002"]
    on_disk = contract.Manifest.from_json((out / contract.MANIFEST_NAME).read_text(), "manifest")
    assert on_disk.skipped_scenes == manifest.skipped_scenes
    assert "scene-003" not in on_disk.splits()["train"]["scenes"]
    assert verify_dataset(out) == []
    assert "skipped scene scene-004 (train-00002.tar)" in capsys.readouterr().err


def test_skipped_scenes_survive_partition_and_merge(tmp_path):
    out = tmp_path / "ds"
    write(out, bad={3}, skip_bad=True, partition=(1, 2))
    write(out, bad={3}, skip_bad=True, partition=(0, 2))
    merged = merge_parts(out)
    assert [(s["scene"], s["shard"]) for s in merged.skipped_scenes] == [("scene-003", "train-00001.tar")]
    assert verify_dataset(out) == []


def test_memory_url_output_round_trip_and_resume(fleet):
    url = "memory://lwm-fleet-test/ds"
    fs = fsspec.filesystem("memory")
    try:
        with pytest.raises(SourceError):
            write(url, bad={5})
        names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls("/lwm-fleet-test/ds", detail=False))
        assert names == [PROGRESS_NAME, "train-00000.tar", "train-00001.tar"]  # no temp key, no manifest
        ENCODED.clear()
        manifest = write(url)  # resume on the fsspec filesystem
        assert ENCODED == ["scene-004", "scene-005", "scene-006", "scene-007"]
        for shard in manifest.shards:
            assert fs.cat_file(f"/lwm-fleet-test/ds/{shard.name}") == (fleet / "single" / shard.name).read_bytes()
        assert not fs.exists(f"/lwm-fleet-test/ds/{PROGRESS_NAME}")
        dataset = open_shard_set(url)  # the datamodule reads it back from memory://
        assert dataset.manifest.fingerprint == "fleet-v1"
        val = dataset.manifest.split_shards("val")[0]
        assert len(list(iter_samples(dataset.urls[val.name], val.samples))) == 4
    finally:
        fs.rm("/lwm-fleet-test", recursive=True)


def test_file_url_partitions_merge_and_verify(fleet, tmp_path):
    url = f"file://{tmp_path}/ds"
    write(url, partition="1/2")
    write(url, partition="0/2")
    assert main(["shard", "merge", url]) == 0
    out = tmp_path / "ds"
    assert (out / contract.MANIFEST_NAME).read_bytes() == (fleet / "single" / contract.MANIFEST_NAME).read_bytes()
    assert not [n for n in os.listdir(out) if ".tmp-" in n]
    assert verify_dataset(out) == []


def test_progress_bar_shows_scenes_and_frames_per_second(tmp_path, capsys):
    write(tmp_path / "ds", train=2, val=0, progress=True)
    err = capsys.readouterr().err
    assert "scene/s" in err and "frames/s" in err


def test_partition_flag_is_validated(capsys):
    for bad in ("2/2", "-1/2", "1", "a/b"):
        with pytest.raises(SystemExit):
            main(["shard", "synthetic", "--partition", bad, "--out", "unused"])
        assert "--partition" in capsys.readouterr().err
