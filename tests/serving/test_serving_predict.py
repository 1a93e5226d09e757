"""POST /v1/predict through the app: outputs, cache, variants, and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from serving_testkit import ADMIN, PREDICT, FakeRegistry, TestClient, make_settings, walk

from serving.main import create_app


def test_predicts_constant_velocity_for_each_agent(client: TestClient) -> None:
    body = {"scene": "s", "agents": [walk(1), walk(2, y=3.0, vx=1.0)], "frame": 70}
    r = client.post("/v1/predict", json=body, headers=PREDICT)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["variant"] == "champion" and out["model"] == {"name": "fake", "version": "1"}
    assert out["cached"] is False and out["request_id"] == r.headers["x-request-id"]
    first, second = out["predictions"]
    assert first["agent_id"] == 1 and first["samples"] is None and first["weights"] is None
    # version 1 of the fake model shifts x by 1 m; agent 1 walks 0.5 m per step from x = 3.5
    np.testing.assert_allclose(np.array(first["points"])[:, 0], 3.5 + 0.5 * np.arange(1, 13) + 1)
    np.testing.assert_allclose(np.array(second["points"])[:3], [[9, 3], [10, 3], [11, 3]])


def test_k_samples_come_with_weights(client: TestClient) -> None:
    r = client.post("/v1/predict", json={"agents": [walk(1, n=2)], "k": 3}, headers=PREDICT)
    pred = r.json()["predictions"][0]
    assert np.array(pred["samples"]).shape == (3, 12, 2)
    assert pred["weights"] == pytest.approx([1 / 3] * 3, abs=1e-6)


def test_second_identical_request_is_a_cache_hit(client: TestClient) -> None:
    body = {"agents": [walk(1)]}
    first = client.post("/v1/predict", json=body, headers=PREDICT).json()
    body["agents"][0]["points"][0][0] += 1e-5  # type: ignore[index]  # below the rounding
    second = client.post("/v1/predict", json=body, headers=PREDICT)
    assert second.json()["cached"] is True and second.headers["x-cache"] == "hit"
    assert second.json()["predictions"] == first["predictions"]
    assert 'serving_cache_lookups_total{level="memory",result="hit"} 1.0' in client.get("/metrics").text


def test_client_id_routes_stickily_and_variant_can_be_forced(
    tmp_path: Path, registry: FakeRegistry
) -> None:
    settings = make_settings(tmp_path, ab_weights={"champion": 0.5, "challenger": 0.5})
    with TestClient(create_app(settings, model_source=registry)) as client:
        seen = {}
        for i in range(40):
            headers = PREDICT | {"X-Client-Id": f"c{i}"}
            got = {client.post("/v1/predict", json={"agents": [walk(1)]}, headers=headers)
                   .json()["variant"] for _ in range(2)}
            assert len(got) == 1  # the same client always lands on the same variant
            seen[i] = got.pop()
        assert set(seen.values()) == {"champion", "challenger"}
        forced = client.post("/v1/predict", json={"agents": [walk(1)], "variant": "challenger"},
                             headers=PREDICT).json()
        assert forced["variant"] == "challenger" and forced["model"]["version"] == "2"


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ('{"agents": [{"agent_id": 1, "points": [[0, NaN], [1, 0]]}]}', "agents.0.points.0.1",
         "finite"),
        ('{"agents": [{"agent_id": 1, "points": [[0, 1], [1, Infinity]]}]}',
         "agents.0.points.1.1", "finite"),
        ('{"agents": [{"agent_id": 1, "points": [[0, 1, 2], [1, 0]]}]}', "agents.0.points.0",
         "at most 2"),
        ('{"agents": [{"agent_id": 1, "points": [[0, 1]]}]}', "agents.0.points", "at least 2"),
        ('{"agents": [{"agent_id": 1, "points": [0, 1]}]}', "agents.0.points.0", "array"),
        ('{"agents": []}', "agents", "at least 1"),
        ('{"agents": [{"agent_id": 1, "points": [[0, 1], [1, 1]]}], "variant": "nope"}',
         "variant", "unknown variant"),
        ('{"agents": [{"agent_id": 1, "points": [[0, 1], [1, 1]]}], "k": 21}', "k", "at most 20"),
        ('{"agents": [{"agent_id": 1, "points": [[0, 1], [1, 1]]}], "extra": 1}', "extra",
         "not permitted"),
        (json.dumps({"agents": [walk(1, n=2), walk(1, n=3)]}), "agents.1.agent_id", "duplicate"),
        ("{not json", "body", "JSON"),
    ],
)
def test_bad_input_is_422_naming_field_and_reason(
    client: TestClient, body: str, field: str, reason: str
) -> None:
    r = client.post("/v1/predict", content=body,
                    headers=PREDICT | {"content-type": "application/json"})
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert any(e["field"] == field and reason.lower() in e["reason"].lower() for e in errors), errors


def test_limits_on_agents_points_and_body_size(tmp_path: Path, registry: FakeRegistry) -> None:
    settings = make_settings(tmp_path, max_agents=2, max_points=10, max_body_bytes=4096)
    with TestClient(create_app(settings, model_source=registry)) as client:
        r = client.post("/v1/predict", json={"agents": [walk(i) for i in range(3)]},
                        headers=PREDICT)
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "agents"
        r = client.post("/v1/predict", json={"agents": [walk(1, n=11)]}, headers=PREDICT)
        assert r.json()["detail"][0]["field"] == "agents.0.points"
        r = client.post("/v1/predict", json={"agents": [walk(1, n=500)]}, headers=PREDICT)
        assert r.status_code == 413 and "4096" in r.json()["detail"]


def test_api_keys_roles_and_messages(client: TestClient) -> None:
    body = {"agents": [walk(1)]}
    missing = client.post("/v1/predict", json=body)
    assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
    wrong = client.post("/v1/predict", json=body, headers={"X-API-Key": "guess"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid API key"
    assert client.post("/v1/predict", json=body, headers=ADMIN).status_code == 200
    forbidden = client.post("/v1/admin/reload", headers=PREDICT)
    assert forbidden.status_code == 403 and "admin role" in forbidden.json()["detail"]


def test_internal_errors_hide_details(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import serving.prediction

    def boom(*_: object) -> None:
        raise RuntimeError("secret detail at /etc/passwd")

    monkeypatch.setattr(serving.prediction, "check_limits", boom)
    with TestClient(client.app, raise_server_exceptions=False) as c:
        r = c.post("/v1/predict", json={"agents": [walk(1)]}, headers=PREDICT)
    assert r.status_code == 500
    assert r.json()["detail"] == "internal error" and "secret" not in r.text
    assert "Traceback" not in r.text and json.loads(r.text)["request_id"]
