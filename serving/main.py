"""The FastAPI app factory and its lifespan (models, cache, database, background tasks).

Nothing is built at import. Run with either
    uvicorn --factory serving.main:create_app        (preferred), or
    uvicorn serving.main:app                         (`app` is made on first access, via the
                                                      module `__getattr__` below).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI
from starlette.types import ASGIApp

import trajectory
from serving.batcher import MicroBatcher
from serving.cache import make_cache
from serving.config import ServingSettings, load_serving_settings
from serving.db import open_database
from serving.errors import ANY_ROUTE, WITH_KEY, documented, install_error_handlers
from serving.jobs import BatchJobs
from serving.metrics import ServingMetrics
from serving.middleware import RequestIdMiddleware, ServingMiddleware
from serving.predictions_log import PredictionLog
from serving.registry import ModelSource, RegistrySource, VariantSet
from serving.reloader import ModelReloader
from serving.routes import admin, batch, models, ops, predict
from serving.routing import Router
from serving.spills import replay_spills
from serving.state import ServingState
from trajectory.privacy.pseudonym import load_pseudonymiser

log = logging.getLogger(__name__)


class ServingApp(FastAPI):
    """FastAPI with the request-id layer outermost: Starlette's error middleware, which
    sends the 500 of an unhandled error, is inside it, so that 500 has X-Request-Id too."""

    def build_middleware_stack(self) -> ASGIApp:
        return RequestIdMiddleware(super().build_middleware_stack())


def create_app(
    settings: ServingSettings | None = None, *, model_source: ModelSource | None = None
) -> FastAPI:
    """A new app; settings from the environment unless given, models from the registry."""
    settings = settings or load_serving_settings()
    metrics = ServingMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await open_state(settings, metrics, model_source)
        app.state.serving = state
        try:
            yield
        finally:
            await close_state(state)

    app = ServingApp(
        title="Trajectory prediction service",
        version=trajectory.__version__,
        lifespan=lifespan,
    )
    app.add_middleware(
        ServingMiddleware,
        metrics=metrics,
        max_body_bytes=settings.max_body_bytes,
        max_csv_bytes=settings.max_csv_bytes,
    )
    install_error_handlers(app)
    for module in (predict, batch, models, admin):
        app.include_router(module.router, responses=documented(*WITH_KEY, *ANY_ROUTE))
    app.include_router(ops.router, responses=documented(*ANY_ROUTE))
    return app


async def open_state(
    settings: ServingSettings, metrics: ServingMetrics, source: ModelSource | None
) -> ServingState:
    """Open everything the service needs; a database that cannot be opened stops start-up."""
    torch.set_num_threads(settings.torch_threads)
    sys.setswitchinterval(settings.gil_switch_s)
    if not settings.auth_required:
        log.warning("SERVING_AUTH_REQUIRED=false: predict endpoints accept requests without key")
    pseudonyms = load_pseudonymiser(
        settings.pseudonym_key.get_secret_value() if settings.pseudonym_key else None,
        settings.work_dir,
    )
    engine = await asyncio.to_thread(open_database, settings.resolved_database_url(), pseudonyms)
    # rows spilled at the last shutdown (database down then), imported exactly once
    replayed = await asyncio.to_thread(replay_spills, engine, settings.work_dir, pseudonyms)
    if replayed.files or replayed.skipped:
        log.info("spill files replayed: %s", replayed)
        metrics.log_rows.labels("replayed").inc(replayed.rows)
        metrics.log_rows.labels("quarantined").inc(replayed.quarantined)
    variants = VariantSet(settings.variants, settings.default_variant)
    source = source or RegistrySource(settings.trajectory_settings())
    reloader = ModelReloader(variants, source, metrics, settings.model_poll_s)
    outcome = await reloader.refresh()
    log.info("models: %s", outcome)
    if variants.get(variants.default) is None:
        log.error("default variant %r has no model; /ready is 503", variants.default)
    prediction_log = PredictionLog(
        engine,
        metrics,
        batch_size=settings.log_batch_size,
        flush_s=settings.log_flush_s,
        max_queue=settings.log_queue_max,
        spill_dir=settings.work_dir,
    )
    state = ServingState(
        settings=settings,
        metrics=metrics,
        variants=variants,
        reloader=reloader,
        router=Router.from_weights(settings.ab_salt, list(settings.variants), settings.ab_weights),
        cache=make_cache(settings, metrics),
        engine=engine,
        log=prediction_log,
        batcher=MicroBatcher(settings.max_batch_windows, metrics),
        jobs=await BatchJobs.open(settings, metrics, engine),
        pseudonyms=pseudonyms,
    )
    prediction_log.start()
    state.batcher.start()
    reloader.start()
    # Everything loaded so far (torch, pandas, the models) lives as long as the process: keep
    # it out of the collector's full passes, which otherwise stall requests for tens of ms.
    gc.collect()
    gc.freeze()
    return state


async def close_state(state: ServingState) -> None:
    """Stop in dependency order; every queued prediction-log row is written (or spilled)."""
    await state.reloader.stop()
    await state.jobs.close()
    await state.drain()
    await state.batcher.stop()
    await state.log.close()
    await state.cache.close()
    state.engine.dispose()
    log.info("serving stopped; %d prediction rows written", state.log.written)


_app: FastAPI | None = None


def __getattr__(name: str) -> FastAPI:
    """`serving.main:app` for `uvicorn serving.main:app`, built on first access only."""
    global _app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        _app = create_app()
    return _app
