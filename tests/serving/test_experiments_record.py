"""A weights change records a new A/B experiment that the evaluation job reads."""

from __future__ import annotations

from pathlib import Path

from serving_testkit import ADMIN, TestClient
from sqlalchemy import create_engine, select

from serving.db import experiments


def test_weights_change_opens_an_experiment_with_its_weights(client: TestClient,
                                                             tmp_path: Path) -> None:
    r = client.put("/v1/admin/ab-weights", json={"weights": {"champion": 0.5, "challenger": 0.5}},
                   headers=ADMIN)
    assert r.status_code == 200, r.text
    refused = client.put("/v1/admin/ab-weights", json={"weights": {"x": 1.0}}, headers=ADMIN)
    assert refused.status_code == 422
    engine = create_engine(f"sqlite:///{tmp_path / 'serving.db'}")
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(experiments))]
    engine.dispose()
    assert len(rows) == 1  # the refused change records nothing
    assert rows[0]["weights"] == {"champion": 0.5, "challenger": 0.5}
    assert rows[0]["versions"] == {} and rows[0]["source"] == "admin"
