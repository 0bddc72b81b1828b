"""Registry steps of `lwm promote`: the champion's results, the new version's tags and alias.

A version's tags carry what the gate decided on: `protocol_hash`, every gated metric as
`eval/<metric>` (empty when not measurable), the checkpoint's SHA-256, its training run, and the
verdict (`gate`: passed | failed, `gate_failed`: the metrics that regressed). The champion's
results are read back from those tags when its protocol hash is this promotion's; otherwise the
champion is downloaded and evaluated again with this protocol, so the two are always measured alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lightning_wm.registry.uris import CHECKPOINT_SHA_TAG

METRIC_TAG = "eval/"


@dataclass
class Champion:
    version: str
    tags: dict[str, str]


def find_champion(client: Any, name: str, alias: str) -> Champion | None:
    """The version holding `alias`, or None (no such model yet, or no version with the alias)."""
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return Champion(str(found.version), dict(found.tags or {}))


def tagged_metrics(tags: dict[str, str]) -> dict[str, float | None]:
    """The gated metrics stored on a version (`eval/<metric>` tags; empty = not measurable)."""
    return {k[len(METRIC_TAG):]: (float(v) if v != "" else None) for k, v in tags.items() if k.startswith(METRIC_TAG)}


def version_tags(metrics: dict[str, float | None], info: dict[str, Any], sha256: str, passed: bool,
                 failed: list[str], champion: Champion | None) -> dict[str, str]:
    tags = {f"{METRIC_TAG}{k}": "" if v is None else repr(float(v)) for k, v in metrics.items()}
    return {**tags, "protocol_hash": info["protocol_hash"], CHECKPOINT_SHA_TAG: sha256,
            "training_run_id": info["training_run_id"] or "", "training_run_name": info["training_run_name"],
            "dataset_fingerprint": info["dataset_fingerprint"], "model_family": info["model_family"],
            "gate": "passed" if passed else "failed", "gate_failed": ",".join(failed),
            "gated_against": f"v{champion.version}" if champion else ""}


def tag_and_alias(client: Any, name: str, version: str, tags: dict[str, str], alias: str) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, alias, version)


def tag_training_run(client: Any, run_id: str | None, name: str, version: str, alias: str) -> bool:
    """Mark the training run (when it is in this store) with the version it became, so its run page
    links to the registry: tag `registered/<name>/v<version>` = alias. False when not found."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return False
    try:
        client.set_tag(run_id, f"registered/{name}/v{version}", alias)
    except MlflowException:
        return False
    return True
