"""What a new user meets in the Airflow UI, checked through what the framework itself hands over:
real task runs (`dag.test()`) writing real XCom rows, the REST route that serves a task's extra
links, the params as the trigger form reads them, a fresh install with nothing served yet."""

from __future__ import annotations

import copy
import json
import os
import socket
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
# the only fields a user must fill before "Trigger" is enabled: batch scoring needs its files
REQUIRED_FIELDS = {"trajectory_batch_score": {"input_csv", "output_path"}}
# manual or asset-triggered: active from the start, so a trigger runs and the Asset chain flows
ACTIVE_AT_CREATION = {"trajectory_etl", "trajectory_train", "trajectory_batch_score",
                      "trajectory_tune"}


@pytest.fixture(scope="module")
def bag(airflow_db: Path):
    from airflow.dag_processing.dagbag import BundleDagBag

    return BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS)


@pytest.fixture
def fresh_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A work dir where nothing ever ran: no windows, no MLflow, no serving database."""
    from trajectory.config import get_settings

    for name in [n for n in os.environ if n.startswith(("TRAJ_", "MLFLOW_", "SERVING_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TRAJ_WORK_DIR", str(tmp_path / "work"))
    get_settings.cache_clear()
    yield tmp_path / "work"
    get_settings.cache_clear()


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def tries(dag_run) -> dict[str, int]:
    return {ti.task_id: ti.try_number for ti in dag_run.get_task_instances()}


def rest_links(dag_run, task_id: str) -> dict[str, str | None]:
    """`GET /api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}/links`: the route itself,
    called with the API server's own DAG bag and session."""
    from airflow.api_fastapi.core_api.routes.public.extra_links import get_extra_links
    from airflow.models.dagbag import DBDagBag
    from airflow.utils.session import create_session

    with create_session() as session:
        response = get_extra_links(dag_run.dag_id, dag_run.run_id, task_id, session, DBDagBag())
    return dict(response.extra_links)


# -- item 5: extra links read the XCom rows a real task wrote ---------------------------------

PROBE_DAG = '''
from airflow.sdk import dag, get_current_context, task


@dag(dag_id="links_probe", schedule=None)
def links_probe():
    @task
    def evaluate():
        """Push what trajectory_evaluate pushes (dags/trajectory_evaluate.py)."""
        ti = get_current_context()["ti"]
        ti.xcom_push(key="mlflow_run", value={
            "run_id": "0f3a", "experiment_id": "7", "tracking_uri": "http://mlflow:5000"})
        ti.xcom_push(key="evidently_report", value="20250101T120000/drift.html")

    @task
    def nothing():
        pass

    evaluate() >> nothing()


links_probe()
'''


def test_extra_links_read_the_xcom_rows_a_real_task_run_wrote(airflow_db: Path,
                                                              tmp_path: Path) -> None:
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    folder = tmp_path / "probe_dags"
    folder.mkdir()
    (folder / "links_probe.py").write_text(textwrap.dedent(PROBE_DAG))
    probe = BundleDagBag(dag_folder=str(folder), bundle_path=folder, bundle_name="dags-folder")
    sync_bag_to_db(probe, "dags-folder", None)  # serialized, as the dag-processor would
    run = probe.dags["links_probe"].test()
    assert states(run) == {"evaluate": "success", "nothing": "success"}
    assert rest_links(run, "evaluate") == {
        "MLflow run": "http://mlflow:5000/#/experiments/7/runs/0f3a",
        "Evidently report": "/trajectory-reports/20250101T120000/drift.html",
    }
    assert rest_links(run, "nothing") == {"MLflow run": None, "Evidently report": None}


# -- item 6: the trigger form can be submitted with its defaults ------------------------------

def form_required(schema: dict[str, Any]) -> bool:
    """The trigger form's rule (airflow/ui FlexibleForm): a field is required unless its type
    admits null; a required field left empty (null, or "" which the form sends as null) blocks
    the Trigger button."""
    kind = schema.get("type")
    return bool(kind) and not (isinstance(kind, list) and "null" in kind)


def test_every_trigger_form_can_be_submitted_with_its_defaults(bag) -> None:
    for dag_id, dag in bag.dags.items():
        params = dag.params
        fields = {name: params.get_param(name) for name in params}
        blocking = {name for name, p in fields.items() if form_required(p.schema)
                    and (not p.has_value or p.value in (None, ""))}
        assert blocking == REQUIRED_FIELDS.get(dag_id, set()), dag_id
        if dag_id in REQUIRED_FIELDS:
            continue
        params.validate()  # the defaults as they are
        # what the form sends for each optional field left empty
        empty = copy.deepcopy(params)
        for name in params:
            if "null" in (params.get_param(name).schema.get("type") or []):
                empty[name] = None
        empty.validate()


# -- item 7: a fresh install has no prediction log yet: skip, do not fail ---------------------

def test_evaluate_on_a_fresh_install_skips_once_with_the_reason(bag, fresh_work: Path) -> None:
    from trajectory.config import get_settings
    from trajectory.monitoring.job import missing_prediction_log
    from trajectory.monitoring.settings import get_monitoring_settings

    run = bag.dags["trajectory_evaluate"].test(run_conf={"lookback_hours": 1.0})
    assert states(run) == {"evaluate": "skipped", "request_retrain": "skipped"}
    assert tries(run)["evaluate"] == 1  # not retried
    assert not (fresh_work / "serving.db").exists()  # looking did not create a database
    # the skip's reason (the task log shows it at INFO)
    reason = missing_prediction_log(get_settings(), get_monitoring_settings())
    assert reason and reason.startswith("no prediction log yet") and "serving.db" in reason
    fresh_work.mkdir(parents=True, exist_ok=True)
    (fresh_work / "serving.db").touch()  # a database the service has not written to yet
    reason = missing_prediction_log(get_settings(), get_monitoring_settings())
    assert reason and "no table 'predictions'" in reason


# -- item 8: what a trigger needs is unpaused; scheduled jobs wait for the operator -----------

def test_manual_and_asset_triggered_dags_are_active_from_the_start(bag) -> None:
    for dag_id, dag in bag.dags.items():
        expected = False if dag_id in ACTIVE_AT_CREATION else None  # None: [core] default
        assert dag.is_paused_upon_creation is expected, dag_id


def test_readme_says_which_dags_start_paused_and_how_to_unpause() -> None:
    airflow_section = (REPO / "README.md").read_text().split("## Airflow", 1)[1].split("\n## ")[0]
    assert "paused" in airflow_section
    assert '"is_paused": false' in airflow_section  # the REST call that unpauses
    for dag_id in ACTIVE_AT_CREATION:
        assert dag_id in airflow_section


# -- item 10: settings for the Asset chain; unknown conf keys are refused ---------------------

def test_a_typo_in_the_run_conf_fails_at_once_naming_the_key(
    bag, fresh_work: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = bag.dags["trajectory_train"].test(run_conf={"model": "cv", "epoch": 1})
    assert states(run) == {"train": "failed"}
    assert tries(run)["train"] == 1  # a ConfigError: retrying would fail the same way
    assert "unknown conf key 'epoch'" in "".join(capfd.readouterr())  # the task log


def _train_module():
    import importlib.util
    import sys

    sys.path.insert(0, str(DAGS))
    try:
        spec = importlib.util.spec_from_file_location("train_conf_probe",
                                                      DAGS / "trajectory_common" / "conf.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(DAGS))
    return module


def test_asset_triggered_training_takes_its_settings_from_the_variable(bag) -> None:
    from trajectory.exceptions import ConfigError

    conf = _train_module()
    declared = bag.dags["trajectory_train"].params
    defaults = {name: declared[name] for name in declared}
    settings = conf.chain_params(declared, json.dumps({"model": "cv", "epochs": 2}))
    assert settings == defaults | {"model": "cv", "epochs": 2}
    assert conf.chain_params(declared, None) == defaults  # no Variable: the defaults
    with pytest.raises(ConfigError, match="'epoch'.*trajectory_train_conf"):
        conf.chain_params(declared, json.dumps({"epoch": 2}))
    with pytest.raises(ConfigError, match="epochs"):
        conf.chain_params(declared, json.dumps({"epochs": -3}))
    with pytest.raises(ConfigError, match="JSON object"):
        conf.chain_params(declared, "[1, 2]")


# -- item 11: the ETL's in-task Dask cluster never fights over the dashboard port -------------

def test_the_task_dask_cluster_takes_no_fixed_dashboard_port() -> None:
    import sys
    from types import SimpleNamespace

    sys.path.insert(0, str(DAGS))
    try:
        from trajectory_common.dask import task_dask_client
    finally:
        sys.path.remove(str(DAGS))
    with socket.socket() as holder:  # 8787 busy, as when the scheduler runs a second ETL
        try:
            holder.bind(("", 8787))
            holder.listen()
        except OSError:
            pass  # already held by someone else: the same situation
        settings = SimpleNamespace(dask_address=None, dask_workers=1, dask_threads_per_worker=1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with task_dask_client(settings) as client:
                assert client.submit(sum, [1, 2]).result() == 3
    assert not [w for w in caught if "8787" in str(w.message)]
