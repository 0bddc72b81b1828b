"""Typed root config of `lwm promote` (conf/promote.yaml): the evaluation protocol plus the gate."""

from __future__ import annotations

from dataclasses import dataclass, field

from lightning_wm.evaluation.config import EvaluateConfig
from lightning_wm.registry.gate import DEFAULT_TOLERANCES, HIGHER_IS_BETTER
from sharding.errors import ConfigError


@dataclass
class SimToSimGate:
    """The sim-to-sim agreement the gate also compares (`lwm regress reference=true` on a suite)."""

    episodes: int = 50  # episodes of `suite` run in both simulators; 0: not gated
    suite: str = "nominal"  # conf/suite/ name (synthetic scenes: the reference world re-creates them)
    policies: list[str] = field(default_factory=lambda: ["log_replay", "speed_up"])  # conf/policy/ names

    def __post_init__(self) -> None:
        if self.episodes < 0 or not self.policies:
            raise ConfigError(f"sim_to_sim: episodes={self.episodes} (>= 0) with policies={self.policies} (at least one)")


@dataclass
class PromoteConfig(EvaluateConfig):
    """`lwm promote`: evaluate `ckpt` with the protocol (the evaluate keys), register it as a new
    version of `name`, and move `champion_alias` to it when no gated metric regresses."""

    name: str = "driving-wm"  # registered model name
    champion_alias: str = "champion"  # alias of the version that passed the gate last
    challenger_alias: str = "challenger"  # alias given to a version that failed it
    tolerances: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))  # worse by at most this
    reuse_champion_results: bool = True  # the champion's tagged results when its protocol hash is this one's
    sim_to_sim: SimToSimGate = field(default_factory=SimToSimGate)

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
