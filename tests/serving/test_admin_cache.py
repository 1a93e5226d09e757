"""Admin cache endpoints: flush (in-process level and Redis keys) and warm, both audit-logged."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from serving_testkit import ADMIN, PREDICT, FakeRegistry, TestClient, make_settings, walk
from sqlalchemy import create_engine, select

from serving.db import admin_audit, predictions
from serving.main import create_app

BODY = {"agents": [walk(1), walk(2, y=1.0)], "scene": "hall"}


def table(tmp_path: Path, which: Any) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'serving.db'}")
    with engine.connect() as conn:
        out = [dict(r._mapping) for r in conn.execute(select(which))]
    engine.dispose()
    return out


def cache_header(client: TestClient, body: dict[str, Any] = BODY) -> str:
    response = client.post("/v1/predict", json=body, headers=PREDICT)
    assert response.status_code == 200, response.text
    return response.headers["X-Cache"]


def eventually_hit(client: TestClient, body: dict[str, Any] = BODY) -> bool:
    """Cache writes run after the response; give them a moment."""
    for _ in range(50):
        if cache_header(client, body) == "hit":
            return True
        time.sleep(0.02)
    return False


def test_flush_clears_the_in_process_cache_with_an_audit_row(
    client: TestClient, tmp_path: Path
) -> None:
    assert cache_header(client) == "miss"
    assert eventually_hit(client)
    response = client.post("/v1/admin/cache/flush", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json() == {"memory_cleared": True, "redis_keys_deleted": None}
    assert cache_header(client) == "miss"
    assert [a["action"] for a in table(tmp_path, admin_audit)] == ["cache-flush"]


def test_cache_endpoints_need_an_admin_key(client: TestClient, tmp_path: Path) -> None:
    for path, body in (("/v1/admin/cache/flush", None), ("/v1/admin/cache/warm",
                                                          {"requests": [BODY]})):
        assert client.post(path, json=body).status_code == 401
        assert client.post(path, json=body, headers=PREDICT).status_code == 403
    audit = table(tmp_path, admin_audit)  # refused attempts are audited, as denied
    assert [(a["action"], a["outcome"], a["status_code"]) for a in audit] == [
        ("cache-flush", "denied", 401), ("cache-flush", "denied", 403),
        ("cache-warm", "denied", 401), ("cache-warm", "denied", 403)]


def test_warm_fills_the_cache_without_logging_predictions(
    client: TestClient, tmp_path: Path
) -> None:
    other = {"agents": [walk(7, vx=0.3)]}
    response = client.post("/v1/admin/cache/warm", json={"requests": [BODY, other]},
                           headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json() == {"requests": 2, "already_cached": 0, "scored": 2}
    assert eventually_hit(client) and eventually_hit(client, other)
    again = client.post("/v1/admin/cache/warm", json={"requests": [BODY]}, headers=ADMIN)
    assert again.json() == {"requests": 1, "already_cached": 1, "scored": 0}

    time.sleep(0.3)  # the log writer flushes every 0.05 s
    logged = table(tmp_path, predictions)
    assert logged and all(r["cache_hit"] for r in logged)  # only the two predict calls above
    audit = table(tmp_path, admin_audit)
    assert [a["action"] for a in audit] == ["cache-warm", "cache-warm"]
    assert audit[0]["detail"] == {"requests": 2}


def test_warm_takes_dt_and_timestamps_as_predict_does(client: TestClient) -> None:
    at_half = {"agents": [walk(1, n=10), walk(2, n=10, y=1.0)], "dt": 0.5}  # 4.5 s of points
    t = [0.0, 0.3, 0.9, 1.2, 1.7, 2.0, 2.6, 3.1]
    timed = {"agents": [{"agent_id": 3, "points": [[0.5 * s, 0.0] for s in t], "timestamps": t}]}
    response = client.post("/v1/admin/cache/warm", json={"requests": [at_half, timed]},
                           headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json() == {"requests": 2, "already_cached": 0, "scored": 2}
    assert eventually_hit(client, at_half) and eventually_hit(client, timed)  # same cache keys
    too_sparse = {"agents": [walk(1)], "dt": 1.5}  # 1.5 s steps: more than the model's max_gap
    response = client.post("/v1/admin/cache/warm", json={"requests": [too_sparse]}, headers=ADMIN)
    assert response.status_code == 422 and '"dt"' in response.text


def test_warm_checks_limits_and_variants(client: TestClient) -> None:
    too_many = {"requests": [{"agents": [walk(i) for i in range(100)]}]}
    response = client.post("/v1/admin/cache/warm", json=too_many, headers=ADMIN)
    assert response.status_code == 422 and "agents" in response.text
    assert client.post("/v1/admin/cache/warm", json={"requests": []},
                       headers=ADMIN).status_code == 422


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A throwaway redis-server (no persistence) on a free port."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed (bash scripts/install_services.sh)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.integration
def test_flush_deletes_only_prediction_keys_in_redis(
    tmp_path: Path, registry: FakeRegistry, redis_url: str
) -> None:
    settings = make_settings(tmp_path, redis_url=redis_url, redis_timeout_s=1.0)
    other = redis.Redis.from_url(redis_url)
    other.set("not-a-prediction", b"keep")
    with TestClient(create_app(settings, model_source=registry)) as client:
        assert cache_header(client) == "miss"
        assert eventually_hit(client)
        assert len(other.keys("pred:v1:*")) == 1
        response = client.post("/v1/admin/cache/flush", headers=ADMIN)
        assert response.json() == {"memory_cleared": True, "redis_keys_deleted": 1}
        assert other.keys("pred:v1:*") == [] and other.get("not-a-prediction") == b"keep"
        assert cache_header(client) == "miss"  # neither level has it now
        assert client.get("/ready").json()["cache"]["ok"] is True
    other.close()
