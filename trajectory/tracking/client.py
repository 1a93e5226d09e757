"""Connecting to MLflow: tracking URI, experiment, short HTTP timeouts, errors as TrackingError."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from requests.exceptions import RequestException

from trajectory.config import Settings
from trajectory.exceptions import TrackingError

log = logging.getLogger(__name__)

# MLflow's own defaults (7 retries with backoff, 120 s timeout) hang for minutes on a dead
# server, and its download progress bars flood service logs; these apply only where the user
# has not set the variables.
ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
_SERVER_SCHEMES = {"http", "https", "databricks"}
_MAX_MESSAGE = 400


def is_server_uri(uri: str) -> bool:
    """True for a tracking server (artifacts go where it says); False for a database or file."""
    return urlparse(uri).scheme in _SERVER_SCHEMES


@contextmanager
def tracking_errors(what: str) -> Iterator[None]:
    """Re-raise MLflow and HTTP failures as TrackingError naming the action and the URI."""
    try:
        yield
    except MlflowException as err:
        raise TrackingError(_message(what, err.message)) from err
    except (RequestException, OSError) as err:
        raise TrackingError(_message(what, str(err))) from err


def _message(what: str, detail: str) -> str:
    detail = detail.strip().splitlines()[0] if detail.strip() else "no detail"
    if len(detail) > _MAX_MESSAGE:
        detail = detail[:_MAX_MESSAGE] + "..."
    return f"{what} failed (MLflow at {mlflow.get_tracking_uri()}): {detail}"


def connect(settings: Settings) -> MlflowClient:
    """Point MLflow at `settings.tracking_uri()` (making the SQLite folder); -> a client."""
    for name, value in ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    uri = settings.tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def configure(settings: Settings) -> str:
    """Connect, create or reuse `settings.experiment_name`, make it current; -> experiment id.

    Without a server the experiment's artifacts go to `settings.artifact_location()`, under
    `work_dir`, instead of the current directory.
    """
    client = connect(settings)
    name = settings.experiment_name
    with tracking_errors(f"opening experiment {name!r}"):
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            experiment_id = _create_experiment(client, settings)
        elif experiment.lifecycle_stage != "active":
            raise TrackingError(
                f"experiment {name!r} is deleted in {mlflow.get_tracking_uri()}; restore it or "
                "set TRAJ_EXPERIMENT_NAME to another name"
            )
        else:
            experiment_id = experiment.experiment_id
        mlflow.set_experiment(experiment_id=experiment_id)
    log.info("MLflow experiment %r (%s) at %s", name, experiment_id, mlflow.get_tracking_uri())
    return experiment_id


def _create_experiment(client: MlflowClient, settings: Settings) -> str:
    uri = settings.tracking_uri()
    location = None if is_server_uri(uri) else settings.artifact_location()
    try:
        return client.create_experiment(settings.experiment_name, artifact_location=location)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":  # another process created it first
            raise
        experiment = client.get_experiment_by_name(settings.experiment_name)
        if experiment is None:
            raise
        return experiment.experiment_id
