"""Airflow plugin: task buttons to a task's MLflow run and its Evidently report.

Tasks record what to link to in XCom (keys `mlflow_run` and `evidently_report`, see
dags/trajectory_common/defaults.py); the links read those XComs on the API server, so a task
without them shows a disabled button. Evidently reports are served by a small FastAPI app
mounted by this plugin at `/trajectory-reports/`, for logged-in users only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse

MLFLOW_RUN_XCOM = "mlflow_run"
EVIDENTLY_REPORT_XCOM = "evidently_report"
REPORTS_PREFIX = "/trajectory-reports"
DEFAULT_MLFLOW_UI = "http://localhost:5000"


def _xcom(ti_key: Any, key: str) -> Any:
    """The task instance's XCom `key` as the task pushed it; None when absent (API server side).

    The task SDK stores the value itself in the JSON column, so the row arrives decoded: decoding
    it again turned a report path such as `20250101T120000/drift.html` into `Extra data` (500).
    """
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.execute(
            XComModel.get_many(
                key=key, run_id=ti_key.run_id, dag_ids=ti_key.dag_id,
                task_ids=ti_key.task_id, map_indexes=ti_key.map_index,
            ).with_only_columns(XComModel.value)
        ).first()
    return None if row is None else row.value


def mlflow_run_url(run: dict[str, Any]) -> str:
    """The MLflow UI page of a run: the tracking server itself, else `TRAJ_MLFLOW_UI_URL`."""
    uri = str(run.get("tracking_uri") or "")
    base = uri if uri.startswith(("http://", "https://")) else os.environ.get(
        "TRAJ_MLFLOW_UI_URL", DEFAULT_MLFLOW_UI)
    run_id = quote(str(run["run_id"]))
    if run.get("experiment_id"):
        return f"{base.rstrip('/')}/#/experiments/{quote(str(run['experiment_id']))}/runs/{run_id}"
    return f"{base.rstrip('/')}/#/runs/{run_id}"


class MLflowRunLink(BaseOperatorLink):
    """The MLflow run a task logged (training or evaluation)."""

    name = "MLflow run"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        run = _xcom(ti_key, MLFLOW_RUN_XCOM)
        return mlflow_run_url(run) if isinstance(run, dict) and run.get("run_id") else ""


class EvidentlyReportLink(BaseOperatorLink):
    """The Evidently drift report (HTML) a task wrote, served by this plugin."""

    name = "Evidently report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        relative = _xcom(ti_key, EVIDENTLY_REPORT_XCOM)
        return f"{REPORTS_PREFIX}/{quote(relative)}" if isinstance(relative, str) and relative else ""


def reports_root() -> Path:
    """Where evaluation reports are written: `<TRAJ_WORK_DIR>/monitoring`, read per request."""
    from trajectory.config import Settings

    return (Settings().work_dir / "monitoring").resolve()


async def _require_user(request: Request) -> None:
    """A valid Airflow JWT: bearer header, else the UI's session cookie (401/403 otherwise)."""
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.core_api.security import resolve_user_from_token

    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else None
    await resolve_user_from_token(token or request.cookies.get(COOKIE_NAME_JWT_TOKEN))


def _make_reports_app() -> FastAPI:
    app = FastAPI(title="Trajectory reports", description="Evidently reports of trajectory_evaluate")

    @app.get("/{path:path}", dependencies=[Depends(_require_user)])
    def report(path: str) -> FileResponse:
        root = reports_root()
        target = (root / path).resolve()
        if not target.is_relative_to(root) or target.suffix not in {".html", ".json"}:
            raise HTTPException(404, "no such report")
        if not target.is_file():
            raise HTTPException(404, f"report {path} not found under {root}")
        return FileResponse(target)

    return app


class TrajectoryPlugin(AirflowPlugin):
    """Extra links on every task, and the report server they point to."""

    name = "trajectory"
    # AirflowPlugin declares these as instance attributes, so no ClassVar
    global_operator_extra_links = [MLflowRunLink(), EvidentlyReportLink()]  # noqa: RUF012
    fastapi_apps = [  # noqa: RUF012
        {"app": _make_reports_app(), "url_prefix": REPORTS_PREFIX, "name": "Trajectory reports"}
    ]
