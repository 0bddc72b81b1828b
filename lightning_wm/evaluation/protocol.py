"""The evaluation protocol: what `lwm evaluate` and the promotion gate measure on, with a hash.

Reported numbers can be reproduced only when everything that chooses the windows and the
rollouts is known: the dataset (its manifest fingerprint), the split, the cameras, the batch size
and how many batches (the windows scored), the context and horizons, the counterfactual steering,
and the seed of the latent sampling. `protocol_of` collects exactly those settings from an
evaluation config; `protocol_hash` is the short SHA-256 of their canonical JSON. The hash is
logged with every evaluation's metrics (MLflow tag `protocol_hash`, metrics.json) and on every
registered model version, so two figures are comparable when their hashes are equal.

Bump PROTOCOL_VERSION when the evaluator's meaning changes (a metric computed differently):
the hash changes with it, and old figures no longer compare equal.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from lightning_wm.evaluation.config import EvaluateConfig

PROTOCOL_VERSION = 1


def protocol_of(cfg: EvaluateConfig, dataset_fingerprint: str) -> dict[str, Any]:
    """The settings that fix an evaluation's windows and rollouts (JSON-ready, sorted keys)."""
    return {
        "version": PROTOCOL_VERSION,
        "dataset_fingerprint": dataset_fingerprint,
        "split": cfg.split,
        "cameras": list(cfg.data.cameras) if cfg.data.cameras else None,
        "default_camera": cfg.default_camera,
        "batch_size": cfg.data.batch_size,
        "max_batches": cfg.max_batches,
        "data_seed": cfg.data.seed,
        "context": cfg.context,
        "horizons_s": [float(h) for h in cfg.horizons_s],
        "steer_yaw_rate": float(cfg.steer_yaw_rate),
        "steer_rad": float(cfg.steer_rad),
        "seed": cfg.seed,
    }


def protocol_hash(protocol: dict[str, Any]) -> str:
    """12 hex digits of the SHA-256 of the protocol's canonical JSON."""
    text = json.dumps(protocol, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]
