"""Raw identifiers never reach the log, the cache keys, metrics labels or log lines; logged
positions are coarsened when configured (docs/privacy.md)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serving_testkit import PREDICT, PSEUDONYMS, FakeRegistry, TestClient, make_settings, walk
from sqlalchemy import create_engine, select

from serving.db import predictions
from serving.main import create_app

SCENE, CLIENT, ROUTING, AGENT = "scene-secret-xyz", "client-secret-abc", "rk-secret-q", 987654321
RAW = (SCENE, CLIENT, ROUTING, str(AGENT))


def _logged(tmp_path: Path) -> list[dict[str, Any]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'serving.db'}")
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(predictions)).mappings()]
    engine.dispose()
    return rows


def _no_raw(text: str, where: str) -> None:
    for raw in RAW:
        assert raw not in text, f"{raw!r} in {where}"


def test_identifiers_are_pseudonymised_everywhere_the_service_keeps_them(
    tmp_path: Path, registry: FakeRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(tmp_path, ab_weights={"champion": 0.5, "challenger": 0.5},
                             shadow_variants=["challenger"])
    bodies = [
        {"scene": SCENE, "frame": 70, "agents": [walk(AGENT), walk(2, y=1.0)]},
        {"scene": SCENE, "frame": 70, "agents": [walk(AGENT)], "routing_key": ROUTING},
    ]
    with TestClient(create_app(settings, model_source=registry)) as client:
        for body in bodies:
            for headers in (PREDICT, PREDICT | {"X-Client-Id": CLIENT}):
                r = client.post("/v1/predict", json=body, headers=headers)
                assert r.status_code == 200, r.text
        state = client.app.state.serving  # type: ignore[attr-defined]
        client.portal.call(state.drain)  # cache writes and shadow scoring run after responses
        keys = list(state.cache._items)  # the in-process LRU (no Redis configured)
        metrics = client.get("/metrics").text
    assert keys and all(k.startswith("pred:v1:") for k in keys)
    _no_raw("\n".join(keys), "cache keys")
    _no_raw(metrics, "metrics")
    _no_raw(caplog.text, "log lines")

    rows = _logged(tmp_path)
    served = [r for r in rows if not r["shadow"]]
    assert len(served) == 6 and len(rows) > 6  # 4 requests of 2, 2, 1, 1 agents, and shadows
    _no_raw(json.dumps(rows, default=str), "prediction log")
    assert {r["scene_key"] for r in rows} == {PSEUDONYMS.scene(SCENE)}
    assert {r["agent_key"] for r in rows} == {PSEUDONYMS.agent(SCENE, AGENT),
                                              PSEUDONYMS.agent(SCENE, 2)}
    assert {r["client_key"] for r in rows} == {None, PSEUDONYMS.client(CLIENT)}
    assert {r["pseudonym_key_id"] for r in rows} == {PSEUDONYMS.key_id}
    routing = {r["routing_key_hash"] for r in rows}
    assert PSEUDONYMS.routing(f"client:{CLIENT}") in routing
    assert PSEUDONYMS.routing(f"key:{ROUTING}") in routing


@pytest.mark.parametrize("decimals", [None, 1])
def test_logged_positions_are_coarsened_when_configured(
    tmp_path: Path, registry: FakeRegistry, decimals: int | None
) -> None:
    settings = make_settings(tmp_path, position_decimals=decimals)
    body = {"agents": [walk(1, vx=0.123)]}
    with TestClient(create_app(settings, model_source=registry)) as client:
        sent = client.post("/v1/predict", json=body, headers=PREDICT).json()
    row = _logged(tmp_path)[0]
    exact = [[0.123 * i, 0.0] for i in range(8)]
    if decimals is None:
        np.testing.assert_allclose(row["observed"], exact, atol=1e-3)  # as scored
        assert row["predicted"] == [sent["predictions"][0]["points"]]
        return
    assert row["observed"] == [[round(x, 1), y] for x, y in exact]
    assert row["predicted"][0] == [[round(x, 1), round(y, 1)]
                                   for x, y in sent["predictions"][0]["points"]]
    # the client still gets full precision: only what is kept is coarser
    assert sent["predictions"][0]["points"][0][0] != round(sent["predictions"][0]["points"][0][0], 1)
