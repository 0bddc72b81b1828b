"""Typed root config of `lwm regress` (conf/regress.yaml, suites in conf/suite/), validated when built."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datamodules.shard_datamodule import ShardDataConfig
from lightning_wm.simulation.config import check_run_settings
from lightning_wm.simulation.scoring import ScoringConfig
from lightning_wm.testing.suites import SuiteConfig
from lightning_wm.tracking import LoggerConfig
from sharding.errors import ConfigError


@dataclass
class RegressConfig:
    """`lwm regress`: a suite with a candidate and a baseline policy, in the learned and/or reference simulator."""

    data: ShardDataConfig = field(default_factory=ShardDataConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    suite: SuiteConfig = field(default_factory=SuiteConfig)
    candidate: dict[str, Any] = field(default_factory=dict)  # {_target_, ...} (conf/policy/*.yaml)
    baseline: dict[str, Any] = field(default_factory=dict)
    extra_policies: list[Any] = field(default_factory=list)  # names or {_target_, ...}: more policies to rank
    sim: str = "last"  # world-model checkpoint, `last`, models:/NAME@ALIAS, or `reference` (the reference world alone)
    reference: bool = False  # also run the suite in the reference simulator (and the sim-to-sim report)
    episodes: int | None = None  # the suite's first N episodes; None: all
    strict: bool = False  # gate on every failing or undecided threshold too
    batch_size: int = 50
    seed: int = 0
    bev_threshold: float = 0.5
    idm_ckpt: str | None = None
    videos: int = 2
    out: str | None = None
    runs_dir: str = "lwm_runs"
    device: str = "auto"
    default_camera: str = "front"  # set by conf/data/{nuscenes,waymo}.yaml; the simulators take the model's cameras

    def __post_init__(self) -> None:
        if self.episodes is not None and (isinstance(self.episodes, bool) or self.episodes < 1):
            raise ConfigError(f"episodes={self.episodes!r} must be an integer >= 1 (or null: the whole suite)")
        check_run_settings(self, ("batch_size", 1), ("videos", 0))

    # what the simulator builders of `lwm simulate` read
    @property
    def context(self) -> int:
        return self.suite.context

    @property
    def horizon(self) -> int:
        return self.suite.horizon
