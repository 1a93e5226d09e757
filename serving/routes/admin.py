"""Admin endpoints (admin key). Each action is validated, then run and written to the audit
table (`serving.audit`) before its response; refused attempts are audited by `deps`."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis
from redis.exceptions import RedisError

from serving.audit import Audited
from serving.cache import CACHE_KEY_PREFIX, make_cache
from serving.config import check_weights
from serving.db import record_experiment
from serving.deps import AdminCaller, StateDep
from serving.errors import RequestError
from serving.inference import CanonicalRequest, canonicalize, check_limits
from serving.prediction import check_coordinates, choose_model, routing_key, score_request
from serving.registry import ServedModel
from serving.routing import Router
from serving.schemas import PredictRequest, ReloadResponse, WeightsUpdate

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post("/reload", response_model=ReloadResponse)
async def reload_models(state: StateDep, caller: AdminCaller, request: Request) -> ReloadResponse:
    """Reload every variant now (from the registry, even if no alias moved)."""
    async with Audited(state, request, caller.key_hash):
        outcome = await state.reloader.refresh(force=True)
    return ReloadResponse(outcome=outcome)


@router.put("/ab-weights", response_model=WeightsUpdate)
async def set_weights(
    body: WeightsUpdate, state: StateDep, caller: AdminCaller, request: Request
) -> WeightsUpdate:
    """Change this replica's A/B shares; keys move only between ranges that change owner.

    Replicas do not share this change: set SERVING_AB_WEIGHTS for a fleet-wide change.
    """
    unknown = sorted(set(body.weights) - set(state.variants.uris))
    if unknown:
        raise RequestError("weights", f"unknown variant(s) {unknown}")
    try:
        check_weights(body.weights)
    except ValueError as err:
        raise RequestError("weights", str(err)) from None
    detail = {"before": state.router.weights(), "after": body.weights}
    async with Audited(state, request, caller.key_hash, detail):
        state.router = Router.from_weights(state.settings.ab_salt, state.router.order,
                                           body.weights)
        # a new experiment: the evaluation's A/B test restarts with the weights on record
        await asyncio.to_thread(record_experiment, state.engine, state.router.weights())
    return WeightsUpdate(weights=state.router.weights())


MAX_WARM_REQUESTS = 1000


class CacheFlushed(BaseModel):
    memory_cleared: bool
    redis_keys_deleted: int | None = Field(description="None when no Redis is configured")


class CacheWarm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: list[PredictRequest] = Field(min_length=1, max_length=MAX_WARM_REQUESTS)


class CacheWarmed(BaseModel):
    requests: int
    already_cached: int
    scored: int


@router.post("/cache/flush", response_model=CacheFlushed, responses={503: {}})
async def flush_cache(
    state: StateDep, caller: AdminCaller, request: Request
) -> CacheFlushed | JSONResponse:
    """Drop this replica's in-process cache and every prediction key in the shared Redis.

    Keys carry the model version, so a new model never needs a flush; this is for bad entries
    or Redis memory. Other replicas keep their in-process entries (call each one, or restart).
    """
    async with Audited(state, request, caller.key_hash) as audit:
        old, state.cache = state.cache, make_cache(state.settings, state.metrics)
        state.spawn(old.close())
        if not state.settings.redis_url:
            return CacheFlushed(memory_cleared=True, redis_keys_deleted=None)
        try:
            deleted = await _delete_keys(state.settings.redis_url, CACHE_KEY_PREFIX + "*")
        except (RedisError, OSError) as err:
            audit.fail(503)
            detail = f"in-process cache cleared, Redis not flushed: {type(err).__name__}: {err}"
            return JSONResponse({"error": "cache", "detail": detail}, status_code=503)
        return CacheFlushed(memory_cleared=True, redis_keys_deleted=deleted)


async def _delete_keys(url: str, pattern: str) -> int:
    """SCAN + UNLINK in batches (never KEYS, which blocks Redis); -> keys deleted."""
    client = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    deleted, batch = 0, []
    try:
        async for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await client.unlink(*batch)
                batch = []
        if batch:
            deleted += await client.unlink(*batch)
    finally:
        await client.aclose()
    return int(deleted)


@router.post("/cache/warm", response_model=CacheWarmed)
async def warm_cache(
    body: CacheWarm, state: StateDep, caller: AdminCaller, request: Request
) -> CacheWarmed:
    """Score requests into the cache as live traffic would be routed, without logging them as
    predictions (they are not traffic): e.g. the busiest scenes after a new champion.

    Every request is checked first: one invalid request refuses the call (422), nothing scored.
    """
    n, hits = len(body.requests), 0
    async with Audited(state, request, caller.key_hash, {"requests": n}):
        work: list[tuple[ServedModel, CanonicalRequest]] = []
        for req in body.requests:
            check_limits(req, state.settings)
            check_coordinates(req, state.settings.max_abs_coordinate)
            _, _, model = choose_model(state, req.variant, routing_key(req, None))
            work.append((model, canonicalize(req, state.settings.cache_decimals, model.spec)))
        for model, canon in work:  # as predict does: at the model's dt
            hits += (await score_request(state, model, canon)).hit
    return CacheWarmed(requests=n, already_cached=hits, scored=n - hits)
