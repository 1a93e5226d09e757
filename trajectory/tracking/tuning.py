"""Nested runs for a hyperparameter search: one parent run per search, one child per trial.

The runs are made with the client and named by id (`mlflow.parentRunId` on each child), not
through MLflow's active-run stack, so worker processes can add trials under the same parent.
The search's runs go to the experiment `<experiment_name>-tuning`, apart from the training runs
that the promotion gate and model cards read.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from trajectory.config import Settings
from trajectory.tracking.client import configure, tracking_errors
from trajectory.tracking.runs import flatten

TUNING_SUFFIX = "-tuning"
FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"


def tuning_settings(settings: Settings) -> Settings:
    """The same settings with the search's experiment: `<experiment_name>-tuning`."""
    name = settings.experiment_name
    if not name.endswith(TUNING_SUFFIX):
        name += TUNING_SUFFIX
    return settings.model_copy(update={"experiment_name": name})


class SearchTracker:
    """Creates and finishes the parent and trial runs of one search in MLflow."""

    def __init__(self, settings: Settings) -> None:
        self.settings = tuning_settings(settings)
        self.experiment_id = configure(self.settings)
        self.client = MlflowClient(tracking_uri=self.settings.tracking_uri())

    @property
    def experiment_name(self) -> str:
        return self.settings.experiment_name

    def start_parent(
        self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]
    ) -> str:
        """A running parent run with the search's settings as params; -> run id."""
        with tracking_errors("starting the search run"):
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=dict(tags))
            self._log(run.info.run_id, params=params)
        return run.info.run_id

    def start_trial(
        self, parent_run_id: str, run_name: str, params: Mapping[str, Any],
        tags: Mapping[str, str],
    ) -> str:
        """A running child of `parent_run_id` with the trial's drawn values; -> run id."""
        with tracking_errors("starting a trial run"):
            run = self.client.create_run(
                self.experiment_id,
                run_name=run_name,
                tags=dict(tags) | {MLFLOW_PARENT_RUN_ID: parent_run_id},
            )
            self._log(run.info.run_id, params=params)
        return run.info.run_id

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        with tracking_errors("logging trial metrics"):
            self._log(run_id, metrics=metrics, step=step)

    def finish(
        self,
        run_id: str,
        status: str = FINISHED,
        *,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        documents: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        """Log the last values and JSON documents (artifact path -> dict), then end the run."""
        with tracking_errors("finishing a search run"):
            self._log(run_id, metrics=metrics, params=params, tags=tags)
            for path, document in (documents or {}).items():
                self.client.log_dict(run_id, document, path)
            self.client.set_terminated(run_id, status=status)

    def _log(
        self,
        run_id: str,
        *,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        step: int = 0,
    ) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, step) for k, v in (metrics or {}).items()],
            params=[Param(k, v) for k, v in flatten(params or {}).items()],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )
