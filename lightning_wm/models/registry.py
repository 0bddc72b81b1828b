"""Model families by name: their config dataclass and their LightningModule.

`lwm` commands build models only through this table, so a new family is one entry here plus a
`conf/model/<name>.yaml`. Every family's module is built the same way:
`module_class(config, action_names, image_size, **cameras.rig_from_manifest(manifest, cameras))`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L

from lightning_wm.models.idm.config import IDMConfig
from lightning_wm.models.idm.module import InverseDynamicsModel
from lightning_wm.models.multicam.config import MultiCamConfig
from lightning_wm.models.multicam.module import MultiCamWorldModel
from lightning_wm.models.policy.config import PolicyConfig
from lightning_wm.models.policy.module import BehaviourCloningPolicy
from lightning_wm.models.single_cam.config import SingleCamConfig
from lightning_wm.models.single_cam.module import SingleCamWorldModel
from sharding.errors import ConfigError


@dataclass(frozen=True)
class ModelFamily:
    name: str
    config_class: type
    module_class: type[L.LightningModule]
    single_view: bool  # true: trains on one camera (data.cameras defaults to [default_camera])


FAMILIES: dict[str, ModelFamily] = {
    "single_cam": ModelFamily("single_cam", SingleCamConfig, SingleCamWorldModel, single_view=True),
    "idm": ModelFamily("idm", IDMConfig, InverseDynamicsModel, single_view=True),
    "multicam": ModelFamily("multicam", MultiCamConfig, MultiCamWorldModel, single_view=False),
    "policy": ModelFamily("policy", PolicyConfig, BehaviourCloningPolicy, single_view=True),
}


def family_of(config: Any) -> ModelFamily:
    """The family whose config class `config` is an instance of (the most specific one)."""
    for family in FAMILIES.values():
        if type(config) is family.config_class:
            return family
    raise ConfigError(f"no model family takes a {type(config).__name__}; families: {sorted(FAMILIES)}")
