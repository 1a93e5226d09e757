"""A real Airflow (scripts/airflow_local.sh: `airflow standalone`, SQLite in tmp) driven over
REST API v2 with a JWT, as a new user meets it: trigger forms that accept their defaults, the
manual DAGs active and the scheduled ones paused, the ETL whose Asset event trains with the
settings of the `trajectory_train_conf` Variable, a task log with one line per epoch at INFO,
the run and the model in MLflow behind the task's "MLflow run" link, a conf typo refused, and
the hourly evaluation skipping on a fresh install."""

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
        """Trigger with `conf` (logical date null), as README says; wait for a final state."""
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        return self.wait(dag_id, run["dag_run_id"])

    def wait(self, dag_id: str, run_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + RUN_SECONDS
        while time.monotonic() < deadline:
            run = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                return dict(run)
            time.sleep(3)
        raise AssertionError(f"{dag_id} run did not finish: {run}; log:\n{self.tail()}")

    def task_log(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """The task's log as the UI shows it: structured lines (event, level, logger...)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1"
        body = self.api("GET", path, params={"full_content": True},
                        headers={"Accept": "application/json"})
        return [line for line in body["content"] if isinstance(line, dict)]

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


def form_required(schema: dict[str, Any]) -> bool:
    """The trigger form's rule: a field is required unless its type admits null."""
    kind = schema.get("type")
    return bool(kind) and not (isinstance(kind, list) and "null" in kind)


def test_a_new_user_triggers_the_chain_and_follows_it_in_the_ui(
    airflow: Airflow, raw: Path
) -> None:
    from mlflow import MlflowClient

    dag_ids = ("trajectory_etl", "trajectory_train", "trajectory_evaluate",
               "trajectory_batch_score", "trajectory_tune", "trajectory_retention")
    for dag_id in dag_ids:
        airflow.wait_for_dag(dag_id)
    assert airflow.api("GET", "/importErrors")["total_entries"] == 0
    paused = {d: airflow.api("GET", f"/dags/{d}")["is_paused"] for d in dag_ids}
    assert paused == {d: d in ("trajectory_evaluate", "trajectory_retention") for d in dag_ids}
    for dag_id in dag_ids:  # each trigger form: only batch scoring's two paths must be filled
        params = airflow.api("GET", f"/dags/{dag_id}/details")["params"] or {}
        blocking = {name for name, p in params.items()
                    if form_required(p.get("schema") or {}) and p.get("value") in (None, "")}
        assert blocking == ({"input_csv", "output_path"} if dag_id == "trajectory_batch_score"
                            else set()), dag_id

    # the chain's training settings, then the ETL: its Asset event starts the training
    airflow.api("POST", "/variables", json={
        "key": "trajectory_train_conf",
        "value": '{"model": "calibrated", "epochs": 2, "device": "cpu"}'})
    windows = raw.parent / "windows"
    etl = airflow.run("trajectory_etl", {"input_dir": str(raw), "output_dir": str(windows)})
    assert etl["state"] == "success", airflow.tail()
    # Airflow 3.3 answers 500 here while the run the event created is queued (its start_date
    # is still null, which the response model refuses: apache/airflow#71360, fixed by #71361):
    # ask again until it has started
    deadline = time.monotonic() + RUN_SECONDS
    while (answer := airflow.http.get("/api/v2/assets/events",
                                      params={"source_dag_id": "trajectory_etl"})).is_error:
        assert time.monotonic() < deadline, answer.text
        time.sleep(3)
    events = answer.json()
    assert [e["extra"]["windows_dir"] for e in events["asset_events"]] == [str(windows)]
    while not (runs := airflow.api("GET", "/dags/trajectory_train/dagRuns")["dag_runs"]):
        assert time.monotonic() < deadline, f"no training after the ETL; {airflow.tail()}"
        time.sleep(3)
    assert [r["run_type"] for r in runs] == ["asset_triggered"]
    train = airflow.wait("trajectory_train", runs[0]["dag_run_id"])
    assert train["state"] == "success", airflow.tail()
    run_path = f"/dags/trajectory_train/dagRuns/{train['dag_run_id']}/taskInstances/train"
    summary = airflow.api("GET", f"{run_path}/xcomEntries/return_value")["value"]
    assert summary["settings"] == {"model": "calibrated", "epochs": 2, "device": "cpu",
                                   "promote": True, "source": "Variable trajectory_train_conf"}
    links = airflow.api("GET", f"{run_path}/links")["extra_links"]
    assert links["MLflow run"].endswith(f"/#/runs/{summary['run_id']}")
    assert not links["Evidently report"]  # training writes no drift report

    # its log: one INFO line per epoch from the trajectory logger, no bar, no MLflow "errors"
    log = airflow.task_log("trajectory_train", train["dag_run_id"], "train")
    epochs = [line for line in log if str(line.get("event", "")).startswith("epoch ")]
    assert [line["event"].split()[1] for line in epochs] == ["1", "2"], log
    assert {(line.get("level"), line.get("logger")) for line in epochs} == {
        ("info", "trajectory.training.train")}
    assert not [line for line in log if "epoch/s" in str(line.get("event"))]  # tqdm's bar
    assert not [line for line in log if line.get("level") == "error"], log
    assert [line for line in log if str(line.get("logger", "")).startswith("mlflow")
            and line.get("level") == "info"]

    client = MlflowClient(tracking_uri=airflow.mlflow_uri)
    version = client.get_model_version_by_alias("trajectory-forecaster", "champion")
    assert version.run_id == summary["run_id"] and int(version.version) == summary["version"]
    assert client.get_run(summary["run_id"]).info.status == "FINISHED"

    # a typo in a conf key fails the run at once, naming the key
    typo = airflow.run("trajectory_train", {"model": "cv", "epoch": 1})
    assert typo["state"] == "failed"
    typo_log = airflow.task_log("trajectory_train", typo["dag_run_id"], "train")
    assert any("unknown conf key 'epoch'" in str(line) for line in typo_log)

    # the tune DAG as the trigger form sends it: its defaults, plus a small search
    tune = airflow.run("trajectory_tune", {"trials": 1, "timeout": 0, "model": "calibrated",
                                           "epochs": 1, "windows_dir": str(windows)})
    assert tune["state"] == "success", airflow.tail()
    tune_path = f"/dags/trajectory_tune/dagRuns/{tune['dag_run_id']}/taskInstances"
    tasks = airflow.api("GET", tune_path)["task_instances"]
    assert tasks and all(t["state"] == "success" for t in tasks)

    # the hourly evaluation, once unpaused (README), skips: nothing was served yet
    airflow.api("PATCH", "/dags/trajectory_evaluate", json={"is_paused": False})
    evaluate = airflow.run("trajectory_evaluate", {})
    eval_path = f"/dags/trajectory_evaluate/dagRuns/{evaluate['dag_run_id']}/taskInstances"
    tasks = {t["task_id"]: t for t in airflow.api("GET", eval_path)["task_instances"]}
    assert {k: t["state"] for k, t in tasks.items()} == {"evaluate": "skipped",
                                                         "request_retrain": "skipped"}
    assert tasks["evaluate"]["try_number"] == 1  # skipped, not failed and retried
    eval_log = airflow.task_log("trajectory_evaluate", evaluate["dag_run_id"], "evaluate")
    assert any("no prediction log yet" in str(line) for line in eval_log), eval_log
    assert airflow.api("GET", f"{eval_path}/evaluate/links")["extra_links"] == {
        "MLflow run": None, "Evidently report": None}

    # the plugin's report server answers logged-in users only
    assert httpx.get(f"{airflow.url}/trajectory-reports/none.html").status_code == 401
    assert airflow.http.get("/trajectory-reports/none.html").status_code == 404


@pytest.fixture(scope="module")
def browser(airflow: Airflow) -> Iterator[Any]:
    """Headless Chromium (Debian's chromium + chromium-driver) logged in with the admin's JWT."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("needs chromium and chromium-driver (scripts/install_services.sh)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(120)
    try:
        driver.get(f"{airflow.url}/api/v2/monitor/health")  # the origin, to set its cookie
        token = airflow.http.headers["Authorization"].removeprefix("Bearer ")
        driver.add_cookie({"name": "_token", "value": token, "path": "/"})
        yield driver
    finally:
        driver.quit()


def _trigger_dialog(driver: Any, url: str, dag_id: str) -> Any:
    """Open the DAG's page and its Trigger dialog; -> the dialog element."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 90)
    driver.get(f"{url}/dags/{dag_id}")
    try:
        wait.until(ec.element_to_be_clickable(
            (By.XPATH, "//button[normalize-space()='Trigger']"))).click()
        return wait.until(ec.visibility_of_element_located(
            (By.XPATH, "//*[@role='dialog' and @aria-modal='true']")))
    except Exception:
        driver.save_screenshot(f"/tmp/trigger_{dag_id}.png")
        Path(f"/tmp/trigger_{dag_id}.html").write_text(driver.page_source)
        raise


@pytest.mark.parametrize("dag_id", ["trajectory_etl", "trajectory_train", "trajectory_evaluate",
                                    "trajectory_tune", "trajectory_batch_score"])
def test_the_trigger_form_submits_its_defaults_in_a_browser(
    airflow: Airflow, browser: Any, dag_id: str
) -> None:
    """The real UI: each trigger form can be submitted untouched (batch scoring, whose two paths
    are required, cannot). The DAG is paused and "unpause on trigger" unticked, so the run the
    form creates stays queued and is deleted afterwards: nothing trains."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    airflow.wait_for_dag(dag_id)
    was_paused = airflow.api("GET", f"/dags/{dag_id}")["is_paused"]
    airflow.api("PATCH", f"/dags/{dag_id}", json={"is_paused": True})
    before = {r["dag_run_id"] for r in airflow.api("GET", f"/dags/{dag_id}/dagRuns")["dag_runs"]}
    try:
        dialog = _trigger_dialog(browser, airflow.url, dag_id)
        unpause = dialog.find_elements(
            By.XPATH, ".//*[@data-scope='checkbox' and @data-part='label'][contains(., 'on trigger')]")
        if unpause and unpause[0].get_attribute("data-state") == "checked":
            unpause[0].click()
            WebDriverWait(browser, 10).until(
                lambda _: unpause[0].get_attribute("data-state") == "unchecked")
        submit = dialog.find_elements(By.XPATH, ".//button[normalize-space()='Trigger']")[-1]
        if dag_id == "trajectory_batch_score":
            assert not submit.is_enabled()  # input_csv and output_path must be filled
            return
        assert "This field is required" not in dialog.text
        assert submit.is_enabled(), dialog.text
        submit.click()
        WebDriverWait(browser, 60).until(lambda _: {
            r["dag_run_id"] for r in airflow.api("GET", f"/dags/{dag_id}/dagRuns")["dag_runs"]
        } - before)
        runs = airflow.api("GET", f"/dags/{dag_id}/dagRuns")["dag_runs"]
        (new,) = [r for r in runs if r["dag_run_id"] not in before]
        params = airflow.api("GET", f"/dags/{dag_id}/details")["params"]
        assert set(new["conf"]) <= set(params)  # the form sends only declared params
        for name, value in new["conf"].items():
            assert value == params[name]["value"] or (value in (None, "")
                                                      and params[name]["value"] is None), name
        deleted = airflow.http.delete(f"/api/v2/dags/{dag_id}/dagRuns/{new['dag_run_id']}")
        assert deleted.status_code == 204, deleted.text
    finally:
        airflow.api("PATCH", f"/dags/{dag_id}", json={"is_paused": was_paused})
