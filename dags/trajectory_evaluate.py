"""
### trajectory_evaluate: live accuracy, A/B statistics, drift and the retrain decision

Hourly by default. Reads the serving prediction log (`TRAJ_MONITOR_DATABASE_URL`, else
`SERVING_DATABASE_URL`, else `<work_dir>/serving.db`) for the window
`[end - lookback_hours, end)` where `end` is the run's logical date (now for a manual run), and:

1. joins each logged prediction to the ground truth later ETL runs brought in (same scene and
   agent at the following frames) -> live ADE/FDE per variant and model version, and each
   version's ADE / constant-velocity ADE on the same windows against its validation ratio
   (cluster-bootstrap interval; retrain after 3 degraded hours in a row);
2. A/B: reads every row since the experiment started (`experiments` table: weights and
   versions, opened when an alias moves or the admin changes weights) and runs one always-valid
   one-sided test (paired on shadow scores, else CUPED) with a planned sample size; promotion
   also needs the key ratio to match the recorded weights and equal join rates. Rollback needs
   the same test on shadow scores or a split of both versions, never before/after;
3. drift: served-input motion features vs the training split, per-feature thresholds
   calibrated on time-ordered A/A samples of the training data at the current sample size
   (>= 300 windows; speed alone or half the features; 2 evaluations in a row). Evidently writes
   the report (`TRAJ_MONITOR_DRIFT_METHOD` / `_DRIFT_THRESHOLD`); the rule is ours
   (README, "Evaluation"; error rates in benchmarks/monitoring.json);
4. records the decision (`decision.json`) and logs everything to MLflow
   (experiment `<TRAJ_EXPERIMENT_NAME>-monitoring`).

When the decision is to retrain, `request_retrain` emits an event on
`trajectory://retrain-request`, which schedules `trajectory_train`. The task links to its
MLflow run and its Evidently report (see plugins/README.md).

Params: `lookback_hours`, `windows_dir` (the ETL output used as ground truth and drift
reference; empty: `<work_dir>/windows`); any other conf key fails the run. Before the service
has logged a prediction (a fresh install) the run is skipped: "no prediction log yet".
Paused at creation, like every scheduled DAG: unpause it to start the hourly evaluation.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from trajectory_common.assets import RETRAIN
from trajectory_common.conf import checked_params
from trajectory_common.defaults import DAG_KWARGS, EVIDENTLY_REPORT_XCOM, MLFLOW_RUN_XCOM
from trajectory_common.logs import skip, task_logging


@dag(
    dag_id="trajectory_evaluate",
    **DAG_KWARGS,
    schedule="@hourly",
    max_active_runs=1,
    tags=["trajectory", "monitoring", "evidently"],
    doc_md=__doc__,
    params={
        "lookback_hours": Param(1.0, type="number", exclusiveMinimum=0, maximum=24 * 30,
                                description="length of the log window"),
        # "null" in the type makes the field optional in the trigger form
        "windows_dir": Param(None, type=["null", "string"],
                             description="ETL output; empty: <work_dir>/windows"),
    },
)
def trajectory_evaluate() -> None:
    @task
    def evaluate() -> dict[str, Any]:
        """Run the evaluation over the window; -> its summary (decision, paths, MLflow run)."""
        from datetime import UTC, datetime, timedelta
        from pathlib import Path

        from trajectory.config import get_settings
        from trajectory.monitoring.job import missing_prediction_log, run_evaluation
        from trajectory.monitoring.settings import get_monitoring_settings

        task_logging()
        context = get_current_context()
        params = checked_params(context)
        settings = get_settings()
        if reason := missing_prediction_log(settings, get_monitoring_settings()):
            skip(reason)
        end = context.get("logical_date") or datetime.now(UTC)
        start = end - timedelta(hours=params["lookback_hours"])
        windows_dir = Path(params["windows_dir"] or settings.windows_dir)
        result = run_evaluation(settings, get_monitoring_settings(), start, end, windows_dir)
        summary = result.summary() | {"windows_dir": str(windows_dir.resolve())}
        ti = context["ti"]
        ti.xcom_push(key=MLFLOW_RUN_XCOM, value={
            "run_id": result.run_id, "experiment_id": result.experiment_id,
            "tracking_uri": settings.tracking_uri(),
        })
        if result.drift is not None and result.drift.html_path:
            report = Path(result.drift.html_path).resolve()
            ti.xcom_push(key=EVIDENTLY_REPORT_XCOM, value=str(
                report.relative_to((settings.work_dir / "monitoring").resolve())))
        return summary

    @task(outlets=[RETRAIN])
    def request_retrain(summary: dict[str, Any], *, outlet_events: Any = None) -> list[str]:
        """Emit the retraining request (skipped when the decision is not to retrain)."""
        if not summary["retrain"]:
            skip("no retraining: " + "; ".join(summary["reasons"]))
        outlet_events[RETRAIN].extra = {
            "windows_dir": summary["windows_dir"],
            "reasons": summary["reasons"],
            "evaluation_run_id": summary["run_id"],
            "decision_path": summary["decision_path"],
        }
        return summary["reasons"]

    request_retrain(evaluate())  # type: ignore[arg-type]  # an XComArg, resolved at run time


trajectory_evaluate()
