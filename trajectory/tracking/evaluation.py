"""MLflow side of the live evaluation job: one run per evaluation, registry reads and alias moves.

Evaluation runs go to the experiment `<experiment_name>-monitoring`, so training runs stay
comparable in their own experiment.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException

from trajectory.config import Settings
from trajectory.tracking.client import configure, connect, tracking_errors
from trajectory.tracking.registry import move_alias

log = logging.getLogger(__name__)

MONITORING_SUFFIX = "-monitoring"


def log_evaluation(
    settings: Settings,
    *,
    metrics: Mapping[str, float],
    params: Mapping[str, Any],
    artifacts: Iterable[Path],
    tags: Mapping[str, str] | None = None,
    run_name: str | None = None,
) -> tuple[str, str]:
    """Log one evaluation: metrics, params, files under `evaluation/`; -> (run id, experiment id)."""
    monitoring = settings.model_copy(
        update={"experiment_name": settings.experiment_name + MONITORING_SUFFIX}
    )
    experiment_id = configure(monitoring)
    with (
        tracking_errors("logging the evaluation run"),
        mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run,
    ):
        run_id = run.info.run_id
        mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
        mlflow.set_tags({"job": "evaluate", **(tags or {})})
        mlflow.log_metrics(dict(metrics))
        for path in artifacts:
            mlflow.log_artifact(str(path), "evaluation")
    log.info("logged evaluation run %s", run_id)
    return run_id, experiment_id


def reference_ade(settings: Settings, versions: Iterable[int]) -> dict[int, float]:
    """Validation ADE (tag `val_ade` set at registration) of each registered version that has it."""
    client = connect(settings)
    out: dict[int, float] = {}
    with tracking_errors(f"reading versions of {settings.model_name!r}"):
        for version in versions:
            try:
                tags = client.get_model_version(settings.model_name, str(version)).tags
            except MlflowException as err:
                if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                    continue
                raise
            if "val_ade" in tags:
                out[int(version)] = float(tags["val_ade"])
    return out


def set_alias(settings: Settings, alias: str, version: int, reason: str) -> None:
    """Point `alias` at `version` and record why on that version (tag `monitoring.<alias>`)."""
    move_alias(settings, alias, version, {f"monitoring.{alias}": reason})
    log.info("%r @%s -> v%d: %s", settings.model_name, alias, version, reason)
