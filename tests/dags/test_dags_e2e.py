"""Every DAG end to end with `dag.test()` on a slice of ETH/UCY (2 scenes, 400 frames).

The loop: ETL of the early frames -> train (cv) and promote -> batch scoring with the champion
-> the service answers requests about the later frames and logs them -> ETL of all frames
brings their ground truth -> evaluate: live ADE/FDE per variant, A/B, drift; with doubled
coordinates (so doubled speeds) the decision is to retrain and the retrain asset is emitted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.data, pytest.mark.slow]

DAGS = Path(__file__).resolve().parents[2] / "dags"
MODEL = "trajectory-forecaster"
EARLY_FRAMES = 300  # of each scene's 400: what the first ETL and the training see


@pytest.fixture(scope="module")
def bag(airflow_db: Path):
    from airflow.dag_processing.dagbag import BundleDagBag

    return BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS)


def run_dag(bag, dag_id: str, conf: dict[str, Any]):
    """One `dag.test()` run; -> the DagRun."""
    return bag.dags[dag_id].test(run_conf=conf)


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def xcom(dag_run, task_id: str, key: str = "return_value") -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.execute(XComModel.get_many(
            run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key=key,
        )).scalars().first()
        return None if row is None else XComModel.deserialize_value(row)


def rest_links(dag_run, task_id: str) -> dict[str, str | None]:
    """The task's extra links as `GET .../taskInstances/{task}/links` serves them (the route
    itself, with the API server's DAG bag and session)."""
    from airflow.api_fastapi.core_api.routes.public.extra_links import get_extra_links
    from airflow.models.dagbag import DBDagBag
    from airflow.utils.session import create_session

    with create_session() as session:
        response = get_extra_links(dag_run.dag_id, dag_run.run_id, task_id, session, DBDagBag())
    return dict(response.extra_links)


def asset_extras(uri: str) -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = (select(AssetEvent.extra).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                 .where(AssetModel.uri == uri).order_by(AssetEvent.id))
        return [dict(e) for e in session.scalars(query)]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh work dir (windows, MLflow SQLite, serving DB) for the whole module."""
    import os

    from trajectory.config import get_settings

    root = tmp_path_factory.mktemp("work")
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith(("TRAJ_", "MLFLOW_", "SERVING_"))]:
            mp.delenv(name)
        mp.setenv("TRAJ_WORK_DIR", str(root))
        mp.setenv("TRAJ_DASK_WORKERS", "1")
        mp.setenv("TRAJ_DEVICE", "cpu")
        mp.setenv("TRAJ_MONITOR_AB_MIN_KEYS", "3")
        get_settings.cache_clear()
        yield root
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def early_raw(eth_ucy_slice: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw_early")
    for src in eth_ucy_slice.glob("*.txt"):
        rows = pd.read_csv(src, sep="\t", header=None)
        frames = sorted(rows[0].unique())[:EARLY_FRAMES]
        rows[rows[0].isin(frames)].to_csv(out / src.name, sep="\t", header=False, index=False)
    return out


@pytest.fixture(scope="module")
def trained(bag, work: Path, early_raw: Path) -> dict[str, Any]:
    """ETL of the early frames (twice: idempotent), then train cv and promote it."""
    conf = {"input_dir": str(early_raw), "output_dir": str(work / "windows")}
    first = run_dag(bag, "trajectory_etl", conf)
    manifest = (work / "windows" / "manifest.json").read_text()
    again = run_dag(bag, "trajectory_etl", conf)
    train = run_dag(bag, "trajectory_train",
                    {"model": "cv", "epochs": 1, "device": "cpu", "windows_dir": ""})
    return {"etl": first, "etl_again": again, "manifest": manifest, "train": train}


def test_etl_publishes_a_new_data_version_once(trained: dict[str, Any], work: Path) -> None:
    first, again = trained["etl"], trained["etl_again"]
    assert states(first) == {"etl": "success", "publish": "success"}
    done = xcom(first, "etl")
    assert done["previous_version"] is None and done["data_version"]
    # the same input again: the same files and version, and no second asset event
    assert states(again) == {"etl": "success", "publish": "skipped"}
    assert xcom(again, "etl")["data_version"] == done["data_version"]
    assert (work / "windows" / "manifest.json").read_text() == trained["manifest"]
    events = asset_extras("trajectory://windows/")
    assert [e["data_version"] for e in events] == [done["data_version"]]
    assert events[0]["windows_dir"] == str((work / "windows").resolve())


def test_train_registers_and_promotes_with_a_link_to_its_run(
    trained: dict[str, Any], work: Path
) -> None:
    from mlflow import MlflowClient

    run = trained["train"]
    assert states(run) == {"train": "success"}
    summary = xcom(run, "train")
    assert summary["version"] == 1 and summary["promoted"] is True
    assert summary["windows_dir"].endswith("windows")
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    assert client.get_model_version_by_alias(MODEL, "champion").run_id == summary["run_id"]
    assert client.get_run(summary["run_id"]).data.tags["data_version"] == summary["data_version"]
    assert xcom(run, "train", "mlflow_run")["run_id"] == summary["run_id"]


def test_tune_runs_trials_in_workers_and_proposes_a_config(
    bag, trained: dict[str, Any], work: Path
) -> None:
    from mlflow import MlflowClient

    from trajectory.training.train import CONFIG_PATH

    shipped = CONFIG_PATH.read_bytes()
    run = run_dag(bag, "trajectory_tune", {"trials": 2, "timeout": 600, "model": "mixture",
                                           "epochs": 1, "windows_dir": None})
    assert states(run) == {"tune": "success"}
    summary = xcom(run, "tune")
    assert summary["trials"]["total"] >= 2 and summary["windows_dir"].endswith("windows")
    proposal = json.loads(Path(summary["config_path"]).read_text())
    assert proposal["provenance"]["study"] == summary["study"]
    assert proposal["provenance"]["data"]["splits_used"] == ["train", "val"]
    assert CONFIG_PATH.read_bytes() == shipped  # the packaged configuration is left alone
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    parent = client.get_run(summary["run_id"])
    kids = client.search_runs([parent.info.experiment_id],
                              f"tags.mlflow.parentRunId = '{summary['run_id']}'")
    assert len(kids) == summary["trials"]["total"]
    assert xcom(run, "tune", "mlflow_run")["run_id"] == summary["run_id"]


def test_batch_score_uses_the_champion(bag, trained: dict[str, Any], work: Path,
                                       eth_ucy_slice: Path) -> None:
    out = work / "batch" / "scored.csv"
    run = run_dag(bag, "trajectory_batch_score",
                  {"input_csv": str(eth_ucy_slice / "hotel.txt"), "output_path": str(out)})
    assert states(run) == {"score": "success"}
    report = xcom(run, "score")
    assert report["model"]["version"] == "1" and report["windows"] > 0
    scored = pd.read_csv(out)
    assert len(scored) == report["output_rows"] == report["windows"] * 12
    assert set(scored["scene"]) == {"hotel"}


def _requests(raw: Path, scale: float) -> list[dict[str, Any]]:
    """One request per scene and later frame: every agent with 8 observed points there."""
    requests = []
    for src in sorted(raw.glob("*.txt")):
        rows = pd.read_csv(src, sep="\t", header=None, names=["frame", "agent", "x", "y"])
        frames = sorted(rows["frame"].unique())
        step = int(frames[1] - frames[0])
        for last in frames[EARLY_FRAMES:-12:3]:
            wanted = last - step * np.arange(7, -1, -1)
            seen = rows[rows["frame"].isin(wanted)].sort_values("frame")
            agents = [{"agent_id": int(a), "points": (g[["x", "y"]].to_numpy() * scale).tolist()}
                      for a, g in seen.groupby("agent") if len(g) == 8]
            if agents:
                requests.append({"agents": agents, "scene": src.stem, "frame": int(last),
                                 "frame_step": step, "routing_key": f"client-{len(requests) % 24}"})
    return requests


def _serve(work: Path, database: Path, requests: list[dict[str, Any]]) -> None:
    """The real service in-process (champion from the registry, challenger Constant Velocity);
    leaving the client flushes the prediction log."""
    from fastapi.testclient import TestClient

    from serving.config import load_serving_settings
    from serving.main import create_app

    settings = load_serving_settings(
        work_dir=work, auth_required=False, database_url=f"sqlite:///{database}",
        variants={"champion": f"models:/{MODEL}@champion", "challenger": "builtin:cv"},
        ab_weights={"champion": 0.5, "challenger": 0.5},
    )
    with TestClient(create_app(settings)) as client:
        for body in requests:
            response = client.post("/v1/predict", json=body)
            assert response.status_code == 200, response.text


def _evaluate(bag, database: Path, mp: pytest.MonkeyPatch):
    mp.setenv("TRAJ_MONITOR_DATABASE_URL", f"sqlite:///{database}")
    mp.setenv("TRAJ_MONITOR_AB_WEIGHTS", '{"champion": 0.5, "challenger": 0.5}')
    # a test-sized log: one evaluation, a few dozen served windows, judged at once
    mp.setenv("TRAJ_MONITOR_MIN_DRIFT_ROWS", "30")
    mp.setenv("TRAJ_MONITOR_DRIFT_PERSISTENCE", "1")
    # its traffic is one contiguous block of frames per scene (2 scenes), not runs of 10
    mp.setenv("TRAJ_MONITOR_DRIFT_RUN_WINDOWS", "140")
    mp.setenv("TRAJ_MONITOR_MIN_LIVE_WINDOWS", "20")
    return run_dag(bag, "trajectory_evaluate", {"lookback_hours": 1.0, "windows_dir": ""})


def test_evaluate_closes_the_loop_and_doubled_speeds_request_retraining(
    bag, trained: dict[str, Any], work: Path, eth_ucy_slice: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _serve(work, work / "normal.db", _requests(eth_ucy_slice, 1.0))
    _serve(work, work / "doubled.db", _requests(eth_ucy_slice, 2.0))
    # later data arrives: the ETL of all frames brings the ground truth of the served futures
    etl = run_dag(bag, "trajectory_etl", {"input_dir": str(eth_ucy_slice),
                                          "output_dir": str(work / "windows")})
    assert states(etl) == {"etl": "success", "publish": "success"}

    normal = _evaluate(bag, work / "normal.db", monkeypatch)
    assert states(normal) == {"evaluate": "success", "request_retrain": "skipped"}
    calm = json.loads(Path(xcom(normal, "evaluate")["decision_path"]).read_text())
    live = {(r["variant"], r["model_version"]): r for r in calm["numbers"]["live_summary"]}
    assert set(live) == {("champion", "1"), ("challenger", "builtin")}
    assert all(r["windows"] > 50 and 0 < r["ade"] < 2 for r in live.values())
    assert not calm["numbers"]["drift_flagged"]
    assert calm["numbers"]["ab"]["estimate"]["keys"] >= 3
    assert not calm["numbers"]["sample_ratio"]["mismatch"]
    assert calm["numbers"]["experiment"]["weights"] == {"champion": 0.5, "challenger": 0.5}

    doubled = _evaluate(bag, work / "doubled.db", monkeypatch)
    assert states(doubled) == {"evaluate": "success", "request_retrain": "success"}
    summary = xcom(doubled, "evaluate")
    decision = json.loads(Path(summary["decision_path"]).read_text())
    drift, report = decision["numbers"]["drift"], decision["numbers"]["drift_report"]
    assert decision["retrain"] and report["method"] == "wasserstein"
    assert drift["flagged"] and drift["drifted"]["speed"]
    assert drift["scores"]["speed"] > 2 * calm["numbers"]["drift"]["scores"]["speed"]
    assert any(r.startswith("drift at n=") for r in decision["reasons"])
    assert decision["numbers"]["reference_ade"]["1"] > 0  # the champion's validation ADE
    # the champion is constant velocity: judged against CV on the same windows it cannot degrade
    assert not any(r.startswith("degradation") for r in decision["reasons"])
    assert Path(report["html_path"]).is_file()
    report = xcom(doubled, "evaluate", "evidently_report")
    assert report.endswith("drift.html")
    links = rest_links(doubled, "evaluate")  # both buttons, from the rows the task wrote
    assert links["Evidently report"] == f"/trajectory-reports/{report}"
    assert links["MLflow run"].endswith(f"/runs/{summary['run_id']}")
    retrain = asset_extras("trajectory://retrain-request/")
    assert len(retrain) == 1 and retrain[0]["reasons"] == decision["reasons"]

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    run = client.get_run(summary["run_id"])
    assert run.data.metrics["retrain"] == 1.0 and run.data.metrics["drift_share"] >= 0.5
    files = {f.path for f in client.list_artifacts(summary["run_id"], "evaluation")}
    assert files == {"evaluation/decision.json", "evaluation/drift.html", "evaluation/drift.json"}


def test_retention_purges_old_rows_and_evaluations_and_audits_it(
    bag, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import insert, select

    from serving.db import admin_audit, open_database, predictions
    from trajectory.privacy.pseudonym import load_pseudonymiser

    keys = load_pseudonymiser(None, work)
    url = f"sqlite:///{work / 'retention.db'}"
    engine = open_database(url, keys)
    old = {
        "request_id": "old", "created_at": datetime(2020, 1, 1, tzinfo=UTC),
        "routing_key_hash": keys.routing("client:c"), "client_key": keys.client("c"),
        "variant": "champion", "assignment": "hash", "shadow": False, "model_name": MODEL,
        "model_version": "1", "scene_key": keys.scene("hotel"), "agent_key": keys.agent("hotel", 1),
        "pseudonym_key_id": keys.key_id, "last_frame": 10, "frame_step": 10, "k": 1,
        "observed": [[0.0, 0.0]], "predicted": [[[0.0, 0.0]]], "weights": [1.0],
        "latency_ms": 1.0, "cache_hit": False,
    }
    with engine.begin() as conn:
        conn.execute(insert(predictions), [old, old | {"request_id": "new",
                                                       "created_at": datetime.now(UTC)}])
    stale = work / "monitoring" / "20200101T000000"
    stale.mkdir(parents=True)
    monkeypatch.setenv("TRAJ_PRIVACY_DATABASE_URL", url)
    run = run_dag(bag, "trajectory_retention", {})
    assert states(run) == {"purge": "success"}
    report = xcom(run, "purge")
    assert report["counts"]["predictions"] == 1 and report["counts"]["monitoring_folders"] == 1
    assert report["audited"] and not stale.exists()
    with engine.connect() as conn:
        left = conn.execute(select(predictions.c.request_id)).scalars().all()
        audit = conn.execute(select(admin_audit)).mappings().all()
    engine.dispose()
    assert left == ["new"]
    assert [(a["action"], a["outcome"], a["source"]) for a in audit] == [
        ("privacy-purge", "ok", "airflow")]


def test_alias_moves_and_reference_ade_come_from_the_registry(trained: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    from trajectory.config import get_settings
    from trajectory.tracking.evaluation import reference_ade, set_alias

    settings = get_settings()
    reference = reference_ade(settings, [1, 99])  # 99 does not exist: left out
    assert list(reference) == [1] and reference[1] > 0
    set_alias(settings, "rollback-check", 1, "test: rollback to v1")
    client = MlflowClient(tracking_uri=settings.tracking_uri())
    version = client.get_model_version_by_alias(MODEL, "rollback-check")
    assert int(version.version) == 1
    assert version.tags["monitoring.rollback-check"] == "test: rollback to v1"
