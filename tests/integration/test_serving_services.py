"""The serving app against a real Redis and a real PostgreSQL: cache faults, the SQL log (bad
rows quarantined, outages survived) and the append-only admin audit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from services import (
    API_KEY,
    HEADERS,
    PostgresCluster,
    RedisServer,
    TestClient,
    free_port,
    running_postgres,
    running_redis,
    serving_settings,
    walk,
)
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import DBAPIError

from serving.config import hash_api_key
from serving.db import SCHEMA_VERSION, open_database, predictions, quarantine, write_audit
from serving.main import create_app
from serving.metrics import ServingMetrics
from serving.predictions_log import PredictionLog
from trajectory.privacy.pseudonym import load_pseudonymiser

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    with running_postgres() as cluster:
        yield cluster


def test_redis_is_shared_by_replicas_and_its_outage_is_survived(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    def replica(name: str) -> TestClient:
        return TestClient(create_app(serving_settings(tmp_path / name, redis_url=redis_server.url)))

    def cached(client: TestClient, body: dict[str, object]) -> bool:
        r = client.post("/v1/predict", json=body, headers=HEADERS)
        assert r.status_code == 200, r.text  # never a 5xx, whatever Redis does
        client.portal.call(client.app.state.serving.drain)  # type: ignore[attr-defined]
        return bool(r.json()["cached"])  # ^ the cache write runs after the response

    with replica("a") as a, replica("b") as b:
        body = {"agents": [walk(1)]}
        assert not cached(a, body) and cached(b, body)  # b hits what a computed: via Redis
        assert a.get("/ready").json()["cache"] == {
            "backend": "memory+redis", "ok": True, "last_error": None}

        redis_server.stop()
        assert not any(cached(a, {"agents": [walk(i)]}) for i in range(2, 30))
        assert cached(a, body)  # a's own in-process level still answers
        ready = a.get("/ready").json()
        assert ready["status"] == "degraded" and ready["degraded"] == ["cache"]

        redis_server.start()  # same port: the client reconnects by itself
        time.sleep(0.3)  # past the breaker's open period
        assert a.get("/ready").json()["status"] == "ready"
        fresh = {"agents": [walk(99)]}
        assert not cached(a, fresh) and cached(b, fresh)  # b's stale connection: one retry


def test_prediction_log_in_postgres_survives_a_database_outage(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    settings = serving_settings(tmp_path, database_url=postgres.url)
    with TestClient(create_app(settings)) as client:
        for i in range(3):
            body = {"scene": "hotel", "frame": 10 * i, "agents": [walk(1), walk(2, y=1.0)]}
            assert client.post("/v1/predict", json=body, headers=HEADERS).status_code == 200
        postgres.stop()
        for i in range(3, 6):  # the database is down: requests still succeed
            body = {"scene": "hotel", "frame": 10 * i, "agents": [walk(1), walk(2, y=1.0)]}
            assert client.post("/v1/predict", json=body, headers=HEADERS).status_code == 200
        deadline = time.monotonic() + 10
        while client.get("/ready").json()["database"]["ok"] and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = client.get("/ready")
        assert "database" in ready.json()["degraded"]
        assert ready.json()["database"]["status"] == "unavailable"
        assert "INSERT" not in ready.text and "5432" not in ready.text  # no error text at all
        assert "last_error" not in ready.json()["database"]
        postgres.start()
    pseudonyms = load_pseudonymiser(None, tmp_path)
    engine = create_engine(postgres.url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(predictions.c.last_frame).where(
                predictions.c.scene_key == pseudonyms.scene("hotel"),
                predictions.c.agent_key == pseudonyms.agent("hotel", 2),
            ).order_by(predictions.c.last_frame)
        ).scalars().all()
        version = conn.execute(text("select max(version) from serving_schema_version")).scalar()
    engine.dispose()
    assert rows == [0, 10, 20, 30, 40, 50] and version == SCHEMA_VERSION


def test_sigterm_under_load_flushes_every_logged_prediction(
    tmp_path: Path, postgres: PostgresCluster, redis_server: RedisServer
) -> None:
    port = free_port()
    env = os.environ | {
        "SERVING_VARIANTS": '{"champion": "builtin:cv"}',
        "SERVING_API_KEYS": json.dumps({hash_api_key(API_KEY): "predict"}),
        "SERVING_DATABASE_URL": postgres.url,
        "SERVING_REDIS_URL": redis_server.url,
        "SERVING_WORK_DIR": str(tmp_path),
        "SERVING_LOG_FLUSH_S": "30",  # rows wait in memory: only the shutdown flush writes them
        "SERVING_LOG_BATCH_SIZE": "100000",
    }
    log = (tmp_path / "uvicorn.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "serving.main:app", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        ok, statuses = asyncio.run(_load_then_sigterm(url, proc))
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert len(ok) > 20 and not [s for s in statuses if s >= 500]
    engine = create_engine(postgres.url)
    with engine.connect() as conn:
        logged = set(conn.execute(
            select(predictions.c.request_id).where(predictions.c.request_id.like("sigterm-%"))
        ).scalars())
    engine.dispose()
    assert logged == ok  # every answered prediction is in the log, nothing else


async def _load_then_sigterm(url: str, proc: subprocess.Popen[bytes]) -> tuple[set[str], list[int]]:
    ok: set[str] = set()
    statuses: list[int] = []
    stop_at = time.monotonic() + 3.0

    async def worker(w: int, client: httpx.AsyncClient) -> None:
        i = 0
        while time.monotonic() < stop_at:
            i += 1
            body = {"scene": f"sigterm-{w}-{i}", "agents": [walk(1), walk(2, y=1.0)]}
            rid = {"X-Request-Id": f"sigterm-{w}-{i}"}
            try:
                r = await client.post(f"{url}/v1/predict", json=body, headers=HEADERS | rid)
            except httpx.HTTPError:
                await asyncio.sleep(0.01)  # refused once the server stops listening
                continue
            statuses.append(r.status_code)
            if r.status_code == 200:
                ok.add(r.json()["request_id"])

    async def terminate() -> None:
        await asyncio.sleep(1.0)
        proc.send_signal(signal.SIGTERM)

    async with httpx.AsyncClient(timeout=10) as client:
        await asyncio.gather(terminate(), *(worker(w, client) for w in range(8)))
    return ok, statuses


def test_replicas_starting_together_migrate_an_empty_database_once(
    postgres: PostgresCluster,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    admin = create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS race"))
        conn.execute(text("CREATE DATABASE race"))
    url = postgres.url.rsplit("/", 1)[0] + "/race"
    with ThreadPoolExecutor(4) as pool:  # four replicas, one empty database
        engines = list(pool.map(lambda _: open_database(url), range(4)))
    with engines[0].connect() as conn:
        versions = conn.execute(text("SELECT version FROM serving_schema_version")).scalars().all()
    assert versions == [SCHEMA_VERSION]  # created once, at the current version
    for engine in engines + [admin]:
        engine.dispose()


def _log_rows(n: int, prefix: str) -> list[dict[str, object]]:
    now = datetime.now(UTC)
    return [{
        "request_id": f"{prefix}-{i}", "created_at": now, "routing_key_hash": "k" * 32,
        "client_key": None, "variant": "champion", "assignment": "hash", "shadow": False,
        "model_name": "cv", "model_version": "1", "scene_key": "s" * 32, "agent_key": f"a{i}",
        "pseudonym_key_id": "p" * 16, "last_frame": i, "frame_step": 1, "k": 1,
        "observed": [[0.0, 0.0], [0.5, 0.0]], "predicted": [[[1.0, 0.0]]], "weights": [1.0],
        "latency_ms": 1.0, "cache_hit": False,
    } for i in range(n)]


def test_rows_postgres_refuses_are_quarantined_and_never_block_the_log(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    rows = _log_rows(20, "poison")
    rows[2]["observed"] = [[float("nan"), 0.0]]  # JSONB has no NaN: DataError
    rows[5]["predicted"] = [[[float("inf"), 0.0]]]  # nor Infinity
    rows[11]["model_version"] = "x\u0000y"  # psycopg2: "cannot contain NUL" (a ValueError)
    rows[17]["variant"] = "v" * 65  # VARCHAR(64): DataError
    engine = open_database(postgres.url)

    async def run() -> PredictionLog:
        log = PredictionLog(engine, ServingMetrics(), batch_size=20, flush_s=0.01,
                            max_queue=1000, spill_dir=tmp_path)
        log.start()
        log.record(rows)
        deadline = time.monotonic() + 20
        while log.state()["queued"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await log.close()
        return log

    log = asyncio.run(run())
    with engine.connect() as conn:
        written = set(conn.execute(select(predictions.c.request_id).where(
            predictions.c.request_id.like("poison-%"))).scalars())
        held = conn.execute(select(quarantine).where(
            quarantine.c.request_id.like("poison-%")).order_by(quarantine.c.id)).mappings().all()
    engine.dispose()
    bad = {"poison-2", "poison-5", "poison-11", "poison-17"}
    assert written == {r["request_id"] for r in rows} - bad
    assert {h["request_id"] for h in held} == bad
    assert all(h["row"].isascii() and json.loads(h["row"]) for h in held)
    assert log.state()["quarantined"] == 4 and not list(tmp_path.glob("predictions-spill-*"))


def test_admin_audit_is_append_only_in_postgres(postgres: PostgresCluster) -> None:
    admin = create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS audit"))
        conn.execute(text("CREATE DATABASE audit"))
    admin.dispose()
    engine = open_database(postgres.url.rsplit("/", 1)[0] + "/audit")
    write_audit(engine, "ab" * 32, "reload", {}, outcome="ok", status_code=200)
    for sql in ("UPDATE admin_audit SET outcome = 'denied'", "DELETE FROM admin_audit",
                "TRUNCATE admin_audit"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(sql))
    write_audit(engine, "-", "reload", {}, outcome="denied", status_code=401)  # inserts still go
    with engine.connect() as conn:
        outcomes = conn.execute(text("SELECT outcome FROM admin_audit ORDER BY id")).scalars().all()
    engine.dispose()
    assert outcomes == ["ok", "denied"]
