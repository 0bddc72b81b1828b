"""Typed root config of `lwm simulate` (conf/simulate.yaml), validated when built."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datamodules.shard_datamodule import ShardDataConfig
from lightning_wm.simulation.scoring import ScoringConfig
from lightning_wm.tracking import LoggerConfig
from sharding.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class SimulateConfig:
    """`lwm simulate`: a policy's episodes in the learned simulator and/or the reference world."""

    data: ShardDataConfig = field(default_factory=ShardDataConfig)  # synthetic default: held-out scenes of its world
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    policy: dict[str, Any] = field(default_factory=dict)  # {_target_: class, ...keyword arguments} (conf/policy/*.yaml)
    sim: str = "last"  # world model: a .ckpt path, `last` (newest under runs_dir), models:/NAME@ALIAS, or `reference`
    reference: bool = False  # also run every episode in the reference simulator (synthetic scenes only)
    episodes: int = 200  # episodes (one per held-out scene of the synthetic world, or val windows of the shards)
    context: int = 8  # C: real context steps the simulators start from
    horizon: int = 30  # H: closed-loop steps (30 = 3 s at 10 Hz)
    batch_size: int = 50  # episodes run at once
    seed: int = 0  # start steps of the episodes and the learned simulator's latent samples
    bev_threshold: float = 0.5  # the learned simulator's BEV cell is occupied above this probability
    idm_ckpt: str | None = None  # IDM (`lwm fit model=idm`): also score the trajectory the generated video implies
    videos: int = 4  # MP4 + GIF of this many worst episodes per simulator (0: none)
    out: str | None = None  # report folder; null: <runs_dir>/simulations/<run name>
    runs_dir: str = "lwm_runs"  # where `lwm fit` keeps runs (sim=last)
    device: str = "auto"  # auto (cuda if available) | cpu | cuda
    default_camera: str = "front"  # unused by the synthetic world; kept for data configs that set it

    def __post_init__(self) -> None:
        check_run_settings(self, ("episodes", 1), ("context", 2), ("horizon", 1), ("batch_size", 1), ("videos", 0))


def check_run_settings(cfg: Any, *integers: tuple[str, int]) -> None:
    """The checks `lwm simulate` and `lwm regress` share: integer keys >= their floor, the BEV
    threshold, the device; `sim=reference` turns the reference simulator on."""
    for key, low in integers:
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{key}={value!r} must be an integer >= {low}")
    if not 0 < cfg.bev_threshold < 1:
        raise ConfigError(f"bev_threshold={cfg.bev_threshold} must be in (0, 1)")
    if cfg.device not in DEVICES:
        raise ConfigError(f"device={cfg.device!r}; choose one of {list(DEVICES)}")
    if cfg.sim == "reference" and not cfg.reference:
        cfg.reference = True  # `sim=reference`: the reference simulator alone
