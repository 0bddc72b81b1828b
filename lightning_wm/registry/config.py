"""Typed root config of `lwm promote` (conf/promote.yaml): the evaluation protocol plus the gate."""

from __future__ import annotations

from dataclasses import dataclass, field

from lightning_wm.evaluation.config import EvaluateConfig
from lightning_wm.registry.gate import DEFAULT_TOLERANCES, HIGHER_IS_BETTER
from sharding.errors import ConfigError


@dataclass
class PromoteConfig(EvaluateConfig):
    """`lwm promote`: evaluate `ckpt` with the protocol (the evaluate keys), register it as a new
    version of `name`, and move `champion_alias` to it when no gated metric regresses."""

    name: str = "driving-wm"  # registered model name
    champion_alias: str = "champion"  # alias of the version that passed the gate last
    challenger_alias: str = "challenger"  # alias given to a version that failed it
    tolerances: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))  # worse by at most this
    reuse_champion_results: bool = True  # the champion's tagged results when its protocol hash is this one's

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(set(self.tolerances) - set(HIGHER_IS_BETTER))
        if unknown:
            raise ConfigError(f"tolerances.{unknown[0]}: not a gated metric; choose among {sorted(HIGHER_IS_BETTER)}")
        self.tolerances = {**DEFAULT_TOLERANCES, **{k: float(v) for k, v in self.tolerances.items()}}
        if any(v < 0 for v in self.tolerances.values()):
            raise ConfigError(f"tolerances={self.tolerances}: a tolerance is >= 0 (how much worse is allowed)")
        if self.champion_alias == self.challenger_alias:
            raise ConfigError(f"champion_alias and challenger_alias are both {self.champion_alias!r}; give two names")
