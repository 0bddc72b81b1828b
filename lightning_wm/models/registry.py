"""Model families by name: their config dataclass and their LightningModule.

`lwm` commands build models only through this table, so a new family is one entry here
plus a `conf/model/<name>.yaml`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightning as L

from lightning_wm.models.idm import InverseDynamicsModel, manifest_args
from lightning_wm.models.idm_config import IDMConfig
from lightning_wm.models.multicam import MultiCamWorldModel
from lightning_wm.models.multicam_config import MultiCamConfig
from lightning_wm.models.multicam_rig import rig_from_manifest
from lightning_wm.models.single_cam import SingleCamWorldModel, camera_from_manifest
from lightning_wm.models.single_cam_config import SingleCamConfig
from sharding.errors import ConfigError


@dataclass(frozen=True)
class ModelFamily:
    name: str
    config_class: type
    module_class: type[L.LightningModule]
    single_view: bool  # true: trains on one camera (data.cameras defaults to [default_camera])
    # (manifest, camera names) -> extra constructor arguments read from the data (e.g. the IDM's rig, fps)
    manifest_args: Callable[[Any, list[str]], dict[str, Any]] | None = None


FAMILIES: dict[str, ModelFamily] = {
    "single_cam": ModelFamily("single_cam", SingleCamConfig, SingleCamWorldModel, single_view=True,
                              manifest_args=camera_from_manifest),
    "idm": ModelFamily("idm", IDMConfig, InverseDynamicsModel, single_view=True, manifest_args=manifest_args),
    "multicam": ModelFamily("multicam", MultiCamConfig, MultiCamWorldModel, single_view=False,
                            manifest_args=rig_from_manifest),
}


def family_of(config: Any) -> ModelFamily:
    """The family whose config class `config` is an instance of."""
    for family in FAMILIES.values():
        if isinstance(config, family.config_class):
            return family
    raise ConfigError(f"no model family takes a {type(config).__name__}; families: {sorted(FAMILIES)}")
