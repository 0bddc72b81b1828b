"""`lwm shard nuscenes`: a dataset in the nuScenes layout (JSON tables under `<dataroot>/<version>/`,
`samples/`, `sweeps/`, `can_bus/`), read through the real nuscenes-devkit.

Entry point: `source.py`. `loading` opens the tables, `extract` pulls out one scene, `sync` puts
the cameras on the shard's steps, `can_bus` reads the controls; `tables` names the layout (the
fixture in `sharding.fixtures.nuscenes` writes it with the same names).
"""
