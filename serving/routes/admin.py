"""Admin endpoints (admin key; every call written to the audit table first)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis
from redis.exceptions import RedisError

from serving.cache import CACHE_KEY_PREFIX, make_cache
from serving.config import check_weights
from serving.db import write_audit
from serving.deps import AdminCaller, StateDep
from serving.errors import RequestError
from serving.inference import canonicalize, check_limits
from serving.prediction import choose_model, routing_key, score_request
from serving.routing import Router
from serving.schemas import PredictRequest, ReloadResponse, WeightsUpdate

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post("/reload", response_model=ReloadResponse)
async def reload_models(state: StateDep, caller: AdminCaller) -> ReloadResponse:
    """Reload every variant now (from the registry, even if no alias moved)."""
    await asyncio.to_thread(write_audit, state.engine, caller.key_hash, "reload", {})
    return ReloadResponse(outcome=await state.reloader.refresh(force=True))


@router.put("/ab-weights", response_model=WeightsUpdate)
async def set_weights(body: WeightsUpdate, state: StateDep, caller: AdminCaller) -> WeightsUpdate:
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
    await asyncio.to_thread(write_audit, state.engine, caller.key_hash, "ab-weights", detail)
    state.router = Router.from_weights(state.settings.ab_salt, state.router.order, body.weights)
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
async def flush_cache(state: StateDep, caller: AdminCaller) -> CacheFlushed | JSONResponse:
    """Drop this replica's in-process cache and every prediction key in the shared Redis.

    Keys carry the model version, so a new model never needs a flush; this is for bad entries
    or Redis memory. Other replicas keep their in-process entries (call each one, or restart).
    """
    await asyncio.to_thread(write_audit, state.engine, caller.key_hash, "cache-flush", {})
    old, state.cache = state.cache, make_cache(state.settings, state.metrics)
    state.spawn(old.close())
    if not state.settings.redis_url:
        return CacheFlushed(memory_cleared=True, redis_keys_deleted=None)
    try:
        deleted = await _delete_keys(state.settings.redis_url, CACHE_KEY_PREFIX + "*")
    except (RedisError, OSError) as err:
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
async def warm_cache(body: CacheWarm, state: StateDep, caller: AdminCaller) -> CacheWarmed:
    """Score requests into the cache as live traffic would be routed, without logging them as
    predictions (they are not traffic): e.g. the busiest scenes after a new champion."""
    detail = {"requests": len(body.requests)}
    await asyncio.to_thread(write_audit, state.engine, caller.key_hash, "cache-warm", detail)
    hits = 0
    for req in body.requests:
        check_limits(req, state.settings)
        _, _, model = choose_model(state, req.variant, routing_key(req, None))
        canon = canonicalize(req, state.settings.cache_decimals, model.spec)  # as predict does
        scored = await score_request(state, model, canon)
        hits += scored.hit
    n = len(body.requests)
    return CacheWarmed(requests=n, already_cached=hits, scored=n - hits)
