"""
### trajectory_evaluate: live accuracy, A/B statistics, drift and the retrain decision

Hourly by default. Reads the serving prediction log (`TRAJ_MONITOR_DATABASE_URL`, else
`SERVING_DATABASE_URL`, else `<work_dir>/serving.db`) for the window
`[end - lookback_hours, end)` where `end` is the run's logical date (now for a manual run), and:

1. joins each logged prediction to the ground truth later ETL runs brought in (same scene and
   agent at the following frames) -> live ADE/FDE per variant and model version;
2. compares champion and challenger per routing key (Welch t, Mann-Whitney U, Cohen's d,
   rank-biserial, confidence interval) and checks the sample ratio against the A/B weights;
3. builds the Evidently drift report (served-input motion features vs the training split,
   method and threshold from `TRAJ_MONITOR_DRIFT_METHOD` / `_DRIFT_THRESHOLD`);
4. records the decision (`decision.json`) and logs everything to MLflow
   (experiment `<TRAJ_EXPERIMENT_NAME>-monitoring`).

When the decision is to retrain, `request_retrain` emits an event on
`trajectory://retrain-request`, which schedules `trajectory_train`. The task links to its
MLflow run and its Evidently report (see plugins/README.md).

Params: `lookback_hours`, `windows_dir` (the ETL output used as ground truth and drift
reference; default `<work_dir>/windows`).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, get_current_context, task
from trajectory_common.assets import RETRAIN
from trajectory_common.defaults import DAG_KWARGS, EVIDENTLY_REPORT_XCOM, MLFLOW_RUN_XCOM


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
        "windows_dir": Param("", type="string", description="ETL output; empty: the default"),
    },
)
def trajectory_evaluate() -> None:
    @task
    def evaluate() -> dict[str, Any]:
        """Run the evaluation over the window; -> its summary (decision, paths, MLflow run)."""
        from datetime import UTC, datetime, timedelta
        from pathlib import Path

        from trajectory.config import get_settings
        from trajectory.monitoring.job import run_evaluation
        from trajectory.monitoring.settings import get_monitoring_settings

        context = get_current_context()
        params = context["params"]
        settings = get_settings()
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
        from airflow.sdk.exceptions import AirflowSkipException

        if not summary["retrain"]:
            raise AirflowSkipException("no retraining: " + "; ".join(summary["reasons"]))
        outlet_events[RETRAIN].extra = {
            "windows_dir": summary["windows_dir"],
            "reasons": summary["reasons"],
            "evaluation_run_id": summary["run_id"],
            "decision_path": summary["decision_path"],
        }
        return summary["reasons"]

    request_retrain(evaluate())  # type: ignore[arg-type]  # an XComArg, resolved at run time


trajectory_evaluate()
