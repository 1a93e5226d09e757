"""The assets that connect the DAGs.

    trajectory_etl       --(WINDOWS: extra data_version, windows_dir)--> trajectory_train
    trajectory_evaluate  --(RETRAIN: extra reasons, windows_dir, run)-->  trajectory_train
"""

from __future__ import annotations

from airflow.sdk import Asset

WINDOWS = Asset(name="trajectory_windows", uri="trajectory://windows")
RETRAIN = Asset(name="trajectory_retrain_request", uri="trajectory://retrain-request")
