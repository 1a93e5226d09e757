"""The failure notifier every trajectory task carries (`on_failure_callback` in defaults.py).

Airflow calls `on_failure_callback` once, when a task fails for good: after its retries, or at
once for an error the retry policy fails outright; a try that will be retried calls
`on_retry_callback` instead, so an operator hears of a failure once, not once per try. The
message goes to TRAJ_ALERT_WEBHOOK through trajectory.alerting, which never raises.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseNotifier


class WebhookFailureNotifier(BaseNotifier):
    """Posts `<dag>.<task> failed` with the run, try, error and log link to the webhook."""

    def notify(self, context: Any) -> None:
        from trajectory.alerting import notify_task_failure  # not at DAG parse time

        ti = context.get("ti") or context.get("task_instance")
        if ti is None:  # a DAG-level callback: no task to name
            return
        error = context.get("exception")
        notify_task_failure(
            ti.dag_id, ti.task_id, run_id=ti.run_id, try_number=ti.try_number,
            error=error if isinstance(error, BaseException) else None,
            log_url=getattr(ti, "log_url", None),
        )
