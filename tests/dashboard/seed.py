"""A prediction log written by the real service, from the demo's synthetic crowd.

The serving app runs under uvicorn (two variants, 50/50 by routing key, constant velocity and
constant velocity shifted 0.3 m in x) and every scene is replayed as a client would: at each
frame, every agent with `obs_len` points so far is sent. The expected live ADE per variant is
computed here from the raw tracks, independently of the dashboard's join through later rows.
Rows are then spread over 36 hours (`created_at` rewritten), as a day and a half of traffic
would, and evaluation folders with decision records are written beside the log: the newest
by the evaluation job's own functions on that log (`evaluate`), older ones hand-written in the
formats earlier jobs wrote.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import httpx
import numpy as np
import pandas as pd
import uvicorn
from serving_testkit import ShiftedCV  # tests/serving, on the path (conftest)
from sqlalchemy import create_engine, text

from serving.config import ServingSettings, hash_api_key
from serving.main import create_app
from serving.registry import ServedModel
from trajectory.data.io import read_tracks
from trajectory.data.simulate import simulate_crowd
from trajectory.data.windows import WindowSpec, make_windows

ADMIN_KEY, PREDICT_KEY = "dashboard-admin-key-for-tests", "dashboard-predict-key-for-tests"
VIEWER_KEY = "dashboard-viewer-key-for-tests"
PSEUDONYM_KEY = "dashboard-test-pseudonym-key-0123456789"
SPEC = WindowSpec(obs_len=8, pred_len=12, neighbour_radius=5.0, max_neighbours=8)
SHIFT = {"1": 0.0, "2": 0.3}  # version -> metres added to x
START = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
SPAN = timedelta(hours=36)
EVALUATED = START + SPAN + timedelta(hours=1)  # the hourly evaluation after the traffic
WEIGHTS = {"champion": 0.5, "challenger": 0.5}


class Registry:
    """champion -> v1 (plain CV), challenger -> v2 (CV + 0.3 m)."""

    versions: ClassVar[dict[str, str]] = {"champion": "1", "challenger": "2"}

    def resolve(self, uri: str) -> str | None:
        return self.versions.get(uri.rsplit("@", 1)[-1])

    def load(self, uri: str) -> ServedModel:
        version = uri.rsplit("/", 1)[-1]
        if version not in SHIFT:
            version = self.versions[uri.rsplit("@", 1)[-1]]
        model = ShiftedCV(SHIFT[version], obs_len=SPEC.obs_len, pred_len=SPEC.pred_len)
        return ServedModel("demo-forecaster", version, f"run{version}", SPEC, model.eval(), uri)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Seeded:
    work_dir: Path
    database_url: str
    serving_url: str
    expected_ade: dict[str, float]  # variant -> mean ADE of forecasts with a complete future
    expected_windows: dict[str, int]
    expected_keys: int  # routing keys with a scored forecast (both variants)
    scenes: int
    decision: dict[str, object]  # the record `evaluate` wrote
    stop: list[object] = field(default_factory=list)


def serving_settings(work_dir: Path) -> ServingSettings:
    return ServingSettings(
        work_dir=work_dir,
        variants={"champion": "models:/demo-forecaster@champion",
                  "challenger": "models:/demo-forecaster@challenger"},
        ab_weights=WEIGHTS,
        api_keys={hash_api_key(ADMIN_KEY): "admin", hash_api_key(PREDICT_KEY): "predict"},
        model_poll_s=3600, log_flush_s=0.05, pseudonym_key=PSEUDONYM_KEY,
    )  # type: ignore[call-arg]


def start_serving(work_dir: Path) -> tuple[str, uvicorn.Server, threading.Thread]:
    port = free_port()
    app = create_app(serving_settings(work_dir), model_source=Registry())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return url, server, thread
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the serving app did not become ready")


def seed(root: Path, scenes: int = 2, agents: int = 8, frames: int = 120) -> Seeded:
    work_dir = root / "work"
    paths = simulate_crowd(root / "raw", n_scenes=scenes, agents_per_scene=agents,
                           n_frames=frames, seed=3)
    url, server, thread = start_serving(work_dir)
    errors: dict[str, list[float]] = {"champion": [], "challenger": []}
    scored_keys: set[str] = set()
    sent = 0
    with httpx.Client(base_url=url, headers={"X-API-Key": PREDICT_KEY}, timeout=30) as client:
        for path in paths:
            tracks = read_tracks(path, path.parent.name).tracks
            name = str(tracks["scene"].iloc[0])
            by_agent = {int(a): t.set_index("frame")[["x", "y"]] for a, t in
                        tracks.groupby("agent_id")}
            step = int(np.diff(np.sort(tracks["frame"].unique())).min())
            for last in np.sort(tracks["frame"].unique()):
                want = [last - step * i for i in range(SPEC.obs_len - 1, -1, -1)]
                agents_now = [(a, t.loc[want].to_numpy()) for a, t in by_agent.items()
                              if all(f in t.index for f in want)]
                if not agents_now:
                    continue
                body = {"scene": name, "frame": int(last), "frame_step": step, "k": 3,
                        "routing_key": f"{name}-{int(last)}",
                        "agents": [{"agent_id": a, "points": p.tolist()} for a, p in agents_now]}
                response = client.post("/v1/predict", json=body)
                response.raise_for_status()
                sent += len(agents_now)
                out = response.json()
                future = [last + step * j for j in range(1, SPEC.pred_len + 1)]
                for pred in out["predictions"]:
                    track = by_agent[pred["agent_id"]]
                    if all(f in track.index for f in future):
                        truth = track.loc[future].to_numpy()
                        err = np.linalg.norm(np.asarray(pred["points"]) - truth, axis=-1)
                        errors[out["variant"]].append(float(err.mean()))
                        scored_keys.add(body["routing_key"])
    database_url = f"sqlite:///{(work_dir / 'serving.db').resolve()}"
    engine = create_engine(database_url)
    for _ in range(200):  # the log writer flushes every 50 ms
        with engine.connect() as conn:
            if conn.execute(text("SELECT count(*) FROM predictions")).scalar() >= sent:
                break
        time.sleep(0.05)
    _spread(engine)
    engine.dispose()
    write_decisions(work_dir)
    train = simulate_crowd(root / "train", n_scenes=scenes, agents_per_scene=agents,
                           n_frames=frames, seed=4)
    record = json.loads(evaluate(work_dir, database_url, paths, train).read_text())
    seeded = Seeded(work_dir, database_url, url,
                    {v: float(np.mean(e)) for v, e in errors.items()},
                    {v: len(e) for v, e in errors.items()}, len(scored_keys), scenes, record)
    seeded.stop = [server, thread]
    return seeded


def _spread(engine: object) -> None:
    """created_at of the rows spread evenly over SPAN from START, in request order."""
    with engine.begin() as conn:  # type: ignore[attr-defined]
        ids = [r[0] for r in conn.execute(text("SELECT DISTINCT request_id FROM predictions "
                                               "ORDER BY id"))]
        for i, request_id in enumerate(ids):
            at = START + SPAN * (i / max(len(ids) - 1, 1))
            conn.execute(text("UPDATE predictions SET created_at = :t WHERE request_id = :r"),
                         {"t": at.replace(tzinfo=None), "r": request_id})


def _tracks(paths: list[Path]) -> pd.DataFrame:
    return pd.concat([read_tracks(p, p.parent.name).tracks for p in paths], ignore_index=True)


def evaluate(work_dir: Path, database_url: str, raw: list[Path], train: list[Path]) -> Path:
    """One evaluation of the seeded log by the job's own functions, as `run_evaluation` chains
    them but without an ETL output, a registry or Evidently: ground truth from the raw tracks
    the requests were cut from, drift against a second simulated crowd as the training split,
    the experiment the logged versions open, the A/B test, both balance checks, `decide`."""
    from trajectory.monitoring import evidence
    from trajectory.monitoring.decision import decide, write_decision
    from trajectory.monitoring.experiment import current_experiment
    from trajectory.monitoring.live import live_errors, read_prediction_log, served_features
    from trajectory.monitoring.settings import MonitoringSettings

    monitor = MonitoringSettings(_env_file=None, pseudonym_key=PSEUDONYM_KEY,  # type: ignore[call-arg]
                                 ab_weights=WEIGHTS, drift_calibration_samples=50)
    engine = create_engine(database_url)
    try:
        rows = read_prediction_log(engine, START - timedelta(hours=1), EVALUATED)
        experiment = current_experiment(engine, rows, WEIGHTS, EVALUATED)
    finally:
        engine.dispose()
    errors = live_errors(rows, _tracks(raw), monitor.pseudonymiser(work_dir))
    reference, scenes = evidence.training_features(make_windows(_tracks(train), SPEC), SPEC.dt)
    verdict = evidence.drift_verdict(reference, scenes, served_features(rows, SPEC), monitor)
    checks = evidence.balance(rows, errors, experiment, monitor)
    decision = decide(monitor, drift=verdict, srm=checks["srm"], joins=checks["joins"],
                      **evidence.comparisons(errors, errors.iloc[:0], experiment, monitor))
    decision.decided_at = EVALUATED.isoformat(timespec="seconds")  # the job runs at the end
    decision.numbers["experiment"] = experiment.to_dict() | {
        "read_from": experiment.started_at.isoformat()}
    folder = work_dir / "monitoring" / EVALUATED.strftime(evidence.FOLDER_FORMAT)
    return write_decision(decision, folder / "decision.json")


def write_decisions(work_dir: Path) -> None:
    """Hand-written records of earlier formats: a fixed-horizon (Welch / Mann-Whitney) A/B
    comparison with a drift share, one with a drift share only, one older minimal record;
    the first has an Evidently report."""
    ab = {"metric": "ade", "a": "champion", "b": "challenger", "n_a": 8, "n_b": 8,
          "mean_a": 0.41, "mean_b": 0.52, "diff": 0.11, "ci_low": 0.04, "ci_high": 0.18,
          "alpha": 0.05, "welch_t": 3.4, "welch_p": 0.004, "mannwhitney_u": 55.0,
          "mannwhitney_p": 0.006, "cohens_d": 1.7, "rank_biserial": 0.72, "significant": True}
    srm = {"counts": {"champion": 8, "challenger": 8}, "expected": {"champion": 8.0,
           "challenger": 8.0}, "chi2": 0.0, "p_value": 1.0, "alpha": 0.001, "mismatch": False}
    records = {
        "20261201T180000": {
            "retrain": True, "reasons": ["drift: 0.67 of features drifted >= 0.5"],
            "actions": [{"kind": "rollback", "alias": "champion", "version": 1,
                         "reason": "rollback: v2 worse", "apply": False}],
            "numbers": {"drift": {"share": 0.67}, "live": [], "ab": ab, "sample_ratio": srm,
                        "window": {"start": "2026-12-01T12:00:00", "end": "2026-12-01T18:00:00"}},
            "policy": {}, "decided_at": "2026-12-01T18:00:05+00:00", "run_id": "0123abcd",
        },
        "20261201T060000": {"retrain": False, "reasons": ["no rule fired"], "actions": [],
                            "numbers": {"drift": {"share": 0.17}},
                            "decided_at": "2026-12-01T06:00:04+00:00"},
        "20261130T180000": {"reasons": "older format", "drift_share": 0.33},
    }
    for folder, record in records.items():
        out = work_dir / "monitoring" / folder
        out.mkdir(parents=True, exist_ok=True)
        (out / "decision.json").write_text(json.dumps(record))
    (work_dir / "monitoring" / "20261201T180000" / "drift.html").write_text(
        "<html><body><h1 id='evidently'>Drift report</h1></body></html>")


def scored_frame(seeded: Seeded) -> pd.DataFrame:  # for debugging a failed comparison
    engine = create_engine(seeded.database_url)
    try:
        return pd.read_sql("SELECT variant, count(*) AS n FROM predictions GROUP BY variant",
                           engine)
    finally:
        engine.dispose()
