"""Replay files: one failure of `lwm stress` as JSON that reproduces it exactly.

A replay file holds everything the episode depends on: the base episode (scene seed, start,
context, horizon), the perturbation vector by coordinate name, the episode's id (its name and
so every seed: the learned simulator's samples, the latent noise, the action noise, all derived
from the run seed and that name), the synthetic world's settings, the simulator checkpoint and
its sha256, the policy's config, the scoring settings, the code version, and the scores it got.
`lwm stress replay FILE` rebuilds the same runner from it, re-runs the episode and compares
every score; a checkpoint whose hash differs is refused (the failure belongs to another model).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lightning_wm.simulation.episodes import EpisodeSpec
from lightning_wm.testing.stress.runner import Evaluated
from lightning_wm.testing.stress.space import PerturbationSpace
from sharding.errors import ConfigError

FORMAT = "lwm-stress-replay/1"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def replay_spec(failure: Evaluated, space: PerturbationSpace, base: EpisodeSpec, context: dict[str, Any]) -> dict:
    """The replay file's content for one failure; `context`: the run's shared settings (see
    `commands.stress.run_context`: checkpoint, hash, policy, dataset, scoring, seed, code)."""
    return {"format": FORMAT, "id": failure.id, "episode": failure.name,
            "base_episode": {k: v for k, v in asdict(base).items() if k != "edit"},
            "perturbation": space.as_dict(failure.vector),
            "space": {"episodes": int(space.coordinates[0].high) + 1, "context": base.context,
                      "horizon": base.horizon},
            **context, "objective": failure.objective, "scores": failure.row}


def read_replay(path: Path) -> dict[str, Any]:
    """A replay file, its format and required keys checked (one line naming the file otherwise)."""
    try:
        spec = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such replay file (lwm stress writes them to <out>/failures/*.json)") from None
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not a readable replay file ({error}); give a failures/*.json of lwm stress") \
            from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a replay file of this version (format {FORMAT!r} expected)")
    missing = [k for k in ("id", "episode", "base_episode", "perturbation", "space", "sim", "sim_sha256", "policy",
                           "dataset", "scoring", "seed", "bev_threshold", "scores") if k not in spec]
    if missing:
        raise ConfigError(f"{path}: replay file lacks {missing}")
    return spec


def check_checkpoint(spec: dict[str, Any], path: Path) -> None:
    """The simulator the failure was found in must be the one it replays in."""
    if spec["sim"] == "reference":
        return
    ckpt = Path(spec["sim"])
    if not ckpt.is_file():
        raise ConfigError(f"{path}: its simulator checkpoint {ckpt} does not exist; run from the folder it was found "
                          "in, or copy the checkpoint there")
    if file_sha256(ckpt) != spec["sim_sha256"]:
        raise ConfigError(f"{path}: checkpoint {ckpt} has changed since the failure was found (sha256 differs); "
                          "a replay needs the same model")


def compare_scores(saved: dict[str, Any], again: dict[str, Any], tolerance: float = 0.0) -> list[str]:
    """Score keys whose values differ between two runs of an episode: exactly (tolerance 0, a replay),
    or numbers beyond `tolerance` x max(1, |value|) (the same episode in batches of other sizes,
    whose float32 sums run in another order)."""
    keys = sorted(k for k in set(saved) | set(again) if k not in ("episode", "simulator"))

    def same(a: Any, b: Any) -> bool:
        if tolerance and isinstance(a, float) and isinstance(b, float):
            return abs(a - b) <= tolerance * max(1.0, abs(a))
        return a == b

    return [k for k in keys if not same(saved.get(k), again.get(k))]
