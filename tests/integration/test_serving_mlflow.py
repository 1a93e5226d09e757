"""The service on a real MLflow registry: load by alias, follow an alias move, outlive MLflow."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from services import HEADERS, TcpProxy, TestClient, serving_settings, walk

from serving.main import create_app
from trajectory import tracking
from trajectory.config import Settings
from trajectory.data.windows import Windows, WindowSpec
from trajectory.training import TrainConfig, train

pytestmark = pytest.mark.integration

SPEC = WindowSpec(obs_len=8, pred_len=12, max_neighbours=2)


def windows(n: int) -> Windows:
    t = np.arange(SPEC.obs_len + SPEC.pred_len, dtype=np.float32)[None, :, None]  # (1, T, 1)
    pos = np.random.default_rng(0).normal(0, 0.5, (n, 1, 2)).astype(np.float32) * t  # (N, T, 2)
    return Windows(
        obs=pos[:, : SPEC.obs_len], fut=pos[:, SPEC.obs_len :],
        nbr=np.full((n, SPEC.max_neighbours, SPEC.obs_len, 2), np.nan, np.float32),
        scene=np.full(n, "walk", object), agent_id=np.arange(n, dtype=np.int64),
        start_frame=np.zeros(n, np.int64),
    )


def register_cv(settings: Settings, out: Path) -> int:
    """Log a Constant Velocity run and point `champion` at it; -> the registry version."""
    w = windows(8)
    result = train(w, w, TrainConfig(model="cv", device="cpu"), out, progress=False, spec=SPEC,
                   meta={"data_version": "walk"})
    run_id = tracking.log_training(settings, result=result, train_config={"model": "cv"},
                                   spec=SPEC, data_version="walk", val_metrics={})
    return tracking.register(settings, run_id, alias="champion")


@pytest.fixture
def mlflow(mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TcpProxy]:
    """The session's MLflow server, seen by the service through a proxy it can lose."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unset")  # recorded, so MLflow's own setting of it
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # during the test is undone afterwards
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a dead server fails at once
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    proxy = TcpProxy(int(mlflow_server.rsplit(":", 1)[1]))
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def test_alias_reload_and_mlflow_outage(tmp_path: Path, mlflow: TcpProxy) -> None:
    name = f"serving-it-{uuid.uuid4().hex[:6]}"
    # all through the proxy: mlflow.set_tracking_uri also sets MLFLOW_TRACKING_URI, which wins
    uri = f"http://127.0.0.1:{mlflow.port}"
    core = Settings(work_dir=tmp_path, mlflow_tracking_uri=uri, model_name=name,
                    experiment_name=name)
    assert register_cv(core, tmp_path / "v1") == 1
    settings = serving_settings(tmp_path, mlflow_tracking_uri=uri,
                                variants={"champion": f"models:/{name}@champion"})
    with TestClient(create_app(settings)) as client:
        body = {"agents": [walk(1)]}
        out = client.post("/v1/predict", json=body, headers=HEADERS).json()
        assert out["model"] == {"name": name, "version": "1"}
        assert out["predictions"][0]["points"][0] == [4.0, 0.0]

        assert register_cv(core, tmp_path / "v2") == 2  # the alias moves
        state = client.app.state.serving  # type: ignore[attr-defined]
        assert client.portal.call(state.reloader.refresh)["champion"] == "loaded 2"
        assert client.post("/v1/predict", json=body, headers=HEADERS).json()["model"]["version"] == "2"

        mlflow.stop()  # MLflow is gone, for the service
        client.portal.call(state.reloader.refresh)  # what the poller does every model_poll_s
        ready = client.get("/ready").json()
        assert ready["status"] == "degraded" and ready["degraded"] == ["registry"]
        r = client.post("/v1/predict", json={"agents": [walk(2)]}, headers=HEADERS)
        assert r.status_code == 200 and r.json()["model"]["version"] == "2"
