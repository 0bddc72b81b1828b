"""The nuScenes layout: JSON tables under `<dataroot>/<version>/`, `samples/`, `sweeps/`, `can_bus/`.

Both directions live here: `export` writes the synthetic world in this layout (the fixture the
tests and benchmarks read), and the other modules read a dataset in this layout through the
real nuscenes-devkit for `lwm shard nuscenes` (entry point: `sharding.nuscenes_source`).
"""

from sharding.nuscenes_layout.tables import NUSCENES_CAMERAS, OPTIONAL_TABLES, REQUIRED_TABLES, TABLES

__all__ = ["NUSCENES_CAMERAS", "OPTIONAL_TABLES", "REQUIRED_TABLES", "TABLES"]
