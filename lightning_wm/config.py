"""Compose `conf/` with Hydra into typed configs, and turn Hydra's errors into one line.

Each component's dataclass lives next to the component; this module only registers them in
Hydra's ConfigStore (as `*_schema` entries the YAML files extend) and composes. Struct mode
makes a misspelt key or a wrong type fail here, before any work starts.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from datamodules.shard_datamodule import ShardDataConfig
from sharding.errors import ConfigError
from sharding.nuscenes.source import NuScenesSourceConfig
from sharding.synthetic.source import SyntheticDatasetConfig
from sharding.waymo.source import WaymoSourceConfig


@dataclass
class ShardCommandConfig:
    """Primary config of `lwm shard SOURCE` (conf/shard.yaml)."""

    out: str = "data/synthetic"  # output folder (made if missing; complete shards are kept)
    workers: int = 2  # processes encoding scenes in parallel
    progress: bool = True  # show a progress bar
    source: Any = None  # the source group's settings (conf/source/*.yaml)


def register_configs() -> None:
    """Put every component's schema into Hydra's ConfigStore (idempotent)."""
    # imported here: the model and run configs import lightning/torch, `lwm shard` does not need them
    from lightning_wm.evaluation.config import EvaluateConfig
    from lightning_wm.models.registry import FAMILIES
    from lightning_wm.registry.config import PromoteConfig
    from lightning_wm.rollout_config import RolloutConfig
    from lightning_wm.run_config import FitConfig, TrainerConfig
    from lightning_wm.simulation.config import SimulateConfig
    from lightning_wm.testing.config import RegressConfig
    from lightning_wm.testing.stress.config import StressConfig
    from lightning_wm.testing.suites import SuiteConfig
    from lightning_wm.tracking import LoggerConfig

    store = ConfigStore.instance()
    store.store(name="shard_schema", node=ShardCommandConfig)
    store.store(group="source", name="synthetic_schema", node=SyntheticDatasetConfig)
    store.store(group="source", name="nuscenes_schema", node=NuScenesSourceConfig)
    store.store(group="source", name="waymo_schema", node=WaymoSourceConfig)
    store.store(name="fit_schema", node=FitConfig)
    store.store(name="evaluate_schema", node=EvaluateConfig)
    store.store(name="simulate_schema", node=SimulateConfig)
    store.store(name="regress_schema", node=RegressConfig)
    store.store(name="stress_schema", node=StressConfig)
    store.store(name="promote_schema", node=PromoteConfig)
    store.store(name="rollout_schema", node=RolloutConfig)
    store.store(group="suite", name="suite_schema", node=SuiteConfig)
    store.store(group="data", name="shard_data_schema", node=ShardDataConfig)
    store.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    store.store(group="logger", name="logger_schema", node=LoggerConfig)
    for name, family in FAMILIES.items():
        store.store(group="model", name=f"{name}_schema", node=family.config_class)


def one_line(error: BaseException) -> str:
    """Hydra/OmegaConf errors span lines and chained causes; say the key, the value and the fix."""
    chain, cause = [], error
    while cause is not None and len(chain) < 8:
        chain.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    text = "\n".join(chain)
    if found := re.search(r"Could not override '([^']+)'", text):
        return f"unknown config key '{found.group(1)}': check its spelling (--print-config lists every key)"
    if found := re.search(r"Key '([^']+)' not in '([^']+)'(?:.*\n\s*full_key: (\S+))?", text):
        return f"unknown config key '{found.group(3) or found.group(1)}' (not in {found.group(2)}): check its spelling"
    if found := re.search(r"Value '([^']*)' of type '\w+' could not be converted to (\w+)\s*full_key: (\S+)", text):
        value, kind, key = found.groups()
        return f"{key}={value!r} is not a valid {kind}; fix the override"
    if found := re.search(r"Could not find '([^']+)'\s*Available options in '(\w+)':\s*((?:\t\S+\n?)+)", text):
        choices = [c for c in found.group(3).split() if not c.endswith("_schema")]
        return f"no config '{found.group(1)}'; choices for {found.group(2)}: {', '.join(choices)}"
    return chain[0].strip().splitlines()[0] if chain and chain[0].strip() else type(error).__name__


def compose_config(config_name: str, overrides: list[str], free_nodes: tuple[str, ...] = ()) -> DictConfig:
    """Compose `conf/<config_name>.yaml` with Hydra overrides; raise ConfigError on any problem.

    free_nodes: nodes whose keys are a component's keyword arguments (`policy` of `lwm simulate`:
    `policy._target_=my_module.MyPolicy policy.gain=0.5`); overrides of keys under them are set after
    composition, so any key is accepted there and the component's constructor checks it.
    """
    register_configs()

    def free(override: str) -> bool:
        key = override.split("=", 1)[0].lstrip("+")
        return "=" in override and any(key.startswith(f"{node}.") and key != f"{node}._target_" for node in free_nodes)

    try:
        with initialize_config_module(config_module="conf", version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=[o for o in overrides if not free(o)])
        for parsed in OverridesParser.create().parse_overrides([o.lstrip("+") for o in overrides if free(o)]):
            with open_dict(cfg):
                OmegaConf.update(cfg, parsed.key_or_group, parsed.value(), force_add=True)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(one_line(error)) from error
    reject_added_keys(cfg, free_nodes)
    return cfg


def reject_added_keys(cfg: DictConfig, free_nodes: tuple[str, ...] = (), path: str = "") -> None:
    """Refuse keys that are not fields of their typed node.

    Struct mode refuses `data.windw=8`, but Hydra's append syntax `+data.windw=8` adds the key
    anyway (and OmegaConf then sets it as a stray attribute of the dataclass). Free dicts
    (`logger.tags`, `callbacks`, `policy`) take any key.
    """
    kind = cfg._metadata.object_type
    if path in free_nodes:
        return
    if kind is not None and dataclasses.is_dataclass(kind):
        fields = {f.name for f in dataclasses.fields(kind)}
        for key in cfg.keys():
            if key not in fields:
                full = f"{path}.{key}" if path else str(key)
                raise ConfigError(f"unknown config key '{full}' (not a field of {kind.__name__}; '+' adds keys only "
                                  "to free dicts such as logger.tags): check its spelling (--print-config lists every key)")
    for key in cfg.keys():
        child = cfg._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
            reject_added_keys(child, free_nodes, f"{path}.{key}" if path else str(key))


def to_object(cfg: DictConfig, where: str) -> Any:
    """A config node as its dataclass (runs its `__post_init__` checks)."""
    try:
        return OmegaConf.to_object(cfg)
    except (OmegaConfBaseException, TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {one_line(error)}") from error


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """Resolved plain containers: safe in checkpoints (weights_only) and MLflow params."""
    return OmegaConf.to_container(cfg, resolve=True, structured_config_mode=0)


@dataclass
class Overrides:
    """Flags that are shorthands for overrides, kept in the order given."""

    items: list[str] = field(default_factory=list)

    def add(self, key: str, value: Any) -> None:
        if value is not None:
            self.items.append(f"{key}={value}")
