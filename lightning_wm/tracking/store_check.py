"""The MLflow store a command will log to, checked before any work starts.

- an http(s) URI must answer as an MLflow tracking server of REST API 2.0 (`/health`, then an
  API call answered in MLflow's JSON); a web server that is something else, or an MLflow of
  another API, would otherwise fail later with a `RestException` traceback;
- a `sqlite:///` store must sit in a folder this user can write (SQLAlchemy's "unable to open
  database file" says neither which folder nor what to do).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from sharding.errors import ConfigError
from sharding.writable import check_writable

API_PROBE = "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"


def check_store(uri: str, timeout_s: float = 5.0) -> None:
    if uri.startswith(("http://", "https://")):
        check_server(uri, timeout_s)
    elif uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        check_writable(database.parent, f"the MLflow store {database.name}",
                       "set logger.tracking_uri=sqlite:////WRITABLE/PATH/mlflow.db (or $MLFLOW_TRACKING_URI), "
                       "or run from a writable folder")


def check_server(uri: str, timeout_s: float = 5.0) -> None:
    """Refuse a server that cannot be reached, or that answers but not as MLflow's REST API 2.0."""
    base = uri.rstrip("/")
    fix = "fix logger.tracking_uri / $MLFLOW_TRACKING_URI"
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as error:
        raise ConfigError(f"{uri} answers HTTP but is not an MLflow tracking server (GET /health: {error.code} "
                          f"{error.reason}); {fix}") from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ConfigError(
            f"MLflow tracking server {uri} cannot be reached ({reason}); start it "
            f"(`mlflow server --host 127.0.0.1 --port PORT`) or {fix}"
        ) from error
    try:
        with urllib.request.urlopen(f"{base}{API_PROBE}", timeout=timeout_s) as response:
            body, status = response.read(), response.status
    except urllib.error.HTTPError as error:  # MLflow answers a missing experiment with 404 and JSON
        body, status = error.read(), error.code
    except (urllib.error.URLError, OSError) as error:
        raise ConfigError(f"MLflow tracking server {uri} stopped answering ({getattr(error, 'reason', error)}); {fix}") from error
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not ({"experiment", "error_code"} & answer.keys()):
        raise ConfigError(f"{uri} answers /health but not MLflow's REST API 2.0 (GET {API_PROBE.split('?')[0]}: "
                          f"{status}, not MLflow's JSON): not an MLflow tracking server, or one of another API "
                          f"version; {fix}")
