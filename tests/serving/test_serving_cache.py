"""The in-process LRU, the circuit breaker, and Redis failing fast when it is not there."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from serving.cache import CircuitBreaker, MemoryCache, RedisCache, cache_key
from serving.metrics import ServingMetrics

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_keys_carry_model_name_and_version() -> None:
    assert cache_key("m", "1", b"x") != cache_key("m", "2", b"x") != cache_key("n", "1", b"x")
    assert cache_key("m", "1", b"x").startswith("pred:v1:m:1:")


async def test_memory_cache_is_an_lru_with_ttl() -> None:
    cache = MemoryCache(max_items=2, ttl_s=0.05, metrics=ServingMetrics())
    await cache.set("a", b"1")
    await cache.set("b", b"2")
    assert await cache.get("a") == b"1"  # a is now the most recent
    await cache.set("c", b"3")
    assert await cache.get("b") is None and await cache.get("a") == b"1"
    await asyncio.sleep(0.06)
    assert await cache.get("a") is None


def test_breaker_opens_then_lets_one_probe_through() -> None:
    breaker = CircuitBreaker(failures=2, reset_s=0.05)
    breaker.failure()
    assert breaker.allow() and not breaker.is_open
    breaker.failure()
    assert breaker.is_open and not breaker.allow()
    time.sleep(0.06)
    assert breaker.allow() and not breaker.allow()  # one probe per reset period
    breaker.success()
    assert not breaker.is_open and breaker.allow()


async def test_redis_down_is_a_fast_miss_and_opens_the_breaker() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    metrics = ServingMetrics()
    cache = RedisCache(f"redis://127.0.0.1:{port}/0", 60, 0.05, CircuitBreaker(2, 60), metrics)
    start = time.perf_counter()
    for _ in range(5):
        assert await cache.get("k") is None
        await cache.set("k", b"v")
    assert time.perf_counter() - start < 1.0
    state = await cache.check()
    assert state["ok"] is False and "Connection" in str(state["last_error"])
    text = metrics.render().decode()
    assert 'serving_cache_lookups_total{level="redis",result="error"} 2.0' in text
    assert 'serving_cache_lookups_total{level="redis",result="bypass"} 4.0' in text
    await cache.close()


def test_a_cache_hit_parses_nothing(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The memory level keeps the predictions' JSON and their log rows' fixed parts beside
    the bytes: a hit decodes no JSON (its CPU against the floor's: benchmarks/serving.json)."""
    import json

    from serving_testkit import PREDICT, FakeRegistry, TestClient, make_settings, walk

    import serving.prediction
    from serving.main import create_app

    with TestClient(create_app(make_settings(tmp_path), model_source=FakeRegistry())) as client:
        body = {"agents": [walk(1), walk(2, y=3.0)], "k": 3}
        first = client.post("/v1/predict", json=body, headers=PREDICT)
        assert first.status_code == 200 and first.json()["cached"] is False
        calls = []
        real = json.loads
        monkeypatch.setattr(serving.prediction.json, "loads",
                            lambda *a, **kw: calls.append(1) or real(*a, **kw))
        second = client.post("/v1/predict", json=body, headers=PREDICT)
        parsed_by_the_server = len(calls)
        assert second.status_code == 200 and second.json()["cached"] is True
        assert second.json()["predictions"] == first.json()["predictions"]
        assert parsed_by_the_server == 0


def test_a_cache_hit_logs_its_own_request(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A hit reuses the entry's ready-made row parts (model, positions) but logs its own
    request: its id, the hit, and whether it sent a frame (not part of the cache key)."""
    from serving_testkit import PREDICT, FakeRegistry, TestClient, make_settings, walk
    from sqlalchemy import create_engine, select

    from serving.db import predictions
    from serving.main import create_app

    agents = [walk(1), walk(2, y=3.0)]
    with TestClient(create_app(make_settings(tmp_path), model_source=FakeRegistry())) as client:
        sent = [client.post("/v1/predict", json=body, headers=PREDICT | {"X-Request-Id": rid})
                for body, rid in (({"agents": agents, "frame": 0}, "first"),
                                  ({"agents": agents}, "second"))]
    assert [r.json()["cached"] for r in sent] == [False, True]
    engine = create_engine(f"sqlite:///{tmp_path / 'serving.db'}")
    with engine.connect() as conn:
        rows = [r._asdict() for r in conn.execute(select(predictions).order_by(predictions.c.id))]
    engine.dispose()
    assert [(r["request_id"], r["cache_hit"], r["last_frame"]) for r in rows] == [
        ("first", False, 0), ("first", False, 0), ("second", True, None), ("second", True, None)]
    for miss, hit in zip(rows[:2], rows[2:], strict=True):
        assert hit["agent_key"] == miss["agent_key"] and hit["model_version"] == "1"
        assert hit["observed"] == miss["observed"] and hit["predicted"] == miss["predicted"]
