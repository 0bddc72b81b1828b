"""Typed root config of `lwm fit` (conf/fit.yaml) and of the Lightning Trainer (conf/trainer/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datamodules.shard_datamodule import ShardDataConfig
from lightning_wm.tracking import LoggerConfig


@dataclass
class TrainerConfig:
    """Hydra group `trainer/`: passed to `lightning.Trainer` as keyword arguments."""

    accelerator: str = "auto"  # cpu | gpu | auto
    devices: Any = "auto"  # number of devices per node, a list of ids, or auto
    num_nodes: int = 1  # machines (multi-node DDP)
    strategy: str = "auto"  # auto | ddp | ddp_spawn | fsdp ...
    precision: str = "32-true"  # 32-true | bf16-mixed | 16-mixed
    max_steps: int = 2000  # optimiser steps; -1: no limit
    max_epochs: int = -1  # -1: no limit (max_steps decides)
    max_time: str | None = None  # wall-clock limit "DD:HH:MM:SS"; null: none
    val_check_interval: Any = None  # validate every N train steps (int) or epoch fraction (float); null: each epoch
    check_val_every_n_epoch: int | None = 1  # null with an int val_check_interval: count steps across epochs
    limit_val_batches: Any = None  # int batches or float fraction of the val split per validation; null: all
    num_sanity_val_steps: int = 1  # val batches run before training to catch errors early
    log_every_n_steps: int = 10  # metric logging interval, in steps
    gradient_clip_val: float | None = 100.0  # clip the global gradient norm; null: off
    accumulate_grad_batches: int = 1  # optimiser step every N batches
    enable_progress_bar: bool = True  # Lightning's progress bar
    deterministic: bool = False  # torch deterministic algorithms (slower)


@dataclass
class FitConfig:
    """`lwm fit`: data, model, trainer, logger and callbacks, composed from conf/."""

    data: ShardDataConfig = field(default_factory=ShardDataConfig)
    model: Any = None  # a model family's config (conf/model/*.yaml)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    callbacks: dict[str, Any] = field(default_factory=dict)  # name -> {_target_: class, ...kwargs}
    seed: int = 0  # seed_everything(seed, workers=True)
    ckpt_path: str | None = None  # resume: `last` or a .ckpt path; models:/NAME@ALIAS: fine-tune (a new run)
    runs_dir: str = "lwm_runs"  # checkpoints go to <runs_dir>/<run name>/checkpoints
    default_camera: str = "front"  # the camera a single-camera model trains on when data.cameras is null
