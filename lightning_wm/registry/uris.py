"""`models:/NAME@ALIAS` and `models:/NAME/VERSION`: a registered model version as a local checkpoint.

Every command that takes a checkpoint (`lwm evaluate ckpt=`, `lwm simulate sim=`, `lwm regress
sim=`, `lwm stress sim=`, `lwm fit ckpt_path=`, `lwm rollout model=`) accepts these URIs. The
version is looked up in the MLflow registry of the tracking store (`logger.tracking_uri`,
$MLFLOW_TRACKING_URI, else ./mlflow.db), its model (logged by `lwm promote`) is downloaded once
into `<runs_dir>/registry/<NAME>/v<VERSION>/`, and the checkpoint inside it is checked against
the SHA-256 the version was registered with. An alias resolves to its version at each call, so
`@champion` follows promotions.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sharding.errors import ConfigError

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+|latest))$")
CHECKPOINT_SHA_TAG = "checkpoint_sha256"


def is_model_uri(value: str | None) -> bool:
    return isinstance(value, str) and value.startswith("models:/")


@dataclass(frozen=True)
class RegisteredCheckpoint:
    """A model version resolved: its name, version, the alias asked for (if any), the local .ckpt."""

    name: str
    version: str
    alias: str | None
    checkpoint: Path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def client_for(tracking_uri: str):
    """An MlflowClient whose tracking store is also its registry."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def resolve_model_uri(uri: str, tracking_uri: str, cache_dir: Path, key: str = "ckpt") -> RegisteredCheckpoint:
    """The local checkpoint of the model version `uri` names (downloaded into `cache_dir` once)."""
    from mlflow.exceptions import MlflowException

    match = _URI.match(uri)
    if match is None:
        raise ConfigError(f"{key}={uri}: not a registered model URI; write models:/NAME@ALIAS or models:/NAME/VERSION")
    name, alias, version = match["name"], match["alias"], match["version"]
    client = client_for(tracking_uri)
    try:
        if alias is not None:
            found = client.get_model_version_by_alias(name, alias)
        elif version == "latest":
            versions = client.search_model_versions(f"name='{name}'")
            if not versions:
                raise ConfigError(f"{key}={uri}: model {name!r} has no versions in {tracking_uri}")
            found = max(versions, key=lambda v: int(v.version))
        else:
            found = client.get_model_version(name, version)
    except MlflowException as error:
        raise ConfigError(f"{key}={uri}: {_not_found(client, name, error)} in the registry of {tracking_uri}; "
                          "promote one with `lwm promote ckpt=PATH name=NAME`, or point logger.tracking_uri / "
                          "$MLFLOW_TRACKING_URI at the store that has it") from error
    folder = cache_dir / name / f"v{found.version}"
    if not (folder / ".complete").is_file():
        _download(found.source, folder, tracking_uri, f"{key}={uri}")
    checkpoints = sorted(folder.glob("data/*.ckpt"))  # the pyfunc model's data file (`lwm promote`)
    if len(checkpoints) != 1:
        raise ConfigError(f"{key}={uri}: version {found.version} of {name!r} holds {len(checkpoints)} checkpoints "
                          f"(data/*.ckpt in {found.source}); register models with `lwm promote`")
    expected = (found.tags or {}).get(CHECKPOINT_SHA_TAG)
    if expected and file_sha256(checkpoints[0]) != expected:
        shutil.rmtree(folder, ignore_errors=True)
        raise ConfigError(f"{key}={uri}: the downloaded checkpoint's SHA-256 differs from the version's "
                          f"{CHECKPOINT_SHA_TAG} tag; the artifact store was changed after registration, or the "
                          "download broke (run again to download anew)")
    return RegisteredCheckpoint(name, str(found.version), alias, checkpoints[0])


def _not_found(client, name: str, error: Exception) -> str:
    """What the registry has, for a lookup that failed."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException:
        return f"no registered model {name!r}"
    aliases = sorted((model.aliases or {}).keys())
    return f"no such version or alias of {name!r} (aliases: {aliases or 'none'}; {str(error).splitlines()[0]})"


def _download(source: str, folder: Path, tracking_uri: str, what: str) -> None:
    """The model's files into `folder`, all at once (a temporary sibling renamed into place)."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(staging), tracking_uri=tracking_uri)
        (staging / ".complete").write_text(source + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    except MlflowException as error:
        raise ConfigError(f"{what}: its model files {source} cannot be downloaded ({str(error).splitlines()[0]})"
                          ) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
