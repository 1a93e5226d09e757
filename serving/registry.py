"""Where served models come from, and the set of variants currently loaded.

`ModelSource` is the seam: `RegistrySource` loads `models:/...` URIs through
`trajectory.tracking` (MLflow) and builds `builtin:<name>` models in-process; tests pass their
own source. A `VariantSet` holds one immutable `ServedModel` per variant; a request takes one
snapshot and uses it throughout, so swapping a variant never mixes two versions in a request.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Protocol

from trajectory.config import Settings
from trajectory.data.windows import WindowSpec
from trajectory.exceptions import ModelError
from trajectory.models import TrajectoryModel, build_model

log = logging.getLogger(__name__)

_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[\w-]+)$")


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version; never mutated after loading."""

    name: str
    version: str
    run_id: str | None
    spec: WindowSpec
    model: TrajectoryModel
    uri: str
    loaded_at: float = field(default_factory=time.time)

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "uri": self.uri,
            "obs_len": self.spec.obs_len,
            "pred_len": self.spec.pred_len,
            "dt": self.spec.dt,  # seconds per step of its inputs and forecasts
            "max_gap": self.spec.max_gap,  # longest gap (s) resampling to dt bridges
            "loaded_at": self.loaded_at,
        }


class ModelSource(Protocol):
    def load(self, uri: str) -> ServedModel:
        """Load the model a URI names (blocking; called in a worker thread)."""
        ...

    def resolve(self, uri: str) -> str | None:
        """The version an alias URI points at now; None when the URI is not an alias."""
        ...


class RegistrySource:
    """MLflow registry URIs via trajectory.tracking (imported late: mlflow is heavy);
    `builtin:<model>` built in-process."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def load(self, uri: str) -> ServedModel:
        if uri.startswith("builtin:"):
            return self._builtin(uri)
        from trajectory import tracking

        loaded = tracking.load_model(uri, self._settings)
        loaded.model.eval()
        return ServedModel(
            name=loaded.name or loaded.model.name,
            version=str(loaded.version) if loaded.version is not None else f"run-{loaded.run_id}",
            run_id=loaded.run_id,
            spec=loaded.spec,
            model=loaded.model,
            uri=uri,
        )

    def resolve(self, uri: str) -> str | None:
        match = _ALIAS_URI.match(uri)
        if match is None:
            return None
        from trajectory import tracking

        settings = self._settings.model_copy(update={"model_name": match["name"]})
        version = tracking.resolve_alias(settings, match["alias"])
        return None if version is None else str(version)

    def _builtin(self, uri: str) -> ServedModel:
        name = uri.removeprefix("builtin:")
        model = build_model(name, obs_len=self._settings.obs_len, pred_len=self._settings.pred_len)
        if model.trainable:
            raise ModelError(f"{uri}: only untrained models can be built in; use the registry")
        model.eval()
        return ServedModel(
            name=name,
            version="builtin",
            run_id=None,
            spec=WindowSpec.from_settings(self._settings),
            model=model,
            uri=uri,
        )


def is_alias_uri(uri: str) -> bool:
    """Whether the URI names a registry alias (`models:/name@alias`)."""
    return _ALIAS_URI.match(uri) is not None


def pinned_uri(uri: str, version: str) -> str:
    """`models:/name@alias` -> `models:/name/<version>`, so a load cannot race the alias."""
    match = _ALIAS_URI.match(uri)
    return f"models:/{match['name']}/{version}" if match else uri


class VariantSet:
    """The loaded model of each variant, swapped whole; a request takes one snapshot."""

    def __init__(self, uris: dict[str, str], default: str) -> None:
        self.uris = dict(uris)
        self.default = default
        self._models: dict[str, ServedModel] = {}
        self.errors: dict[str, str] = {}

    def get(self, variant: str) -> ServedModel | None:
        return self._models.get(variant)

    def swap(self, variant: str, model: ServedModel) -> ServedModel | None:
        """Install a model for a variant (one dict assignment); returns the previous one."""
        previous = self._models.get(variant)
        self._models[variant] = model
        self.errors.pop(variant, None)
        return previous
