"""`ShardDataModule`: stream windows of `T` steps from WebDataset shards into `Batch`es.

With `path: null` it uses the synthetic default dataset, rendered once into `cache_dir` (a
folder per settings fingerprint) and reused after. Under DDP each rank reads different shards
and yields the same number of batches (see `splitting`).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader

from datamodules.batch import Batch
from datamodules.bev import BevGrid
from datamodules.shard_set import ShardSet, open_shard_set
from datamodules.window_stream import WindowSpec, WindowStream
from datamodules.windows import BevTarget
from sharding import contract
from sharding.errors import ConfigError
from sharding.synthetic.source import SyntheticDatasetConfig, dataset_fingerprint, shard_synthetic


@dataclass
class ShardDataConfig:
    """Hydra group `data/`."""

    path: str | None = None  # dataset folder, http(s) URL, brace pattern or fsspec URL; null: synthetic default
    cache_dir: str = "~/.cache/lightning_wm"  # where the synthetic default is rendered once
    synthetic: SyntheticDatasetConfig = field(default_factory=SyntheticDatasetConfig)  # used when path is null
    cameras: list[str] | None = None  # camera names to load, in this order; null: all of the manifest's
    actions: list[str] = field(default_factory=lambda: ["speed", "yaw_rate"])  # action names, in this order
    window: int = 16  # T, steps per training window (<= the manifest's chunk_steps)
    batch_size: int = 16  # windows per batch, per rank
    num_workers: int = 2  # DataLoader worker processes per rank (0: read in the main process)
    shuffle_buffer: int = 64  # windows held for shuffling in each worker
    windows_per_sample: int | None = None  # random train windows cut per chunk per epoch; null: chunk_steps // window
    seed: int = 0  # shard order and window starts (mixed with the epoch)

    def __post_init__(self) -> None:
        for key in ("window", "batch_size", "shuffle_buffer"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key}={getattr(self, key)} must be >= 1")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers={self.num_workers} must be >= 0")
        if self.windows_per_sample is not None and self.windows_per_sample < 1:
            raise ConfigError(f"data.windows_per_sample={self.windows_per_sample} must be >= 1 or null")


def synthetic_default_path(config: ShardDataConfig) -> Path:
    cache = Path(os.path.expanduser(config.cache_dir))
    return cache / f"synthetic-{dataset_fingerprint(config.synthetic)}"


def _loader_worker_init(worker_id: int) -> None:
    """A DataLoader worker leaves signals to the main process: Ctrl-C and a scheduler's SIGTERM reach the
    whole process group, and a worker they killed would crash the fit (exit 1, no checkpoint) instead of
    letting it stop at the step's end (lightning_wm/interruption.py). Then Lightning's per-worker seeding,
    which it adds itself only to loaders without a `worker_init_fn`."""
    for signum in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGUSR1", None)):
        if signum is not None:
            signal.signal(signum, signal.SIG_IGN)
    if os.environ.get("PL_SEED_WORKERS") == "1":
        pl_worker_init_function(worker_id)  # rank: rank_zero_only.rank, inherited from the forking process


class _EpochLoader(DataLoader):
    """A DataLoader that tells its WindowStream the epoch before each pass (shard order)."""

    def __init__(self, stream: WindowStream, epoch_fn: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(stream, batch_size=None, **kwargs)
        self.epoch_fn = epoch_fn

    def __iter__(self):
        self.dataset.epoch = self.epoch_fn()
        return super().__iter__()


class ShardDataModule(L.LightningDataModule):
    """Batches of `datamodules.batch.Batch`; call `setup()` before reading `manifest`."""

    def __init__(self, config: ShardDataConfig | dict, rank: int | None = None, world: int | None = None,
                 bev_grid: BevGrid | None = None) -> None:
        """bev_grid: also yield `bev` [B, T, 3, h, w] uint8 and `bev_known` [B, 3] bool, the BEV of every
        step on this grid (`datamodules.bev`); a world model passes its BEV head's grid."""
        super().__init__()
        self.config = config if isinstance(config, ShardDataConfig) else ShardDataConfig(**config)
        self._rank, self._world = rank, world  # explicit values win over the trainer's (tests)
        self.bev_grid = bev_grid
        self.dataset: ShardSet | None = None

    # ---- what the models need to know ------------------------------------------------
    @property
    def manifest(self) -> contract.Manifest:
        assert self.dataset is not None, "call setup() first"
        return self.dataset.manifest

    @property
    def camera_names(self) -> list[str]:
        return list(self.config.cameras or self.manifest.camera_names)

    @property
    def action_names(self) -> list[str]:
        return list(self.config.actions)

    @property
    def dataset_path(self) -> str:
        return self.config.path or str(synthetic_default_path(self.config))

    # ---- Lightning hooks ------------------------------------------------------------
    def prepare_data(self) -> None:
        """Render the synthetic default once (resumes if an earlier run was interrupted)."""
        if self.config.path is None:
            out = synthetic_default_path(self.config)
            if not (out / contract.MANIFEST_NAME).exists():
                shard_synthetic(self.config.synthetic, out, workers=max(1, self.config.num_workers))

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            self.dataset = open_shard_set(self.dataset_path)
            self._check_against_manifest()

    def _check_against_manifest(self) -> None:
        manifest, where = self.manifest, f"{self.dataset_path}/{contract.MANIFEST_NAME}"
        for camera in self.config.cameras or []:
            if camera not in manifest.camera_names:
                raise ConfigError(f"data.cameras: {camera!r} is not a camera of {where}; "
                                  f"choose from {manifest.camera_names}")
        for action in self.config.actions:
            if action not in manifest.action_names:
                raise ConfigError(f"data.actions: {action!r} is not an action of {where}; "
                                  f"choose from {manifest.action_names}")
        if self.config.window > manifest.chunk_steps:
            raise ConfigError(f"data.window={self.config.window} is longer than the chunks of {where} "
                              f"({manifest.chunk_steps} steps); lower data.window or re-shard with "
                              f"longer chunks")

    def _rank_world(self) -> tuple[int, int]:
        if self._rank is not None:
            return self._rank, self._world or 1
        if self.trainer is not None:
            return self.trainer.global_rank, self.trainer.world_size
        return 0, 1

    def stream(self, split: str) -> WindowStream:
        self.setup()
        rank, world = self._rank_world()
        cfg = self.config
        spec = WindowSpec(
            steps=cfg.window,
            cameras=tuple(self.camera_names),
            action_index=tuple(self.manifest.action_names.index(a) for a in cfg.actions),
            bev=None if self.bev_grid is None else BevTarget(self.bev_grid, tuple(self.manifest.agent_fields),
                                                             tuple(self.manifest.road_lines)),
            sample=contract.SampleSpec.from_manifest(self.manifest),
        )
        return WindowStream(
            self.dataset, split, spec, cfg.batch_size, cfg.num_workers, rank=rank, world=world, seed=cfg.seed,
            shuffle_buffer=cfg.shuffle_buffer,
            windows_per_sample=cfg.windows_per_sample or max(1, self.manifest.chunk_steps // cfg.window),
        )

    def _loader(self, split: str) -> DataLoader:
        workers = self.config.num_workers
        return _EpochLoader(
            self.stream(split),
            epoch_fn=lambda: self.trainer.current_epoch if self.trainer is not None else 0,
            num_workers=workers,
            persistent_workers=workers > 0,  # no re-spawn per epoch; the stream counts epochs itself
            worker_init_fn=_loader_worker_init if workers else None,
            prefetch_factor=4 if workers else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> Batch:
        """uint8 frames -> float32 in [0, 1], on the device (4x less to copy than floats)."""
        batch = dict(batch)
        batch["frames"] = batch["frames"].float().div_(255.0)
        return Batch(**batch)
