"""
### trajectory_retention: delete personal data past its retention period (docs/privacy.md)

Daily. Runs `trajectory.privacy.retention.purge`, the same function as
`trajectory privacy purge`, which deletes in batches:

- prediction-log and quarantine rows older than `SERVING_LOG_RETENTION_DAYS` (default 30) in the
  database of `TRAJ_MONITOR_DATABASE_URL` / `SERVING_DATABASE_URL`, and spill-file rows as old;
- finished batch jobs (row and folder) older than `SERVING_BATCH_RETENTION_S`;
- evaluation folders under `<work_dir>/monitoring` older than `TRAJ_MONITOR_RETENTION_DAYS`
  (default 90).

Each run writes one `privacy-purge` row, with the counts per place, into the service's
`admin_audit` table (outcome `failed` when a step raised; the task then retries). Re-running is
harmless: what is already gone is not counted again.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task
from trajectory_common.defaults import DAG_KWARGS


@dag(
    dag_id="trajectory_retention",
    **DAG_KWARGS,
    schedule="@daily",
    max_active_runs=1,
    tags=["trajectory", "privacy", "retention"],
    doc_md=__doc__,
)
def trajectory_retention() -> None:
    @task
    def purge() -> dict[str, Any]:
        """Delete what is past retention; -> the counts and cutoffs (also in admin_audit)."""
        from trajectory.config import get_settings
        from trajectory.privacy.retention import purge as run_purge
        from trajectory.privacy.settings import get_privacy_settings

        return run_purge(get_settings().work_dir, get_privacy_settings(), source="airflow")

    purge()


trajectory_retention()
