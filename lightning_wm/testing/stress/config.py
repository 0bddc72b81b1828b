"""Typed root config of `lwm stress` (conf/stress.yaml), validated when built."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datamodules.shard_datamodule import ShardDataConfig
from lightning_wm.simulation.config import check_run_settings
from lightning_wm.simulation.scoring import ScoringConfig
from lightning_wm.testing.stress.runner import OBJECTIVES
from lightning_wm.testing.stress.search import SEARCHES
from lightning_wm.testing.suites import SuiteConfig
from lightning_wm.tracking import LoggerConfig
from sharding.errors import ConfigError


@dataclass
class CemConfig:
    """The cross-entropy method's settings (`lightning_wm/testing/stress/search.py`)."""

    elite_fraction: float = 0.1  # share of each round's points the distribution is refitted to
    smoothing: float = 0.7  # weight of each refit against the previous distribution
    min_std: float = 0.05  # floor of a continuous coordinate's spread (unit interval)
    min_probability: float = 0.1  # floor of a discrete value's probability, x 1 / number of values


@dataclass
class StressConfig:
    """`lwm stress`: search the learned simulator for a policy's failures, confirm them in the reference world."""

    data: ShardDataConfig = field(default_factory=ShardDataConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    suite: SuiteConfig = field(default_factory=SuiteConfig)  # the base episodes the search perturbs
    policy: dict[str, Any] = field(default_factory=dict)  # {_target_, ...} (conf/policy/*.yaml)
    cem: CemConfig = field(default_factory=CemConfig)
    sim: str = "last"  # world-model checkpoint, `last`, or models:/NAME@ALIAS|VERSION
    search: str = "cem"  # cem | random
    budget: int = 1000  # episodes the search may run
    batch_size: int = 100  # episodes per round (CEM refits after each)
    episodes: int | None = None  # base episodes: the suite's first N; None: all
    objective: str = "pdms"  # pdms | earliest_failure (what the search minimises)
    top_k: int = 20  # failures kept, replayed, confirmed and filmed
    fixed: dict[str, Any] = field(default_factory=dict)  # coordinates held at one value: fixed.agent=none ...
    confirm: bool = True  # re-run the top failures in the reference world
    videos: bool = True  # MP4 + GIF of every top failure (learned; reference beside when confirmed)
    seed: int = 0
    bev_threshold: float = 0.5
    idm_ckpt: str | None = None
    out: str | None = None
    runs_dir: str = "lwm_runs"
    device: str = "auto"
    default_camera: str = "front"  # set by conf/data/{nuscenes,waymo}.yaml; the simulators take the model's cameras
    reference: bool = False  # set from `confirm`; the simulator builders read it

    def __post_init__(self) -> None:
        if self.sim == "reference":
            raise ConfigError("sim=reference: lwm stress searches a learned simulator for failures and confirms them "
                              "in the reference world; give a world model (sim=PATH or sim=last)")
        check_run_settings(self, ("budget", 1), ("batch_size", 1), ("top_k", 0))
        if self.search not in SEARCHES:
            raise ConfigError(f"search={self.search!r}; choose one of {list(SEARCHES)}")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective={self.objective!r}; choose one of {list(OBJECTIVES)}")
        if self.episodes is not None and (isinstance(self.episodes, bool) or self.episodes < 1):
            raise ConfigError(f"episodes={self.episodes!r} must be an integer >= 1 (or null: the whole suite)")
        self.fixed = dict(self.fixed)
        self.reference = bool(self.confirm)

    # what the simulator builders of `lwm simulate` read
    @property
    def context(self) -> int:
        return self.suite.context

    @property
    def horizon(self) -> int:
        return self.suite.horizon
