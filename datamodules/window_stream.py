"""The IterableDataset behind the train and val loaders: windows cut from shard chunks,
shuffled (train) or in a fixed order (val), batched inside each DataLoader worker.

Step 3 of the batch path (tar -> `shard_set` samples -> `windows.decode_window` -> batches
here -> `ShardDataModule.on_after_batch_transfer`).

Each worker learns its place from `torch.utils.data.get_worker_info()` and the rank it was
given, asks `splitting` what to read, and yields exactly its share of the rank's batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from datamodules import splitting
from datamodules.shard_set import ShardSet, iter_samples
from datamodules.windows import BevTarget, collate, decode_window
from sharding import contract
from sharding.errors import ShardError


@dataclass(frozen=True)
class WindowSpec:
    steps: int  # T, steps per window
    cameras: tuple[str, ...]
    action_index: tuple[int, ...]  # columns of action.npy to keep, in order
    bev: BevTarget | None = None  # rasterise each window's BEV (the world models' BEV head target); None: no bev
    sample: contract.SampleSpec | None = None  # the manifest's member dtypes and shapes, checked per window


class WindowStream(IterableDataset):
    """Batches of windows of one split, for one rank; `epoch` is set before each pass."""

    def __init__(
        self,
        dataset: ShardSet,
        split: str,
        spec: WindowSpec,
        batch_size: int,
        num_workers: int,
        rank: int = 0,
        world: int = 1,
        seed: int = 0,
        shuffle_buffer: int = 64,
        windows_per_sample: int = 1,
    ) -> None:
        self.urls = [dataset.urls[s.name] for s in dataset.manifest.split_shards(split) if s.name in dataset.urls]
        counts = {s.name: s.samples for s in dataset.manifest.shards}
        self.samples_per_shard = [counts[u.rsplit("/", 1)[-1]] for u in self.urls]
        self.chunk_steps = dataset.manifest.chunk_steps
        self.train = split == "train"
        self.spec, self.batch_size, self.num_workers = spec, batch_size, max(1, num_workers)
        self.rank, self.world, self.seed = rank, world, seed
        self.shuffle_buffer, self.windows_per_sample = shuffle_buffer, windows_per_sample
        self.epoch = 0  # set by the loader before each pass (see shard_datamodule._EpochLoader)
        self._passes = 0  # passes made by this copy: persistent workers keep counting epochs here

    # ---- sizes -----------------------------------------------------------------------
    @property
    def total_windows(self) -> int:
        per_sample = self.windows_per_sample if self.train else self.chunk_steps // self.spec.steps
        return sum(self.samples_per_shard) * per_sample

    def __len__(self) -> int:
        """Batches this rank yields per epoch (equal on every rank)."""
        if self.train:
            return splitting.train_batches_per_rank(self.total_windows, self.batch_size, self.world)
        block = len(splitting.val_block(self.total_windows, splitting.Reader(0, self.world, 0, self.num_workers)))
        return self.num_workers * -(-block // self.batch_size)

    def _reader(self) -> splitting.Reader:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        if workers != self.num_workers:
            raise RuntimeError(f"stream built for {self.num_workers} workers runs in {workers}")
        return splitting.Reader(self.rank, self.world, worker, workers)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        reader = self._reader()
        # A persistent worker's copy of this stream never sees `epoch` change, so it counts its
        # own passes; a fresh copy (or the main process, which the loader updates) has made none.
        epoch = self.epoch + (self._passes if get_worker_info() is not None else 0)
        self._passes += 1
        windows = self._train_windows(reader, epoch) if self.train else self._val_windows(reader)
        batch: list[dict[str, np.ndarray]] = []
        for window in windows:
            batch.append(window)
            if len(batch) == self.batch_size:
                yield collate(batch)
                batch = []
        if batch:
            yield collate(batch)

    def _decode(self, sample: dict, start: int) -> dict[str, np.ndarray]:
        return decode_window(sample, start, self.spec.steps, list(self.spec.cameras), list(self.spec.action_index),
                             self.spec.bev, self.spec.sample)

    # ---- train: shuffled, random window starts, exactly this worker's quota ------------
    def _train_windows(self, reader: splitting.Reader, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        part = splitting.train_part(len(self.urls), reader, epoch, self.seed)
        quota = splitting.share(len(self), reader.workers, reader.worker) * self.batch_size
        rng = splitting.epoch_rng(self.seed, epoch, 1 + reader.index)
        max_start = self.chunk_steps - self.spec.steps
        # (sample, start) pairs; small parts fill it over several passes, which only repeats windows
        buffer: list[tuple[dict, int]] = []
        produced = 0
        while produced < quota:
            order = list(part.shards)
            if part.modulo == 1:  # sample-index splitting needs the shared order, so keep it
                rng.shuffle(order)
            kept = index = 0
            for shard in order:
                for sample in iter_samples(self.urls[shard], self.samples_per_shard[shard]):
                    mine = index % part.modulo == part.offset
                    index += 1
                    if not mine:
                        continue
                    kept += 1
                    buffer.extend((sample, int(s)) for s in rng.integers(0, max_start + 1, self.windows_per_sample))
                    while len(buffer) >= self.shuffle_buffer and produced < quota:
                        pick = int(rng.integers(len(buffer)))
                        buffer[pick], buffer[-1] = buffer[-1], buffer[pick]
                        yield self._decode(*buffer.pop())
                        produced += 1
                    if produced >= quota:
                        return
            if kept == 0:
                raise ShardError(f"train split: reader {reader} got no samples from {len(self.urls)} shard(s); "
                                 "lower data.num_workers or add shards")

    # ---- val: fixed windows, one contiguous block per reader ------------------------
    def _val_windows(self, reader: splitting.Reader) -> Iterator[dict[str, np.ndarray]]:
        per_sample = self.chunk_steps // self.spec.steps
        wanted: dict[int, list[int]] = {}  # global sample index -> window starts
        for window in splitting.val_block(self.total_windows, reader):
            wanted.setdefault(window // per_sample, []).append((window % per_sample) * self.spec.steps)
        first = 0
        for url, count in zip(self.urls, self.samples_per_shard):
            if any(first <= s < first + count for s in wanted):
                for offset, sample in enumerate(iter_samples(url, count)):
                    for start in wanted.get(first + offset, []):
                        yield self._decode(sample, start)
            first += count
