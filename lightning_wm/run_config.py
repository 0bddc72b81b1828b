"""Typed root config of `lwm fit` (conf/fit.yaml) and of the Lightning Trainer (conf/trainer/).

The trainer's values are checked when the config is built (before any data is read or a run is
made), so a value Lightning would reject deep inside `Trainer(...)` ends in one line with the
choices instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from datamodules.shard_datamodule import ShardDataConfig
from lightning_wm.tracking import LoggerConfig
from sharding.errors import ConfigError

PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true",
              "transformer-engine", "transformer-engine-float16")
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "tpu", "auto")
STRATEGIES = ("auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "fsdp", "deepspeed", "single_device")


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

    def __post_init__(self) -> None:
        def refuse(key: str, value: Any, wanted: str) -> None:
            raise ConfigError(f"trainer.{key}={value!r}: {wanted}")

        if str(self.precision) not in PRECISIONS + ("64", "32", "16", "bf16"):
            refuse("precision", self.precision, f"choices: {', '.join(PRECISIONS)}")
        if self.accelerator not in ACCELERATORS:
            refuse("accelerator", self.accelerator, f"choices: {', '.join(ACCELERATORS)}")
        if not any(self.strategy == s or self.strategy.startswith(f"{s}_") for s in STRATEGIES):
            refuse("strategy", self.strategy, f"choices: {', '.join(STRATEGIES)} (and their _find_unused_parameters_* variants)")
        for key, low in (("max_steps", -1), ("max_epochs", -1), ("num_nodes", 1), ("log_every_n_steps", 1),
                         ("accumulate_grad_batches", 1), ("num_sanity_val_steps", -1)):
            if getattr(self, key) < low:
                refuse(key, getattr(self, key), f"must be an integer >= {low}" + (" (-1: no limit)" if low == -1 else ""))
        if self.max_time is not None and not re.fullmatch(r"\d+:\d{1,2}:\d{1,2}:\d{1,2}", str(self.max_time)):
            refuse("max_time", self.max_time, "give DD:HH:MM:SS, e.g. 00:00:15:00, or null")
        if self.gradient_clip_val is not None and self.gradient_clip_val <= 0:
            refuse("gradient_clip_val", self.gradient_clip_val, "must be > 0, or null to turn clipping off")
        devices = self.devices
        if isinstance(devices, int) and devices < 1 and devices != -1:
            refuse("devices", devices, "a count >= 1, -1 (all), a list of ids, or auto")
        for key in ("val_check_interval", "limit_val_batches"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0
                                      or (isinstance(value, float) and value > 1)):
                refuse(key, value, "an int count of steps/batches, a float fraction in [0, 1], or null")


def check_accelerator_available(trainer: TrainerConfig) -> None:
    """Refuse an accelerator this machine does not have (Lightning says only 'No supported gpu backend')."""
    import torch

    if trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        found = "mps" if torch.backends.mps.is_available() else "cpu"
        raise ConfigError(f"trainer.accelerator={trainer.accelerator}: this machine has no CUDA GPU "
                          f"(torch {torch.__version__}, CUDA {'built' if torch.version.cuda else 'not built'}); "
                          f"use trainer.accelerator={found} or auto")
    if trainer.accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.accelerator=mps: this machine has no Apple MPS device; use trainer.accelerator=cpu or auto")
    if trainer.accelerator == "tpu":
        try:
            import torch_xla  # noqa: F401
        except ImportError:
            raise ConfigError("trainer.accelerator=tpu: torch_xla is not installed; use trainer.accelerator=cpu or auto") from None


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
    new_run: bool = False  # with ckpt_path: continue from the checkpoint as a new run (new name, MLflow tag resumed_from)
    runs_dir: str = "lwm_runs"  # checkpoints go to <runs_dir>/<run name>/checkpoints
    default_camera: str = "front"  # the camera a single-camera model trains on when data.cameras is null
    distributed_timeout_s: float = 1800.0  # torchrun/srun: how long a rank waits for the others (start-up, rank
    # zero's data preparation, every collective) before it stops with an error naming what it waited for
    distributed_heartbeat_s: float = 60.0  # torchrun/srun: a rank silent this long is taken as dead and the job
    # stops with exit 1 (gloo would wait for it in the next collective)
