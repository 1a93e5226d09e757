"""POST /v1/predict through the app: outputs, cache, variants, and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from serving_testkit import ADMIN, PREDICT, FakeRegistry, TestClient, make_settings, walk
from sqlalchemy import create_engine, func, select

from serving.db import predictions
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
                             headers=ADMIN).json()  # forcing needs the admin role
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
    assert r.headers["x-request-id"] == r.json()["request_id"]


def _logged(tmp_path: Path) -> int:
    engine = create_engine(f"sqlite:///{tmp_path / 'serving.db'}")
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(predictions)).scalar_one()
    engine.dispose()
    return int(count)


@pytest.mark.parametrize("points", [[[1e39, 0], [1e39, 1]], [[1e308, 0], [-1e308, 0]],
                                    [[0, 0], [0, 100_001]]])
def test_coordinates_beyond_the_bound_are_422_naming_the_point(
    tmp_path: Path, registry: FakeRegistry, points: list[list[float]]
) -> None:
    with TestClient(create_app(make_settings(tmp_path), model_source=registry)) as client:
        body = {"agents": [walk(1), {"agent_id": 2, "points": points}]}
        r = client.post("/v1/predict", json=body, headers=PREDICT)
        assert r.status_code == 422, r.text
        field = "agents.1.points.1" if points[0] == [0, 0] else "agents.1.points.0"
        assert r.json()["detail"][0]["field"] == field
        assert "100000" in r.json()["detail"][0]["reason"]
        edge = {"agents": [{"agent_id": 1, "points": [[-1e5, 0], [1e5, 1e5]]}]}
        assert client.post("/v1/predict", json=edge, headers=PREDICT).status_code == 200
    with TestClient(create_app(make_settings(tmp_path, max_abs_coordinate=3.0),
                               model_source=registry)) as client:
        r = client.post("/v1/predict", json={"agents": [walk(1)]}, headers=PREDICT)
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "agents.0.points.7"
    assert _logged(tmp_path) == 1  # only the request at the edge


def test_a_non_finite_forecast_is_422_for_that_agent_never_cached_or_logged(
    tmp_path: Path, registry: FakeRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import serving.batcher

    real = serving.batcher.predict

    def nan_for_the_second_agent(*args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        traj, weights = real(*args, **kwargs)  # type: ignore[arg-type]
        traj = np.array(traj)  # (A, K, T, 2)
        traj[1, 0, 3, 0] = np.nan
        return traj, weights

    monkeypatch.setattr(serving.batcher, "predict", nan_for_the_second_agent)
    with TestClient(create_app(make_settings(tmp_path), model_source=registry)) as client:
        body = {"agents": [walk(1), walk(2, y=3.0)]}
        for _ in range(2):
            r = client.post("/v1/predict", json=body, headers=PREDICT)
            assert r.status_code == 422, r.text
            error = r.json()["detail"][0]
            assert error["field"] == "agents.1" and "not finite" in error["reason"], error
        assert 'result="hit"' not in client.get("/metrics").text  # nothing was cached
    assert _logged(tmp_path) == 0


def test_a_non_finite_number_never_reaches_the_wire(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import serving.prediction

    real = serving.prediction.format_predictions

    def poisoned(*args: object) -> list[dict[str, object]]:
        preds = real(*args)  # type: ignore[arg-type]
        preds[0]["points"][0][0] = float("inf")
        return preds

    monkeypatch.setattr(serving.prediction, "format_predictions", poisoned)
    with TestClient(client.app, raise_server_exceptions=False) as c:
        r = c.post("/v1/predict", json={"agents": [walk(1)]}, headers=PREDICT)
        assert r.status_code == 500 and r.json()["detail"] == "internal error"
        assert "Infinity" not in r.text
        monkeypatch.setattr(serving.prediction, "format_predictions", real)
        again = c.post("/v1/predict", json={"agents": [walk(1)]}, headers=PREDICT)
        assert again.status_code == 200 and again.json()["cached"] is False
