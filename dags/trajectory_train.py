"""
### trajectory_train: train, log to MLflow, register the challenger, run the promotion gate

Scheduled on either asset: a new data version from `trajectory_etl` (`trajectory://windows`)
or a retraining request from `trajectory_evaluate` (`trajectory://retrain-request`). It can also
be triggered from the UI ("Trigger DAG w/ config") or the REST API with validated params:

| param | values |
|---|---|
| `model` | `calibrated` (default, the configured model), `mixture` (v1) or `cv` (Constant Velocity) |
| `epochs` | 1 to 500; 0 (default) = `trajectory/training/config.json`, the one training configuration |
| `device` | `auto` (CUDA when the worker has a GPU), `cpu`, `cuda` |
| `windows_dir` | an ETL output folder; empty: the triggering event's, else `<work_dir>/windows` |
| `promote` | run the promotion gate after registering |

Any other conf key fails the run. A run started by an asset event has no form: it takes the
Airflow Variable `trajectory_train_conf`, a JSON object of these params (e.g.
`{"model": "cv", "epochs": 5}`; unknown keys or bad values fail the run), over the defaults
above; without the Variable it trains the full configuration. Not paused at creation, so the
Asset chain runs. Training logs one line per epoch to the task log as it goes.

Calls `trajectory.pipeline.train_and_register`; the MLflow run is linked from the task
("MLflow run" button, see plugins/README.md).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from trajectory_common.assets import RETRAIN, WINDOWS
from trajectory_common.conf import TRAIN_CONF_VARIABLE, chain_params, chain_variable, checked_params
from trajectory_common.defaults import (
    DAG_KWARGS,
    MLFLOW_RUN_XCOM,
    TRAINABLE_MODELS,
    latest_event_extra,
    triggering_events,
)
from trajectory_common.logs import task_logging


@dag(
    dag_id="trajectory_train",
    **DAG_KWARGS,
    schedule=(WINDOWS | RETRAIN),
    max_active_runs=1,
    is_paused_upon_creation=False,
    tags=["trajectory", "training", "mlflow"],
    doc_md=__doc__,
    params={
        "model": Param(TRAINABLE_MODELS[0], enum=[*TRAINABLE_MODELS, "cv"],
                       description="model to train"),
        "epochs": Param(0, type="integer", minimum=0, maximum=500,
                        description="max epochs; 0 = the training configuration's"),
        "device": Param("auto", enum=["auto", "cpu", "cuda"], description="training device"),
        # "null" in the type makes the field optional in the trigger form
        "windows_dir": Param(None, type=["null", "string"],
                             description="ETL output; empty: the event's, else <work_dir>/windows"),
        "promote": Param(True, type="boolean", description="run the promotion gate"),
    },
)
def trajectory_train() -> None:
    @task
    def train() -> dict[str, Any]:
        """Train on the resolved windows, register as challenger, maybe promote; -> summary."""
        from pathlib import Path

        from trajectory.config import get_settings
        from trajectory.pipeline import train_and_register

        task_logging()
        context = get_current_context()
        params = checked_params(context)
        trigger = latest_event_extra(context)
        source = "run conf"
        if triggering_events(context):  # no form and no conf: the chain's settings
            raw = chain_variable()
            params = chain_params(context["dag"].params, raw)
            source = f"Variable {TRAIN_CONF_VARIABLE}" if raw is not None else "defaults"
        settings = get_settings().model_copy(update={"device": params["device"]})
        windows_dir = Path(params["windows_dir"] or trigger.get("windows_dir")
                           or settings.windows_dir)
        result = train_and_register(settings, windows_dir, model=params["model"],
                                    epochs=params["epochs"], promote=params["promote"])
        context["ti"].xcom_push(key=MLFLOW_RUN_XCOM, value={
            "run_id": result.run_id, "tracking_uri": settings.tracking_uri(),
            "experiment_name": settings.experiment_name,
        })
        decision = result.decision
        return {
            "run_id": result.run_id,
            "model_name": settings.model_name,
            "version": result.version,
            "data_version": result.data_version,
            "windows_dir": str(windows_dir),
            "trigger": trigger,
            "settings": {key: params[key] for key in ("model", "epochs", "device", "promote")}
            | {"source": source},
            "val": result.metrics["val"],
            "test": result.metrics["test"],
            "promoted": bool(decision.promoted) if decision is not None else None,
            "promotion": decision.reason if decision is not None else "gate not run",
        }

    train()


trajectory_train()
