"""The synthetic driving world: a procedural, deterministic simulator rendered in numpy.

Default data source of lightning-wm (no download) and the reference simulator for
closed-loop checks. Start with `simulate_scene` (one recorded scene) or `SyntheticWorld`
(step it yourself); `camera.py` holds the rig, `world.py` the world settings; `source.py` is
`lwm shard synthetic`.
"""

from sharding.contract import AGENT_FIELDS, CLASS_PEDESTRIAN, CLASS_VEHICLE  # re-exported for the world's users
from sharding.synthetic.camera import CameraConfig, RigConfig
from sharding.synthetic.driver import ScriptedDriver
from sharding.synthetic.scene import ACTION_NAMES, SceneRecord, simulate_scene
from sharding.synthetic.world import SyntheticWorld, WorldConfig

__all__ = [
    "ACTION_NAMES",
    "AGENT_FIELDS",
    "CLASS_PEDESTRIAN",
    "CLASS_VEHICLE",
    "CameraConfig",
    "RigConfig",
    "SceneRecord",
    "ScriptedDriver",
    "SyntheticWorld",
    "WorldConfig",
    "simulate_scene",
]
