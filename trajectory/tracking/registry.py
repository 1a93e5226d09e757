"""The model registry: register a run's model, resolve aliases, load a model by URI, roll back.

`load_model` downloads the run's training checkpoint, not the pyfunc, so the service gets the
torch model itself; `resolve_alias` is one request, cheap enough to poll for hot reloads.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import torch
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from trajectory.config import Settings, get_settings
from trajectory.data.windows import WindowSpec
from trajectory.exceptions import ModelError, TrackingError
from trajectory.models.base import TrajectoryModel
from trajectory.tracking.client import connect, tracking_errors
from trajectory.tracking.runs import CHECKPOINT_DIR, MODEL_ARTIFACT, MODEL_URI_TAG

log = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"
_VERSION_TAG_METRICS = ("val_ade", "val_fde", "val_min_ade", "val_min_fde")
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")
_RUNS_URI = re.compile(r"^runs:/(?P<run_id>[0-9a-zA-Z]+)(?:/.*)?$")


@dataclass(frozen=True)
class ModelRef:
    """What a model URI names: a registered version (by number or alias) or a run."""

    name: str | None = None
    version: int | None = None
    alias: str | None = None
    run_id: str | None = None


@dataclass
class LoadedModel:
    """A model rebuilt from its checkpoint, with where it came from."""

    model: TrajectoryModel  # eval mode
    name: str | None  # registered model name; None when loaded from a run
    version: int | None
    run_id: str
    spec: WindowSpec
    meta: dict[str, Any]  # the checkpoint's metadata (train config, data version...)


def parse_model_uri(uri: str) -> ModelRef:
    """`models:/<name>@<alias>`, `models:/<name>/<version>` or `runs:/<run_id>[/...]`."""
    if match := _MODELS_URI.match(uri):
        version = match["version"]
        return ModelRef(name=match["name"], alias=match["alias"],
                        version=int(version) if version else None)
    if match := _RUNS_URI.match(uri):
        return ModelRef(run_id=match["run_id"])
    raise ModelError(
        f"unsupported model URI {uri!r}: use models:/<name>@<alias>, models:/<name>/<version> "
        "or runs:/<run_id>"
    )


def register(settings: Settings, run_id: str, alias: str = CHALLENGER) -> int:
    """Register the run's model under `settings.model_name` (once per run), point `alias` at
    it and tag the version with the data version and validation metrics; -> version."""
    client = connect(settings)
    name = settings.model_name
    with tracking_errors(f"registering run {run_id} as {name!r}"):
        run = client.get_run(run_id)
        existing = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
        if existing:
            version = max(int(v.version) for v in existing)
            log.info("run %s is already version %d of %r", run_id, version, name)
        else:
            uri = run.data.tags.get(MODEL_URI_TAG, f"runs:/{run_id}/{MODEL_ARTIFACT}")
            tags = {"data_version": run.data.tags.get("data_version", "unknown"),
                    "model": run.data.tags.get("model", "unknown"), "run_id": run_id}
            tags |= {k: str(run.data.metrics[k]) for k in _VERSION_TAG_METRICS
                     if k in run.data.metrics}
            version = int(mlflow.register_model(uri, name, tags=tags).version)
        client.set_registered_model_alias(name, alias, str(version))
    log.info("%r version %d is now @%s", name, version, alias)
    return version


def resolve_alias(settings: Settings, alias: str) -> int | None:
    """The version `alias` points at, or None when the alias or the model does not exist."""
    client = connect(settings)
    with tracking_errors(f"reading alias {alias!r} of {settings.model_name!r}"):
        try:
            model = client.get_registered_model(settings.model_name)
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
    version = model.aliases.get(alias)
    return int(version) if version is not None else None


def load_model(
    model_uri: str, settings: Settings | None = None, device: str | torch.device = "cpu"
) -> LoadedModel:
    """Rebuild the model a URI names from its run's checkpoint (see `parse_model_uri`)."""
    from trajectory.training.checkpoint import load_checkpoint

    ref = parse_model_uri(model_uri)
    client = connect(settings or get_settings())
    with tracking_errors(f"loading model {model_uri}"):
        mv = _model_version(client, ref)
        run_id = mv.run_id if mv is not None else ref.run_id
        if not run_id:
            raise TrackingError(f"{model_uri} has no source run to take a checkpoint from")
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(client.download_artifacts(run_id, CHECKPOINT_DIR, tmp))
            files = sorted(p for p in folder.iterdir() if p.is_file())
            if len(files) != 1:
                raise TrackingError(f"run {run_id} has {len(files)} files in {CHECKPOINT_DIR}/, "
                                    "expected one checkpoint")
            model, meta = load_checkpoint(files[0], device)
    version = int(mv.version) if mv is not None else None
    log.info("loaded %s (%s, run %s)", model_uri, model.name, run_id)
    return LoadedModel(model=model, name=ref.name, version=version, run_id=run_id,
                       spec=spec_from_meta(meta, model), meta=meta)


def _model_version(client: MlflowClient, ref: ModelRef) -> ModelVersion | None:
    if ref.name is None:
        return None
    if ref.alias is not None:
        return client.get_model_version_by_alias(ref.name, ref.alias)
    return client.get_model_version(ref.name, str(ref.version))


def spec_from_meta(meta: dict[str, Any], model: TrajectoryModel) -> WindowSpec:
    """The checkpoint's window spec; lengths from the model where the checkpoint lacks them."""
    known = {f.name for f in fields(WindowSpec)}
    saved = {k: v for k, v in dict(meta.get("window_spec") or {}).items() if k in known}
    return WindowSpec(**({"obs_len": model.obs_len, "pred_len": model.pred_len} | saved))


def move_alias(settings: Settings, alias: str, version: int, tags: dict[str, str]) -> None:
    """Point `alias` at `version` and set `tags` on that version (values cut to 5000 chars)."""
    client = connect(settings)
    name = settings.model_name
    with tracking_errors(f"moving alias {alias!r} of {name!r} to v{version}"):
        client.set_registered_model_alias(name, alias, str(version))
        for key, value in tags.items():
            client.set_model_version_tag(name, str(version), key, value[:5000])


def rollback_champion(
    settings: Settings, to_version: int | None = None, reason: str = "manual rollback"
) -> tuple[int, int]:
    """Point `champion` at `to_version`, by default the version the current champion
    superseded (tag `promotion.superseded_by`), with no promotion gate; -> (before, after).

    The move is recorded as `rollback.*` tags on the version that becomes champion."""
    client = connect(settings)
    name = settings.model_name
    current = resolve_alias(settings, CHAMPION)
    if current is None:
        raise TrackingError(f"model {name!r} has no {CHAMPION!r} alias to roll back")
    with tracking_errors(f"rolling back {name!r}"):
        versions = {int(v.version): v for v in client.search_model_versions(f"name = '{name}'")}
        if to_version is None:
            replaced = [n for n, v in versions.items()
                        if v.tags.get("promotion.superseded_by") == str(current)]
            if not replaced:
                raise TrackingError(f"no version of {name!r} is tagged as replaced by v{current} "
                                    "(promotion.superseded_by); pass --to-version")
            to_version = max(replaced)
        if to_version not in versions:
            raise ModelError(f"model {name!r} has no version {to_version} "
                             f"(versions: {', '.join(map(str, sorted(versions)))})")
        if to_version == current:
            raise ModelError(f"v{to_version} is already {name!r} @{CHAMPION}")
    move_alias(settings, CHAMPION, to_version, {
        "rollback.from_version": str(current), "rollback.reason": reason,
        "rollback.at": datetime.now(UTC).isoformat(timespec="seconds")})
    log.info("%r @%s: v%d -> v%d (%s)", name, CHAMPION, current, to_version, reason)
    return current, to_version
