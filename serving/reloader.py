"""Loads every variant at start-up and follows registry aliases afterwards.

A background task polls each alias URI; when an alias moved, the new version is loaded in a
worker thread while the old one keeps serving, then swapped in with one assignment. If the
registry (MLflow) cannot be reached, what is loaded keeps serving and `/ready` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from serving.metrics import ServingMetrics
from serving.registry import ModelSource, ServedModel, VariantSet, is_alias_uri, pinned_uri

log = logging.getLogger(__name__)


class ModelReloader:
    """Start-up loading, alias polling and forced reloads of a VariantSet."""

    def __init__(
        self, variants: VariantSet, source: ModelSource, metrics: ServingMetrics, poll_s: float
    ) -> None:
        self._variants, self._source, self._metrics = variants, source, metrics
        self._poll_s = poll_s
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.registry_error: str | None = None
        self.last_poll_at: float | None = None

    async def refresh(self, force: bool = False) -> dict[str, str]:
        """Check every variant once; load what moved (or everything when forced).

        Returns variant -> what happened ("unchanged", "loaded <version>", or the error).
        """
        async with self._lock:
            self.registry_error = None  # set again by any variant that cannot resolve
            outcome = {v: await self._refresh_one(v, force) for v in self._variants.uris}
        self.last_poll_at = time.time()
        return outcome

    async def _refresh_one(self, variant: str, force: bool) -> str:
        uri = self._variants.uris[variant]
        current = self._variants.get(variant)
        try:
            version = await asyncio.to_thread(self._source.resolve, uri)
        except Exception as err:  # noqa: BLE001 - registry down: keep serving what is loaded
            self.registry_error = f"{type(err).__name__}: {err}"[:500]
            self._variants.errors[variant] = f"registry unreachable: {self.registry_error}"
            log.warning("variant %s: cannot resolve %s (%s)", variant, uri, self.registry_error)
            return self._variants.errors[variant]
        self._variants.errors.pop(variant, None)
        if version is None and is_alias_uri(uri):
            self._variants.errors[variant] = f"alias of {uri} is not set"
            return self._variants.errors[variant]
        if current is not None and not force and (version is None or version == current.version):
            return "unchanged"
        target = pinned_uri(uri, version) if version is not None else uri
        try:
            model = await asyncio.to_thread(self._source.load, target)
        except Exception as err:  # noqa: BLE001 - a bad version must not stop the old one
            self._variants.errors[variant] = f"load of {target} failed: {err}"[:500]
            self._metrics.model_reloads.labels(variant, "failed").inc()
            log.error("variant %s: %s", variant, self._variants.errors[variant])
            return self._variants.errors[variant]
        self._install(variant, model)
        return f"loaded {model.version}"

    def _install(self, variant: str, model: ServedModel) -> None:
        previous = self._variants.swap(variant, model)
        if previous is not None:
            with contextlib.suppress(KeyError):
                self._metrics.model_info.remove(variant, previous.name, previous.version)
        self._metrics.model_info.labels(variant, model.name, model.version).set(1)
        self._metrics.model_reloads.labels(variant, "loaded").inc()
        log.info(
            "variant %s now serves %s version %s%s",
            variant,
            model.name,
            model.version,
            f" (was {previous.version})" if previous else "",
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll(), name="model-alias-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            await self.refresh()

    def state(self) -> dict[str, object]:
        return {
            "ok": self.registry_error is None,
            "last_error": self.registry_error,
            "last_poll_at": self.last_poll_at,
            "poll_s": self._poll_s,
        }
