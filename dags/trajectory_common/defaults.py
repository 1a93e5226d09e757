"""Default args every trajectory DAG uses, and small readers of the task context."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule

from trajectory_common.alerts import WebhookFailureNotifier

OWNER = "trajectory-ml"
START = datetime(2024, 1, 1)

# Bad input, settings or models fail at once; anything else (MLflow, Dask, the database, the
# machine) gets the retries, [core] default_task_retry_delay apart, growing exponentially.
RETRY_POLICY = ExceptionRetryPolicy(rules=[
    RetryRule(exception=[f"trajectory.exceptions.{name}" for name in
                         ("DataError", "ConfigError", "ModelError")],
              action=RetryAction.FAIL, reason="the same input would fail again"),
])
DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    "retries": 2,
    "retry_exponential_backoff": True,
    "retry_policy": RETRY_POLICY,
    # one message to TRAJ_ALERT_WEBHOOK when a task fails for good (after its retries)
    "on_failure_callback": WebhookFailureNotifier(),
}
# the @dag(...) arguments every trajectory DAG shares: `@dag(dag_id=..., **DAG_KWARGS, ...)`
DAG_KWARGS: dict[str, Any] = {"start_date": START, "catchup": False, "default_args": DEFAULT_ARGS}

# the models the train and tune DAGs offer; the first is trajectory/training/config.json's
# (tests/dags check both against the model registry and the config)
TRAINABLE_MODELS = ["calibrated", "mixture"]

# XCom keys read by the plugin's extra links (plugins/trajectory_links.py)
MLFLOW_RUN_XCOM = "mlflow_run"
EVIDENTLY_REPORT_XCOM = "evidently_report"


def triggering_events(context: Any) -> list[Any]:
    """The asset events that started this run ([] for a manual run)."""
    return [e for evs in context["triggering_asset_events"].values() for e in evs]


def latest_event_extra(context: Any) -> dict[str, Any]:
    """The extra of the newest asset event that triggered this run ({} for a manual run)."""
    events = triggering_events(context)
    if not events:
        return {}
    return dict(max(events, key=lambda e: e.timestamp).extra or {})
