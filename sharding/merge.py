"""`lwm shard merge OUT`: join the part manifests of a partitioned run into `manifest.json`.

Each machine of `--partition i/k` leaves `manifest.part-<i>-of-<k>.json`; the merge refuses
unless every part is there, all were made with the same settings (fingerprint and manifest
fields), together they cover the whole plan, and every listed shard exists with its listed
size. The merged manifest lists shards in plan order, so it equals a single-machine run's.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sharding import contract
from sharding.errors import ShardError
from sharding.output import DatasetOutput
from sharding.partition import parse_part_name

# Manifest fields every part must agree on (shards and skipped scenes are per part).
_SHARED_FIELDS = ("source", "fps", "chunk_steps", "action_names", "agent_fields", "cameras",
                  "fingerprint", "source_config", "road_lines", "schema_version")


def _read_part(output: DatasetOutput, name: str) -> tuple[contract.Manifest, dict[str, Any]]:
    where = f"{output}/{name}"
    try:
        data = json.loads(output.read_text(name) or "")
    except json.JSONDecodeError as error:
        raise ShardError(f"{where}: not valid JSON ({error}); re-run that partition") from error
    if not isinstance(data, dict) or not isinstance(data.get("partition"), dict):
        raise ShardError(f"{where}: no 'partition' entry, so not a part manifest; re-run that partition")
    partition = data.pop("partition")
    return contract.Manifest.from_json(json.dumps(data), where), partition


def merge_parts(out: str | Path) -> contract.Manifest:
    """Check the part manifests under `out` and write `manifest.json`; returns it."""
    output = DatasetOutput(out)
    parts = {name: p for name in output.names() if (p := parse_part_name(name)) is not None}
    if not parts:
        raise ShardError(f"{output}: no part manifests (manifest.part-*-of-*.json); write them with "
                         "`lwm shard SOURCE --out OUT --partition i/k` on each machine first")
    counts = sorted({p.count for p in parts.values()})
    if len(counts) > 1:
        raise ShardError(f"{output}: part manifests of different partition counts {counts} "
                         f"(from runs with different k); delete the stale ones and keep one k")
    count = counts[0]
    have = {p.index for p in parts.values()}
    missing = [i for i in range(count) if i not in have]
    if missing:
        i = missing[0]
        raise ShardError(f"{output}: {len(missing)} of {count} parts missing, e.g. "
                         f"manifest.part-{i:05d}-of-{count:05d}.json; run (or finish) the same command "
                         f"with --partition {i}/{count}, then merge again")
    manifests, planned = [], None
    for name in sorted(parts, key=lambda n: parts[n].index):
        manifest, info = _read_part(output, name)
        first = manifests[0] if manifests else None
        if first is not None:
            for key in _SHARED_FIELDS:
                if _field(manifest, key) != _field(first, key):
                    raise ShardError(
                        f"{output}/{name}: {key} differs from part 0's "
                        f"({_short(_field(manifest, key))} vs {_short(_field(first, key))}); the parts were made "
                        "with different settings: re-run the odd part with the others' command"
                    )
        if planned is not None and info.get("planned_shards") != planned:
            raise ShardError(f"{output}/{name}: plans other shards than part 0; re-run it with the same command")
        planned = info.get("planned_shards") or []
        manifests.append(manifest)
    shards = {s.name: s for m in manifests for s in m.shards}
    skipped = [s for m in manifests for s in m.skipped_scenes]
    skipped_shards = {s.get("shard") for s in skipped}
    uncovered = [n for n in planned if n not in shards and n not in skipped_shards]
    if uncovered:
        raise ShardError(f"{output}: planned shard {uncovered[0]} is in no part manifest "
                         f"({len(uncovered)} missing); re-run its partition")
    for shard in shards.values():
        size = output.size(shard.name)
        if size is None:
            raise ShardError(f"{output}/{shard.name}: listed in a part manifest but missing; re-run its partition "
                             "(complete shards are kept)")
        if size != shard.bytes:
            raise ShardError(f"{output}/{shard.name}: {size} bytes, its part manifest says {shard.bytes}; "
                             "delete it and re-run its partition")
    order = {name: i for i, name in enumerate(planned)}
    shard_list = sorted(shards.values(), key=lambda s: order.get(s.name, len(order)))
    skipped.sort(key=lambda s: order.get(s.get("shard"), len(order)))  # stable: scene order kept
    fields = {k: v for k, v in vars(manifests[0]).items() if k not in ("shards", "skipped_scenes")}
    merged = contract.Manifest(shards=shard_list, skipped_scenes=skipped, **fields)
    output.write_text(contract.MANIFEST_NAME, merged.to_json())
    return merged


def _field(manifest: contract.Manifest, key: str) -> Any:
    value = getattr(manifest, key)
    return [asdict(c) for c in value] if key == "cameras" else value


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
