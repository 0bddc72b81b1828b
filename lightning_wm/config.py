"""Compose `conf/` with Hydra into typed configs, and turn Hydra's errors into one line.

Each component's dataclass lives next to the component; this module only registers them in
Hydra's ConfigStore (as `*_schema` entries the YAML files extend) and composes. Struct mode
makes a misspelt key or a wrong type fail here, before any work starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from datamodules.shard_datamodule import ShardDataConfig
from sharding.errors import ConfigError
from sharding.synthetic_source import SyntheticDatasetConfig


@dataclass
class ShardCommandConfig:
    """Primary config of `lwm shard SOURCE` (conf/shard.yaml)."""

    out: str = "data/synthetic"  # output folder (made if missing; complete shards are kept)
    workers: int = 2  # processes encoding scenes in parallel
    progress: bool = True  # show a progress bar
    source: Any = None  # the source group's settings (conf/source/*.yaml)


def register_configs() -> None:
    """Put every component's schema into Hydra's ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    store.store(name="shard_schema", node=ShardCommandConfig)
    store.store(group="source", name="synthetic_schema", node=SyntheticDatasetConfig)
    store.store(group="data", name="shard_data_schema", node=ShardDataConfig)


_KEY_PATTERNS = (
    re.compile(r"Key '([^']+)' not in '([^']+)'"),
    re.compile(r"Could not override '([^']+)'"),
    re.compile(r"Value '([^']*)' (?:of type '[^']*' )?could not be converted to (\w+)"),
)


def one_line(error: Exception) -> str:
    """Hydra/OmegaConf errors span lines and bury the key; keep the line that names it."""
    text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    full_key = re.search(r"full_key: ([\w.\[\]]+)", text)
    head = next((line for line in lines if any(p.search(line) for p in _KEY_PATTERNS)), lines[0] if lines else text)
    where = f" (key: {full_key.group(1)})" if full_key and full_key.group(1) not in head else ""
    return f"{head}{where}"


def compose_config(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose `conf/<config_name>.yaml` with Hydra overrides; raise ConfigError on any problem."""
    register_configs()
    try:
        with initialize_config_module(config_module="conf", version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(f"{one_line(error)}; check the override's spelling and type "
                          f"(`lwm ... --print-config` shows every key)") from error
    return cfg


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
