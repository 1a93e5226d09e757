"""The admin audit trail: after validation, with outcome, request id and source; denials too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from serving_testkit import (
    ADMIN,
    ADMIN_KEY,
    PREDICT,
    PREDICT_KEY,
    FakeRegistry,
    TestClient,
    make_settings,
    walk,
)
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import DatabaseError

from serving.config import hash_api_key
from serving.db import admin_audit
from serving.main import create_app

BODY = {"agents": [walk(1), walk(2, y=1.0)]}


def audit(tmp_path: Path) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'serving.db'}")
    with engine.connect() as conn:
        out = [dict(r._mapping) for r in conn.execute(select(admin_audit).order_by(admin_audit.c.id))]
    engine.dispose()
    return out


def test_invalid_warm_bodies_are_refused_without_an_audit_row(
    client: TestClient, tmp_path: Path
) -> None:
    too_many = {"requests": [{"agents": [walk(i) for i in range(100)]}]}  # over the agent limit
    too_sparse = {"requests": [BODY, {"agents": [walk(1)], "dt": 1.5}]}  # gaps over max_gap
    for body in (too_many, too_sparse, {"requests": []}):
        assert client.post("/v1/admin/cache/warm", json=body, headers=ADMIN).status_code == 422
    assert audit(tmp_path) == []


def test_an_action_is_audited_with_outcome_request_id_and_source(
    client: TestClient, tmp_path: Path
) -> None:
    response = client.post("/v1/admin/cache/warm", json={"requests": [BODY]},
                           headers=ADMIN | {"X-Request-Id": "warm-1"})
    assert response.status_code == 200, response.text
    (row,) = audit(tmp_path)
    assert row["action"] == "cache-warm" and row["detail"] == {"requests": 1}
    assert (row["outcome"], row["status_code"], row["request_id"]) == ("ok", 200, "warm-1")
    assert row["source"] == "testclient"  # the client address starlette saw
    assert row["key_fingerprint"] == hash_api_key(ADMIN_KEY)[:16]


def test_denied_admin_attempts_are_audited(client: TestClient, tmp_path: Path) -> None:
    assert client.post("/v1/admin/reload").status_code == 401
    assert client.post("/v1/admin/cache/flush", headers={"X-API-Key": "guess"}).status_code == 401
    assert client.put("/v1/admin/ab-weights", json={"weights": {"champion": 1.0}},
                      headers=PREDICT | {"X-Request-Id": "r-403"}).status_code == 403
    assert client.post("/v1/predict", json=BODY, headers={"X-API-Key": "guess"}).status_code == 401
    rows = audit(tmp_path)  # the predict 401 is not an admin attempt: not in the admin audit
    assert [(r["action"], r["outcome"], r["status_code"]) for r in rows] == [
        ("reload", "denied", 401), ("cache-flush", "denied", 401), ("ab-weights", "denied", 403)]
    assert [r["key_fingerprint"] for r in rows] == [
        "-", hash_api_key("guess")[:16], hash_api_key(PREDICT_KEY)[:16]]
    assert rows[2]["request_id"] == "r-403" and rows[2]["source"] == "testclient"
    assert all(r["detail"] == {} for r in rows)  # nothing of the refused body is kept


def test_a_failed_action_is_audited_as_failed(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, redis_url="redis://127.0.0.1:9/0", redis_timeout_s=0.2)
    with TestClient(create_app(settings, model_source=FakeRegistry())) as client:
        assert client.post("/v1/admin/cache/flush", headers=ADMIN).status_code == 503
    (row,) = audit(tmp_path)
    assert (row["action"], row["outcome"], row["status_code"]) == ("cache-flush", "failed", 503)


def test_the_audit_table_refuses_update_and_delete(client: TestClient, tmp_path: Path) -> None:
    assert client.post("/v1/admin/reload", headers=ADMIN).status_code == 200
    engine = create_engine(f"sqlite:///{tmp_path / 'serving.db'}")
    for sql in ("UPDATE admin_audit SET outcome = 'ok'", "DELETE FROM admin_audit"):
        with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(text(sql))
    engine.dispose()
    assert len(audit(tmp_path)) == 1
