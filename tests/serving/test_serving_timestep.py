"""POST /v1/predict with points at another time step than the model's: resampled, or 422."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from serving_testkit import PREDICT, SPEC, FakeRegistry, TestClient, make_settings, walk

from serving.batch import score_csv
from serving.main import create_app
from serving.registry import ServedModel

LAST = 10.0  # seconds: every agent's last observation


def position(t: np.ndarray, agent: int) -> np.ndarray:
    """(n, 2): agent 0 walks straight at 1.3 m/s, the others on gentle arcs (radius 40 m)."""
    if agent == 0:
        return np.stack([1.3 * t, 0.2 * t + 1.0], axis=1)
    angle = 1.2 * t / 40.0 + agent
    return np.stack([40.0 * np.cos(angle) + 3 * agent, 40.0 * np.sin(angle)], axis=1)


def agents_at(step: float, seconds: float = 4.0, timestamps: bool = False) -> list[dict[str, Any]]:
    """Three agents observed every `step` seconds over the last `seconds`, up to LAST."""
    t = LAST - np.arange(round(seconds / step), -1, -1) * step
    out: list[dict[str, Any]] = []
    for agent in range(3):
        track: dict[str, Any] = {"agent_id": agent, "points": position(t, agent).tolist()}
        if timestamps:
            track["timestamps"] = t.tolist()
        out.append(track)
    return out


def forecast(client: TestClient, body: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    r = client.post("/v1/predict", json=body, headers=PREDICT)
    assert r.status_code == 200, r.text
    out = r.json()
    return np.array([p["points"] for p in out["predictions"]]), out  # (A, T_pred, 2)


def errors_of(client: TestClient, body: dict[str, Any]) -> list[dict[str, str]]:
    r = client.post("/v1/predict", json=body, headers=PREDICT)
    assert r.status_code == 422, r.text
    return r.json()["detail"]


@pytest.fixture
def cv_client(tmp_path: Path) -> Any:
    """The service with the built-in Constant Velocity model (0.4 s a step, TRAJ_DT)."""
    settings = make_settings(tmp_path, variants={"champion": "builtin:cv"})
    with TestClient(create_app(settings)) as c:
        yield c


def test_same_tracks_at_three_rates_give_the_same_forecast(cv_client: TestClient) -> None:
    ref, out = forecast(cv_client, {"agents": agents_at(0.4)})  # the model's step: no dt
    assert out["dt"] == 0.4 and ref.shape == (3, 12, 2)
    truth = position(LAST + 0.4 * np.arange(1, 13), 0)  # straight line: CV is exact
    np.testing.assert_allclose(ref[0], truth, atol=1e-3)
    for body in (
        {"agents": agents_at(0.5), "dt": 0.5},
        {"agents": agents_at(0.1), "dt": 0.1},
        {"agents": agents_at(0.5, timestamps=True)},
        {"agents": agents_at(0.1, timestamps=True)},
        {"agents": agents_at(0.4, timestamps=True)},
    ):
        got, out = forecast(cv_client, body)
        assert out["dt"] == 0.4
        assert np.abs(got - ref).max() < 0.05, body.get("dt", "timestamps")


def test_dt_equal_to_the_model_step_changes_nothing(client: TestClient) -> None:
    body: dict[str, Any] = {"agents": [walk(1), walk(2, y=3.0)], "frame": 70, "frame_step": 10}
    first, out = forecast(client, body)
    again, out2 = forecast(client, body | {"dt": 0.4})
    assert out2["cached"] is True and out["dt"] == out2["dt"] == SPEC.dt
    np.testing.assert_array_equal(first, again)


def test_irregular_timestamps_are_interpolated(client: TestClient) -> None:
    t = np.array([0.0, 0.3, 0.9, 1.2, 1.7, 2.0, 2.6, 3.1])  # jittered, ends at 3.1 s
    body = {"agents": [{"agent_id": 1, "points": [[0.5 * s, 0.0] for s in t],
                        "timestamps": t.tolist()}]}
    got, _ = forecast(client, body)
    # 0.5 m/s: 0.2 m per 0.4 s step from x = 1.55, plus the fake model's 1 m shift
    np.testing.assert_allclose(got[0, :, 0], 1.55 + 0.2 * np.arange(1, 13) + 1.0, atol=1e-3)


def test_points_follow_the_loaded_models_own_step(tmp_path: Path) -> None:
    class HalfSecond(FakeRegistry):
        def load(self, uri: str) -> ServedModel:
            return replace(super().load(uri), spec=replace(SPEC, dt=0.5))

    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, model_source=HalfSecond())) as client:
        plain, out = forecast(client, {"agents": [walk(1, vx=0.5)]})  # taken to be 0.5 s apart
        assert out["dt"] == 0.5
        np.testing.assert_allclose(plain[0, :, 0], 3.5 + 0.5 * np.arange(1, 13) + 1.0, atol=1e-3)
        # the same walk (1 m/s) sampled every 0.4 s: resampled to 0.5 s, so 0.5 m a step
        t = np.arange(11) * 0.4
        timed, _ = forecast(client, {"agents": [{
            "agent_id": 1, "points": [[s, 0.0] for s in t], "timestamps": t.tolist()}]})
        np.testing.assert_allclose(timed[0, :, 0], 4.0 + 0.5 * np.arange(1, 13) + 1.0, atol=1e-3)


def timed(t: list[float], **extra: Any) -> dict[str, Any]:
    return {"agent_id": 1, "points": [[0.5 * s, 0.0] for s in t], "timestamps": t, **extra}


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"agents": [timed([0.0, 0.5, 1.0, 1.5, 2.0])]}, "agents.0.timestamps",
         "covers 2 s, the model needs 2.8 s at dt 0.4 s"),
        ({"agents": [timed([0.0, 0.5, 1.0, 1.5, 3.0, 3.5, 4.0])]}, "agents.0.timestamps",
         "covers 1 s after a gap of 1.5 s before point 4"),
        ({"agents": [walk(1, n=5)], "dt": 0.5}, "agents.0.points",
         "5 points 0.5 s apart cover 2 s, the model needs 2.8 s at dt 0.4 s"),
        ({"agents": [walk(1, n=8)], "dt": 1.5}, "dt", "more than the 1 s gap"),
        ({"agents": [timed([0.0, 1.0])], "dt": 0.5}, "dt", "not both"),
        ({"agents": [timed([0.0, 1.0]), walk(2)]}, "agents.1.timestamps", "every agent"),
        ({"agents": [timed([0.0, 1.0], points=[[0, 0], [1, 0], [2, 0]])]},
         "agents.0.timestamps", "2 timestamps for 3 points"),
        ({"agents": [timed([0.0, 1.0, 1.0])]}, "agents.0.timestamps", "not increasing"),
        ({"agents": [walk(1)], "dt": 0}, "dt", "greater than 0"),
    ],
)
def test_points_that_cannot_be_resampled_are_422_naming_the_mismatch(
    client: TestClient, body: dict[str, Any], field: str, reason: str
) -> None:
    errors = errors_of(client, body)
    assert any(e["field"] == field and reason in e["reason"] for e in errors), errors


def test_openapi_describes_the_time_step(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "resampled" in schema["PredictRequest"]["properties"]["dt"]["description"]
    assert "model's time step" in schema["PredictResponse"]["properties"]["dt"]["description"]


def tracks_csv(path: Path, step: float, jitter: float = 0.0) -> Path:
    """Three agents over 20 s every `step` s: frame ids of step 10 per 0.4 s when step is
    0.4 and there is no jitter, else timestamps (each moved by up to `jitter` seconds)."""
    t = np.arange(0.0, 20.0 + 1e-9, step)
    shake = np.random.default_rng(1).uniform(-jitter, jitter, len(t)) if jitter else 0.0
    t_obs = t + shake
    framed = step == 0.4 and not jitter
    rows = ["scene,frame,agent_id,x,y" if framed else "scene,timestamp,agent_id,x,y"]
    for i, when in enumerate(t_obs):
        for agent in range(3):
            x, y = position(np.array([when]), agent)[0]
            stamp = f"{round(t[i] / 0.04)}" if framed else f"{when:.4f}"
            rows.append(f"s,{stamp},{agent},{x:.6f},{y:.6f}")
    path.write_text("\n".join(rows) + "\n")
    return path


def batch_forecasts(tmp_path: Path, src: Path, unit: float, chunk_rows: int) -> pd.DataFrame:
    model = FakeRegistry().load("models:/fake/1")
    settings = make_settings(tmp_path, batch_chunk_rows=chunk_rows)
    out = tmp_path / f"{src.stem}-{chunk_rows}.csv"
    report = score_csv(src, out, model, settings)
    assert not report.first_errors, report.first_errors
    scored = pd.read_csv(out)
    scored["last_s"] = (scored["last_obs_frame"] * unit).round(6)
    return scored.set_index(["agent_id", "last_s", "step"])[["x", "y"]].sort_index()


def test_batch_scoring_resamples_timestamps_as_the_chunks_come(tmp_path: Path) -> None:
    ref = batch_forecasts(tmp_path, tracks_csv(tmp_path / "a.csv", 0.4), 0.04, 10_000)
    assert len(ref) == 3 * (51 - SPEC.obs_len + 1) * SPEC.pred_len
    for step, jitter in ((0.5, 0.0), (0.1, 0.0), (0.4, 0.02)):
        src = tracks_csv(tmp_path / f"b{step}{jitter}.csv", step, jitter)
        whole = batch_forecasts(tmp_path, src, 0.4, 10_000)
        chunked = batch_forecasts(tmp_path, src, 0.4, 100)
        pd.testing.assert_frame_equal(chunked, whole)  # cutting into chunks changes nothing
        common = ref.index.intersection(whole.index)
        assert len(common) >= len(ref) - 3 * SPEC.pred_len, (step, jitter)
        assert np.abs(whole.loc[common] - ref.loc[common]).to_numpy().max() < 0.05, (step, jitter)


def framed_csv(path: Path, step: float) -> Path:
    """`tracks_csv`'s three agents with frame ids 0, 1, 2, ... one per `step` seconds."""
    t = np.arange(0.0, 20.0 + 1e-9, step)
    rows = ["scene,frame,agent_id,x,y"]
    for i, when in enumerate(t):
        for agent in range(3):
            x, y = position(np.array([when]), agent)[0]
            rows.append(f"s,{i},{agent},{x:.6f},{y:.6f}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_batch_scoring_resamples_frame_ids_of_another_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = batch_forecasts(tmp_path, tracks_csv(tmp_path / "a.csv", 0.4), 0.04, 10_000)
    monkeypatch.setenv("TRAJ_FRAME_SECONDS", "0.5")  # a dataset whose frame step lasts 0.5 s
    src = framed_csv(tmp_path / "framed.csv", 0.5)
    whole = batch_forecasts(tmp_path, src, 0.4, 10_000)  # output frames are 0.4 s model steps
    pd.testing.assert_frame_equal(batch_forecasts(tmp_path, src, 0.4, 100), whole)
    common = ref.index.intersection(whole.index)
    assert len(common) >= len(ref) - 3 * SPEC.pred_len
    assert np.abs(whole.loc[common] - ref.loc[common]).to_numpy().max() < 0.05


def test_models_list_each_variants_time_step(tmp_path: Path) -> None:
    class HalfSecondChallenger(FakeRegistry):
        def load(self, uri: str) -> ServedModel:
            model = super().load(uri)
            return replace(model, spec=replace(SPEC, dt=0.5)) if model.version == "2" else model

    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, model_source=HalfSecondChallenger())) as client:
        r = client.get("/v1/models", headers=PREDICT)
        assert r.status_code == 200, r.text
        models = {v["variant"]: v["model"] for v in r.json()["variants"]}
    assert (models["champion"]["dt"], models["challenger"]["dt"]) == (0.4, 0.5)
    assert models["champion"]["max_gap"] == SPEC.max_gap
