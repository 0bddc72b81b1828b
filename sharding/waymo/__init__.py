"""`lwm shard waymo`: Waymo Open Dataset v2 segments (parquet), read with pyarrow, no TensorFlow.

Entry point: `source.py`. `reading` reads one segment's components, `schema` names the v2
columns once (the fixture in `sharding.fixtures.waymo` writes them with the same names).
"""
