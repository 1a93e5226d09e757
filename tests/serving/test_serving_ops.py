"""Readiness, metrics, model listing, hot reload, admin actions, the prediction log, shadows."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from serving_testkit import (
    ADMIN,
    PREDICT,
    PSEUDONYMS,
    FakeRegistry,
    TestClient,
    make_settings,
    walk,
)
from sqlalchemy import Table, create_engine, select

from serving.db import SCHEMA_VERSION, admin_audit, predictions, schema_version
from serving.main import create_app


def rows(tmp_path: Path, table: Table = predictions) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'serving.db'}")
    with engine.connect() as conn:
        out = [dict(r._mapping) for r in conn.execute(select(table))]
    engine.dispose()
    return out


def test_health_ready_metrics_and_models(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert ready.json()["cache"]["backend"] == "memory"
    client.post("/v1/predict", json={"agents": [walk(1)]}, headers=PREDICT)
    text = client.get("/metrics").text
    assert 'serving_request_latency_seconds_count{route="/v1/predict",variant="champion"} 1.0' in text
    assert 'serving_model_info{name="fake",variant="champion",version="1"} 1.0' in text
    assert 'serving_requests_total{method="POST",route="/v1/predict",status="200"} 1.0' in text
    models = client.get("/v1/models", headers=PREDICT).json()
    assert [v["variant"] for v in models["variants"]] == ["champion", "challenger"]
    assert models["variants"][1]["model"]["version"] == "2" and models["variants"][1]["weight"] == 0


def test_alias_move_is_picked_up_and_swapped_whole(
    client: TestClient, registry: FakeRegistry
) -> None:
    body = {"agents": [walk(1)]}
    assert client.post("/v1/predict", json=body, headers=PREDICT).json()["model"]["version"] == "1"
    registry.versions["champion"] = "5"
    state = client.app.state.serving  # type: ignore[attr-defined]
    assert client.portal.call(state.reloader.refresh)["champion"] == "loaded 5"  # the poller's step
    out = client.post("/v1/predict", json=body, headers=PREDICT).json()
    assert out["model"]["version"] == "5" and out["cached"] is False  # no old-version cache hit
    assert out["predictions"][0]["points"][0][0] == 4.0 + 5  # version 5 shifts by 5 m
    assert registry.loads[-1] == "models:/fake/5"  # pinned: the alias cannot move mid-load


def test_registry_down_keeps_serving_and_says_so(
    client: TestClient, registry: FakeRegistry
) -> None:
    registry.down = True
    state = client.app.state.serving  # type: ignore[attr-defined]
    client.portal.call(state.reloader.refresh)
    ready = client.get("/ready").json()
    assert ready["status"] == "degraded" and "registry" in ready["degraded"]
    assert "unreachable" in ready["registry"]["last_error"]
    assert client.post("/v1/predict", json={"agents": [walk(1)]}, headers=PREDICT).status_code == 200
    registry.down = False
    client.portal.call(state.reloader.refresh)
    assert client.get("/ready").json()["status"] == "ready"


def test_no_model_at_start_is_not_ready(tmp_path: Path) -> None:
    registry = FakeRegistry()
    registry.down = True
    with TestClient(create_app(make_settings(tmp_path), model_source=registry)) as client:
        assert client.get("/ready").status_code == 503
        r = client.post("/v1/predict", json={"agents": [walk(1)]}, headers=PREDICT)
        assert r.status_code == 503 and "no model" in r.json()["detail"]


def test_every_prediction_is_logged_and_flushed_on_shutdown(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, log_flush_s=60, log_batch_size=10_000)  # flush at exit
    with TestClient(create_app(settings, model_source=FakeRegistry())) as client:
        for i in range(5):
            body = {"scene": "zara", "frame": 100 + i, "agents": [walk(1), walk(2, y=1.0)]}
            client.post("/v1/predict", json=body, headers=PREDICT | {"X-Client-Id": "alice"})
        assert rows(tmp_path) == []  # nothing written yet: batched off the request path
    logged = rows(tmp_path)
    assert len(logged) == 10
    row = logged[0]
    assert row["scene_key"] == PSEUDONYMS.scene("zara") != "zara"
    assert row["agent_key"] == PSEUDONYMS.agent("zara", 1) and row["last_frame"] == 100
    assert row["client_key"] == PSEUDONYMS.client("alice")
    assert row["variant"] == "champion" and row["model_version"] == "1" and not row["shadow"]
    assert row["routing_key_hash"] == PSEUDONYMS.routing("client:alice")
    assert len(row["observed"]) == 8 and len(row["predicted"][0]) == 12 and row["weights"] == [1.0]
    assert rows(tmp_path, schema_version)[0]["version"] == SCHEMA_VERSION


def test_shadow_variant_is_scored_and_logged_never_returned(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, shadow_variants=["challenger"])
    with TestClient(create_app(settings, model_source=FakeRegistry())) as client:
        out = client.post("/v1/predict", json={"agents": [walk(1)]}, headers=PREDICT).json()
        assert out["variant"] == "champion" and out["model"]["version"] == "1"
    logged = {r["variant"]: r for r in rows(tmp_path)}
    assert logged["challenger"]["shadow"] and logged["challenger"]["assignment"] == "shadow"
    assert logged["challenger"]["request_id"] == logged["champion"]["request_id"]


def test_admin_changes_weights_with_an_audit_row(client: TestClient, tmp_path: Path) -> None:
    bad = client.put("/v1/admin/ab-weights", json={"weights": {"champion": 0.5}}, headers=ADMIN)
    assert bad.status_code == 422 and "sum to 1" in bad.json()["detail"][0]["reason"]
    unknown = client.put("/v1/admin/ab-weights", json={"weights": {"x": 1.0}}, headers=ADMIN)
    assert unknown.status_code == 422 and "unknown" in unknown.json()["detail"][0]["reason"]
    r = client.put("/v1/admin/ab-weights", json={"weights": {"champion": 0.0, "challenger": 1.0}},
                   headers=ADMIN)
    assert r.status_code == 200, r.text
    out = client.post("/v1/predict", json={"agents": [walk(1)]}, headers=PREDICT).json()
    assert out["variant"] == "challenger"
    assert client.post("/v1/admin/reload", headers=ADMIN).json()["outcome"]["champion"] == "loaded 1"
    time.sleep(0.01)
    audit = rows(tmp_path, admin_audit)
    assert [a["action"] for a in audit] == ["ab-weights", "reload"]
    assert audit[0]["detail"]["after"] == {"champion": 0.0, "challenger": 1.0}
    assert len(audit[0]["key_fingerprint"]) == 16


def test_nothing_is_built_at_import_and_openapi_documents_predict(client: TestClient) -> None:
    import serving.main

    assert serving.main._app is None  # `serving.main:app` is made on first access only
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert "agents" in body["schema"]["properties"]
