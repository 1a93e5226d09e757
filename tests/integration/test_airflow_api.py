"""A real Airflow (scripts/airflow_local.sh: `airflow standalone`, SQLite in tmp) driven over
REST API v2 with a JWT: ETL, then training, then the run and the model are found in MLflow and
the task's "MLflow run" extra link points at the run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.data]

REPO = Path(__file__).resolve().parents[2]
START_SECONDS = 240
RUN_SECONDS = 300
PASSWORD = "integration-admin"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Airflow:
    """The REST client of a running Airflow, authenticated as admin."""

    def __init__(self, url: str, log_path: Path, mlflow_uri: str) -> None:
        self.url, self.log_path, self.mlflow_uri = url, log_path, mlflow_uri
        self.http = httpx.Client(base_url=url, timeout=30)

    def login(self) -> None:
        response = self.http.post("/auth/token", json={"username": "admin", "password": PASSWORD})
        assert response.status_code in (200, 201), response.text
        self.http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"/api/v2{path}", **kwargs)
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def wait_for_dag(self, dag_id: str) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.http.get(f"/api/v2/dags/{dag_id}").status_code == 200:
                return
            time.sleep(2)
        raise AssertionError(f"{dag_id} never parsed; log:\n{self.tail()}")

    def run(self, dag_id: str, conf: dict[str, Any]) -> dict[str, Any]:
        """Unpause, trigger with `conf` (logical date null), wait for a final state."""
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        deadline = time.monotonic() + RUN_SECONDS
        while time.monotonic() < deadline:
            run = self.api("GET", f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}")
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(3)
        raise AssertionError(f"{dag_id} run did not finish: {run}; log:\n{self.tail()}")

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Airflow]:
    """scripts/airflow_local.sh in its own process group, stopped (TERM, then KILL) afterwards."""
    root = tmp_path_factory.mktemp("airflow_real")
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "TRAJ_", "MLFLOW_", "SERVING_"))}
    env |= {
        "AIRFLOW_HOME": str(root / "home"),
        "AIRFLOW_PORT": str(port),
        "AIRFLOW_ADMIN_PASSWORD": PASSWORD,
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "TRAJ_WORK_DIR": str(root / "work"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "TRAJ_DASK_WORKERS": "1",
        "TRAJ_DEVICE": "cpu",
    }
    log_path = root / "airflow.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([str(REPO / "scripts" / "airflow_local.sh")], env=env,
                                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    client = Airflow(f"http://127.0.0.1:{port}", log_path, env["MLFLOW_TRACKING_URI"])
    try:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"airflow exited early:\n{client.tail()}"
            try:
                if client.http.get("/api/v2/monitor/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(2)
        else:
            raise AssertionError(f"airflow did not start:\n{client.tail()}")
        client.login()
        yield client
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """TERM the whole process group (api-server, scheduler... outlive standalone), then KILL."""
    for sig, grace in ((signal.SIGTERM, 60.0), (signal.SIGKILL, 15.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_alive(proc):
            time.sleep(1)
        if not _group_alive(proc):
            break
    proc.wait(timeout=15)


def _group_alive(proc: subprocess.Popen[bytes]) -> bool:
    proc.poll()  # reap the leader, so a dead one does not count as alive
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def raw(eth_ucy_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 frames of the zara1 scene."""
    out = tmp_path_factory.mktemp("raw")
    src = next((eth_ucy_dir / "zara1" / "test").glob("*.txt"))
    rows = pd.read_csv(src, sep=r"\s+", header=None)
    rows[rows[0].isin(sorted(rows[0].unique())[:300])].to_csv(
        out / "zara1.txt", sep="\t", header=False, index=False)
    return out


def test_trigger_etl_and_train_over_rest_and_find_the_model_in_mlflow(
    airflow: Airflow, raw: Path
) -> None:
    from mlflow import MlflowClient

    for dag_id in ("trajectory_etl", "trajectory_train", "trajectory_evaluate",
                   "trajectory_batch_score", "trajectory_tune"):
        airflow.wait_for_dag(dag_id)
    assert airflow.api("GET", "/importErrors")["total_entries"] == 0

    windows = raw.parent / "windows"
    etl = airflow.run("trajectory_etl", {"input_dir": str(raw), "output_dir": str(windows)})
    assert etl["state"] == "success", airflow.tail()
    events = airflow.api("GET", "/assets/events", params={"source_dag_id": "trajectory_etl"})
    assert [e["extra"]["windows_dir"] for e in events["asset_events"]] == [str(windows)]

    train = airflow.run("trajectory_train", {"model": "cv", "epochs": 1, "device": "cpu",
                                             "windows_dir": str(windows)})
    assert train["state"] == "success", airflow.tail()
    run_path = f"/dags/trajectory_train/dagRuns/{train['dag_run_id']}/taskInstances/train"
    summary = airflow.api("GET", f"{run_path}/xcomEntries/return_value")["value"]
    links = airflow.api("GET", f"{run_path}/links")["extra_links"]
    assert links["MLflow run"].endswith(f"/#/runs/{summary['run_id']}")
    assert not links["Evidently report"]  # training writes no drift report

    client = MlflowClient(tracking_uri=airflow.mlflow_uri)
    version = client.get_model_version_by_alias("trajectory-forecaster", "champion")
    assert version.run_id == summary["run_id"] and int(version.version) == summary["version"]
    assert client.get_run(summary["run_id"]).info.status == "FINISHED"

    # the tune DAG as the trigger form sends it: its defaults, plus a small search
    tune = airflow.run("trajectory_tune", {"trials": 1, "timeout": 0, "model": "calibrated",
                                           "epochs": 1, "windows_dir": str(windows)})
    assert tune["state"] == "success", airflow.tail()
    tune_path = f"/dags/trajectory_tune/dagRuns/{tune['dag_run_id']}/taskInstances"
    tasks = airflow.api("GET", tune_path)["task_instances"]
    assert tasks and all(t["state"] == "success" for t in tasks)

    # the plugin's report server answers logged-in users only
    assert httpx.get(f"{airflow.url}/trajectory-reports/none.html").status_code == 401
    assert airflow.http.get("/trajectory-reports/none.html").status_code == 404
