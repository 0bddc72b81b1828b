"""ShardDataModule: batch contract, determinism, DDP splitting, remote reading, bad input."""

import contextlib
import functools
import http.server
import json
import threading
from collections import Counter

import pytest
import torch

from datamodules.shard_datamodule import ShardDataModule
from sharding import contract
from sharding.errors import ConfigError, ShardError
from tests.helpers import make_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """6 train scenes x 2 chunks in 3 shards, 2 val scenes in 1 shard; chunks of 8 steps."""
    root = tmp_path_factory.mktemp("ds")
    make_dataset(root)
    return root


def datamodule(path, **overrides):
    config = dict(path=str(path), window=4, batch_size=2, num_workers=0, shuffle_buffer=4) | overrides
    rank, world = config.pop("rank", None), config.pop("world", None)
    dm = ShardDataModule(config, rank=rank, world=world)
    dm.setup()
    return dm


def window_ids(batch):
    """(scene, first step) of each window, read back from the pixel code of tests.helpers."""
    code = batch["frames"][:, 0, 0, :, 0, 0].numpy().astype(int)  # [B, 3] at t=0, view 0
    return [(round(c[0] / 20), round(c[1] / 12)) for c in code]


def test_batch_contract(dataset):
    dm = datamodule(dataset, cameras=["front_left", "front"], actions=["yaw_rate", "speed"])
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (2, 4, 2, 3, 16, 16) and batch["frames"].dtype == torch.uint8
    batch = dm.on_after_batch_transfer(batch, 0)
    assert batch["frames"].dtype == torch.float32 and 0 <= batch["frames"].min() <= batch["frames"].max() <= 1
    # camera order follows data.cameras: view 0 is front_left (code 80), view 1 front (code 0)
    assert batch["frames"][0, 0, 0, 2, 0, 0] * 255 == pytest.approx(80, abs=6)
    assert batch["frames"][0, 0, 1, 2, 0, 0] * 255 == pytest.approx(0, abs=6)
    assert batch["actions"].shape == (2, 4, 2)
    scene, _ = window_ids(batch)[0]
    assert batch["actions"][0, 0, 1].item() == pytest.approx(10.0 + scene)  # speed column moved to 2nd
    assert torch.allclose(batch["ego"][:, 0], torch.eye(4).expand(2, 4, 4))  # relative to first step
    assert batch["ego"][0, 3, 0, 3].item() == pytest.approx(3.0)  # 1 m per step along x
    assert batch["hazard"].shape == (2, 4) and batch["intrinsics"].shape == (2, 2, 3, 3)
    assert batch["ego_from_camera"].shape == (2, 2, 4, 4) and batch["timestamps"].dtype == torch.int64
    assert dm.action_names == ["yaw_rate", "speed"] and dm.camera_names == ["front_left", "front"]


def collect(loader):
    return [window_ids(b) for b in loader]


def test_validation_stream_is_deterministic_and_covers_every_window_once(dataset):
    dm = datamodule(dataset, batch_size=3)
    first, second = collect(dm.val_dataloader()), collect(dm.val_dataloader())
    assert first == second
    windows = [w for batch in first for w in batch]
    # 2 val scenes (ids 6, 7) x 16 steps, windows of 4 at fixed starts
    assert sorted(windows) == sorted((s, t) for s in (6, 7) for t in range(0, 16, 4))
    assert len(first) == len(dm.val_dataloader()) == 3


def test_train_epochs_differ_but_repeat_for_a_seed(dataset):
    dm = datamodule(dataset)
    loader = dm.train_dataloader()
    epoch0 = collect(loader)
    loader.epoch_fn = lambda: 1
    epoch1 = collect(loader)
    loader.epoch_fn = lambda: 0
    assert collect(loader) == epoch0 and epoch1 != epoch0
    assert len(epoch0) == len(loader) == 12  # 12 chunks x 2 windows / batch 2


def test_two_workers_yield_exactly_the_rank_quota(dataset):
    dm = datamodule(dataset, num_workers=2)
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == len(loader) == 12
    assert {s for b in batches for s, _ in window_ids(b)} == set(range(6))
    # persistent workers count epochs themselves: the next pass is shuffled anew
    assert collect(loader) != [window_ids(b) for b in batches]


@pytest.mark.parametrize("workers", [0, 2])
def test_two_ranks_read_disjoint_shards_and_equal_batch_counts(dataset, workers):
    """3 train shards over 2 ranks (2 shards vs 1): disjoint scenes, same number of batches."""
    seen, counts = [], []
    for rank in (0, 1):
        dm = datamodule(dataset, rank=rank, world=2, num_workers=workers)
        batches = list(dm.train_dataloader())
        counts.append(len(batches))
        seen.append({s for b in batches for s, _ in window_ids(b)})
    assert counts[0] == counts[1] == 6
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(range(6))
    val = [collect(datamodule(dataset, rank=r, world=2, num_workers=workers).val_dataloader()) for r in (0, 1)]
    assert len(val[0]) == len(val[1])
    assert Counter(w for batches in val for b in batches for w in b).keys() == {
        (s, t) for s in (6, 7) for t in range(0, 16, 4)}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(directory):
    """A real HTTP server on 127.0.0.1 serving `directory`."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=directory))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture
def http_root(dataset):
    with serve(dataset) as url:
        yield url


def test_reads_from_http_folder_and_brace_pattern(dataset, http_root):
    local = collect(datamodule(dataset).val_dataloader())
    assert collect(datamodule(http_root).val_dataloader()) == local
    dm = datamodule(http_root + "/train-{00000..00001}.tar")
    scenes = {s for b in dm.train_dataloader() for s, _ in window_ids(b)}
    assert scenes == {0, 1, 2, 3}  # the pattern picked 2 of 3 train shards


def test_fsspec_url(dataset):
    assert collect(datamodule(f"file://{dataset}").val_dataloader()) == collect(datamodule(dataset).val_dataloader())


# ---- bad input: a one-line error naming the file or key and the fix --------------------
def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(ShardError, match="no such dataset folder.*lwm shard synthetic"):
        datamodule(tmp_path / "nope")
    with pytest.raises(ShardError, match="empty"):
        datamodule(tmp_path)


def test_schema_mismatch(tmp_path):
    make_dataset(tmp_path, train_scenes=2, val_scenes=1)
    manifest = json.loads((tmp_path / contract.MANIFEST_NAME).read_text())
    manifest["schema_version"] = contract.SCHEMA_VERSION + 1
    (tmp_path / contract.MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match=f"manifest.json: schema version {contract.SCHEMA_VERSION + 1}.*re-shard"):
        datamodule(tmp_path)


@pytest.mark.parametrize("overrides, message", [
    (dict(cameras=["rear"]), "data.cameras: 'rear' is not a camera"),
    (dict(actions=["speed", "curvature"]), "data.actions: 'curvature' is not an action"),
    (dict(window=9), "data.window=9 is longer than the chunks"),
])
def test_names_and_window_checked_against_the_manifest(dataset, overrides, message):
    with pytest.raises(ConfigError, match=message):
        datamodule(dataset, **overrides)


def test_truncated_shard_is_refused_before_training(tmp_path):
    make_dataset(tmp_path, train_scenes=2, val_scenes=1)
    shard = tmp_path / "train-00000.tar"
    shard.write_bytes(shard.read_bytes()[:5000])
    with pytest.raises(ShardError, match="train-00000.tar: 5000 bytes.*lwm shard verify"):
        datamodule(tmp_path)


def test_corrupt_tar_while_streaming_names_the_shard(tmp_path):
    """Over http there is no size check up front: a damaged shard must fail, naming it."""
    make_dataset(tmp_path, train_scenes=2, val_scenes=1)
    shard = tmp_path / "val-00000.tar"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 1024] = b"\x07" * 1024  # same size, damaged middle
    shard.write_bytes(bytes(data))
    with serve(tmp_path) as url, pytest.raises(ShardError, match=r"/val-00000.tar.*(corrupt|re-create|re-shard)"):
        list(datamodule(url).val_dataloader())
