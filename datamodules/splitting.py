"""Which shards and samples each (rank, worker) reads, so that under DDP ranks never overlap
and every rank yields the same number of batches.

Train: each epoch the shard list is shuffled with a seed shared by all ranks, then dealt
out by rank and by worker (or by sample index when there are fewer shards than readers).
A reader that runs out before its batch quota re-reads its own part, never another rank's.
Val: the windows are numbered in manifest order and cut into one equal contiguous block per
reader; the last block wraps around to the first windows (as DistributedSampler pads).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Reader:
    """One data-reading process: a DataLoader worker of one DDP rank."""

    rank: int = 0
    world: int = 1
    worker: int = 0
    workers: int = 1

    def __post_init__(self) -> None:
        assert 0 <= self.rank < self.world and 0 <= self.worker < self.workers, self

    @property
    def index(self) -> int:
        return self.rank * self.workers + self.worker

    @property
    def count(self) -> int:
        return self.world * self.workers


@dataclass(frozen=True)
class TrainPart:
    """Shards a reader reads in one epoch; of their samples (counted across these shards
    in order) it keeps those with `index % modulo == offset`."""

    shards: tuple[int, ...]
    modulo: int = 1
    offset: int = 0


def epoch_rng(seed: int, epoch: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, *extra]))


def train_part(num_shards: int, reader: Reader, epoch: int, seed: int, shuffle: bool = True) -> TrainPart:
    """Deal shards `0..num_shards-1` out to `reader` for `epoch` (same answer on every rank)."""
    order = list(range(num_shards))
    if shuffle:
        order = epoch_rng(seed, epoch).permutation(num_shards).tolist()
    if num_shards >= reader.world:
        rank_shards, modulo, offset = order[reader.rank :: reader.world], 1, 0
    else:  # fewer shards than ranks: every rank reads all, keeps every world-th sample
        rank_shards, modulo, offset = order, reader.world, reader.rank
    if modulo == 1 and len(rank_shards) >= reader.workers:
        return TrainPart(tuple(rank_shards[reader.worker :: reader.workers]))
    # sample index i kept by rank r when i % world == r; among those, by worker w when
    # (i // world) % workers == w; together: i % (world * workers) == r + world * w.
    return TrainPart(tuple(rank_shards), modulo * reader.workers, offset + modulo * reader.worker)


def train_batches_per_rank(total_windows: int, batch_size: int, world: int) -> int:
    """Batches each rank yields per epoch: all train windows once, split evenly, at least one."""
    return max(1, total_windows // (batch_size * world))


def share(total: int, parts: int, index: int) -> int:
    """`total` split into `parts` near-equal integers; the `index`-th of them."""
    return total // parts + (1 if index < total % parts else 0)


def val_block(total_windows: int, reader: Reader) -> list[int]:
    """Global window indices read by `reader`: an equal contiguous block, wrapping at the end."""
    if total_windows == 0:
        return []
    size = math.ceil(total_windows / reader.count)
    start = reader.index * size
    return [(start + j) % total_windows for j in range(size)]
