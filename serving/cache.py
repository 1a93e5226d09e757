"""Prediction cache: an in-process LRU, in front of Redis when Redis is configured.

Keys hold the model name and version, so a new model version never sees an old version's
entries, and an entry never changes once written: the in-process level needs no invalidation
and is safe in front of the shared Redis level, which it spares a round trip on hot keys. A Redis error or timeout never fails a request: the request is served uncached, a
circuit breaker stops calling Redis for a while after repeated errors, then lets one probe
through; redis-py reconnects on the next call that goes through.

A hit should cost little more than the constant-answer floor, so the in-process level keeps
each value as a `CacheEntry` whose `parsed` slot holds what the caller made of the bytes
(`serving.prediction`: the predictions' JSON and their log rows' fixed parts): later hits on
the same entry parse and round nothing. Entries never change, so the slot never goes stale.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol, cast

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from serving.config import ServingSettings
from serving.metrics import ServingMetrics

log = logging.getLogger(__name__)


CACHE_KEY_PREFIX = "pred:v1:"  # every prediction key starts with it (admin flush deletes them)


def cache_key(model_name: str, model_version: str, canonical: bytes) -> str:
    """Namespace by model name and version; the canonical request (agent ids, frames, points)
    is SHA-256 hashed, so no identifier of the request is readable in a key (the scene and the
    client are not part of it at all). Values hold the response's predictions, agent ids as
    sent: they live `SERVING_CACHE_TTL_S` (docs/privacy.md)."""
    return f"{CACHE_KEY_PREFIX}{model_name}:{model_version}:{hashlib.sha256(canonical).hexdigest()}"


@dataclass
class CacheEntry:
    """A cached value and, once a reader made it, its parsed form (kept in memory only)."""

    value: bytes
    parsed: Any = None


class PredictionCache(Protocol):
    backend: str

    async def get(self, key: str) -> bytes | None: ...
    async def get_entry(self, key: str) -> CacheEntry | None: ...
    async def set(self, key: str, value: bytes, parsed: Any = None) -> None: ...
    async def check(self) -> dict[str, object]: ...
    async def close(self) -> None: ...


class MemoryCache:
    """LRU with a TTL, for one process (no Redis configured)."""

    backend = "memory"

    def __init__(self, max_items: int, ttl_s: float, metrics: ServingMetrics) -> None:
        self._items: OrderedDict[str, tuple[float, CacheEntry]] = OrderedDict()
        self._max, self._ttl, self._metrics = max_items, ttl_s, metrics

    async def get(self, key: str) -> bytes | None:
        entry = await self.get_entry(key)
        return None if entry is None else entry.value

    async def get_entry(self, key: str) -> CacheEntry | None:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            self._items.pop(key, None)
            self._metrics.cache.labels("memory", "miss").inc()
            return None
        self._items.move_to_end(key)
        self._metrics.cache.labels("memory", "hit").inc()
        return item[1]

    async def set(self, key: str, value: bytes, parsed: Any = None) -> None:
        self._items[key] = (time.monotonic() + self._ttl, CacheEntry(value, parsed))
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    async def check(self) -> dict[str, object]:
        return {"backend": self.backend, "ok": True, "items": len(self._items)}

    async def close(self) -> None:
        self._items.clear()


class CircuitBreaker:
    """Closed -> open after `failures` consecutive errors -> half-open probe after `reset_s`."""

    def __init__(self, failures: int, reset_s: float) -> None:
        self._limit, self._reset_s = failures, reset_s
        self._count, self._opened_at = 0, 0.0

    @property
    def is_open(self) -> bool:
        return self._count >= self._limit

    def allow(self) -> bool:
        """True when a call may go through (closed, or open long enough for one probe)."""
        if not self.is_open:
            return True
        if time.monotonic() - self._opened_at >= self._reset_s:
            self._opened_at = time.monotonic()  # one probe per reset period
            return True
        return False

    def success(self) -> None:
        self._count = 0

    def failure(self) -> None:
        self._count += 1
        if self._count == self._limit:
            self._opened_at = time.monotonic()


class RedisCache:
    """Redis with short socket timeouts, at most one retry and a circuit breaker."""

    backend = "redis"

    def __init__(
        self,
        url: str,
        ttl_s: int,
        timeout_s: float,
        breaker: CircuitBreaker,
        metrics: ServingMetrics,
    ) -> None:
        self._redis = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            # one immediate retry on a broken connection (a pooled one after a Redis restart);
            # none on a timeout, which would only double the wait
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            max_connections=64,
        )
        self._ttl, self._breaker, self._metrics = ttl_s, breaker, metrics
        self._last_error: str | None = None

    async def get(self, key: str) -> bytes | None:
        if not self._breaker.allow():
            self._metrics.cache.labels("redis", "bypass").inc()
            return None
        try:
            # bytes: the client is made without decode_responses
            value = cast("bytes | None", await self._redis.get(key))
        except (RedisError, OSError) as err:
            self._fail(err)
            return None
        self._ok()
        self._metrics.cache.labels("redis", "hit" if value is not None else "miss").inc()
        return value

    async def get_entry(self, key: str) -> CacheEntry | None:
        value = await self.get(key)
        return None if value is None else CacheEntry(value)

    async def set(self, key: str, value: bytes, parsed: Any = None) -> None:
        if not self._breaker.allow():
            return
        try:
            await self._redis.set(key, value, ex=self._ttl)
        except (RedisError, OSError) as err:
            self._fail(err)
            return
        self._ok()

    def _ok(self) -> None:
        if self._breaker.is_open:
            log.info("redis is back; cache enabled again")
        self._breaker.success()
        self._last_error = None
        self._metrics.breaker_open.set(0)

    def _fail(self, err: Exception) -> None:
        self._metrics.cache.labels("redis", "error").inc()
        was_open = self._breaker.is_open
        self._breaker.failure()
        self._last_error = f"{type(err).__name__}: {err}"
        if self._breaker.is_open and not was_open:
            log.warning("redis failing (%s); serving uncached", self._last_error)
        self._metrics.breaker_open.set(1 if self._breaker.is_open else 0)

    async def check(self) -> dict[str, object]:
        """Readiness: a PING when the breaker lets a call through, so recovery shows idle."""
        if self._breaker.allow():
            try:
                await self._redis.ping()
            except (RedisError, OSError) as err:
                self._fail(err)
            else:
                self._ok()
        return {
            "backend": self.backend,
            "ok": not self._breaker.is_open,
            "last_error": self._last_error,
        }

    async def close(self) -> None:
        await self._redis.aclose()


class TieredCache:
    """The in-process LRU first, then Redis; a Redis hit is kept in the LRU too."""

    backend = "memory+redis"

    def __init__(self, memory: MemoryCache, redis: RedisCache) -> None:
        self._memory, self._redis = memory, redis

    async def get(self, key: str) -> bytes | None:
        entry = await self.get_entry(key)
        return None if entry is None else entry.value

    async def get_entry(self, key: str) -> CacheEntry | None:
        entry = await self._memory.get_entry(key)
        if entry is None:
            value = await self._redis.get(key)
            if value is not None:
                await self._memory.set(key, value)
                entry = await self._memory.get_entry(key)
        return entry

    async def set(self, key: str, value: bytes, parsed: Any = None) -> None:
        await self._memory.set(key, value, parsed)
        await self._redis.set(key, value)

    async def check(self) -> dict[str, object]:
        return await self._redis.check() | {"backend": self.backend}

    async def close(self) -> None:
        await self._memory.close()
        await self._redis.close()


def make_cache(settings: ServingSettings, metrics: ServingMetrics) -> PredictionCache:
    """The cache the settings ask for: memory only without a Redis URL, else memory over Redis."""
    memory = MemoryCache(settings.cache_memory_items, settings.cache_ttl_s, metrics)
    if not settings.redis_url:
        log.warning("SERVING_REDIS_URL is not set: using an in-process cache only (not shared)")
        return memory
    breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_reset_s)
    redis = RedisCache(
        settings.redis_url, settings.cache_ttl_s, settings.redis_timeout_s, breaker, metrics
    )
    return TieredCache(memory, redis)
