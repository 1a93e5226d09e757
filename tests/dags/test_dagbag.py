"""Every DAG imports, follows the conventions, and is wired to the right assets and params."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

DAGS = REPO / "dags"
EXPECTED = {"trajectory_etl", "trajectory_train", "trajectory_batch_score", "trajectory_evaluate",
            "trajectory_tune", "trajectory_retention"}


@pytest.fixture(scope="module")
def bag():
    from airflow.dag_processing.dagbag import BundleDagBag

    return BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS)


def test_every_dag_imports_and_is_named_after_its_file(bag) -> None:
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == EXPECTED
    for dag_id in bag.dag_ids:
        assert Path(bag.dags[dag_id].fileloc).stem == dag_id


def test_every_dag_has_tags_owner_docs_and_retries(bag) -> None:
    for dag in bag.dags.values():
        assert dag.tags and "trajectory" in dag.tags, dag.dag_id
        assert dag.owner == "trajectory-ml", dag.dag_id
        assert dag.doc_md and dag.dag_id in dag.doc_md, dag.dag_id
        for task in dag.tasks:
            assert task.retries >= 2, f"{dag.dag_id}.{task.task_id}"
            assert task.retry_policy is not None, f"{dag.dag_id}.{task.task_id}"


def test_assets_connect_etl_and_evaluate_to_train(bag) -> None:
    etl, train, evaluate = (bag.dags[d] for d in
                            ("trajectory_etl", "trajectory_train", "trajectory_evaluate"))
    produced = {a.uri for t in etl.tasks + evaluate.tasks for a in t.outlets}
    assert produced == {"trajectory://windows/", "trajectory://retrain-request/"}
    scheduled_on = {a.uri for a in train.timetable.asset_condition.objects}
    assert scheduled_on == produced
    assert evaluate.timetable.expression == "0 * * * *"  # @hourly


def test_retention_runs_daily_one_purge_task(bag) -> None:
    dag = bag.dags["trajectory_retention"]
    assert dag.timetable.expression == "0 0 * * *"  # @daily
    assert [t.task_id for t in dag.tasks] == ["purge"] and dag.max_active_runs == 1


def test_train_params_are_validated(bag) -> None:
    import copy

    from airflow.sdk.exceptions import ParamValidationError

    params = bag.dags["trajectory_train"].params
    assert params["model"] == "calibrated" and params["device"] == "auto"
    for key, bad in (("model", "lstm"), ("epochs", -1), ("epochs", 10_000), ("device", "tpu")):
        with pytest.raises(ParamValidationError, match=key):
            copy.deepcopy(params)[key] = bad
    copy.deepcopy(params)["model"] = "cv"  # a valid value is accepted


def test_tune_params_are_validated_and_the_data_source_is_optional(bag) -> None:
    import copy

    from airflow.sdk.exceptions import ParamValidationError

    dag = bag.dags["trajectory_tune"]
    assert type(dag.timetable).__name__ == "NullTimetable"  # manual only
    params = dag.params
    assert params["trials"] >= 1 and params["model"] == "calibrated" and params["epochs"] == 0
    for key, bad in (("trials", 0), ("timeout", -1), ("model", "cv"), ("epochs", -1),
                     ("windows_dir", 3)):
        with pytest.raises(ParamValidationError, match=key):
            copy.deepcopy(params)[key] = bad
    # the trigger form treats a field as required unless its type admits null
    schema = params.get_param("windows_dir").schema
    assert "null" in schema["type"] and params["windows_dir"] is None
    copy.deepcopy(params)["windows_dir"] = "/data/work/windows"
    params.validate()


def test_dags_offer_exactly_the_trainable_models_configured_first() -> None:
    import importlib.util

    from trajectory.models import build_model, model_names
    from trajectory.training import TrainConfig

    path = DAGS / "trajectory_common" / "defaults.py"
    spec = importlib.util.spec_from_file_location("dag_defaults", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert sorted(module.TRAINABLE_MODELS) == [m for m in model_names() if build_model(m).trainable]
    assert module.TRAINABLE_MODELS[0] == TrainConfig.load().model


def test_plugin_registers_the_extra_links() -> None:
    from airflow import plugins_manager

    names = {link.name for link in plugins_manager.get_global_operator_extra_links()}
    assert {"MLflow run", "Evidently report"} <= names


def test_mlflow_link_points_at_the_server_or_the_configured_ui(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("trajectory_links", REPO / "plugins" /
                                                  "trajectory_links.py")
    assert spec is not None and spec.loader is not None
    links = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(links)
    served = {"run_id": "abc", "experiment_id": "3", "tracking_uri": "http://mlflow:5000/"}
    assert links.mlflow_run_url(served) == "http://mlflow:5000/#/experiments/3/runs/abc"
    monkeypatch.setenv("TRAJ_MLFLOW_UI_URL", "http://ui.local:5001")
    embedded = {"run_id": "abc", "tracking_uri": "sqlite:////tmp/mlflow.db"}
    assert links.mlflow_run_url(embedded) == "http://ui.local:5001/#/runs/abc"
