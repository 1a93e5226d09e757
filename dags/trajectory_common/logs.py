"""Task logs a user can follow: this project's and MLflow's INFO lines, at their own level.

Airflow gives the task's stdlib logging one handler at `[logging] logging_level` (WARNING in
this project's deployments, to keep the components quiet), so the per-epoch lines of
`trajectory.training` never reached the task log. MLflow and Dask, left alone, hang their own
handler on stderr, and MLflow prints notices ("Successfully registered model") there too; the
task supervisor records stderr line by line as ERROR.
"""

from __future__ import annotations

import logging
import os
from typing import NoReturn


def adopt_logger(name: str, level: int) -> None:
    """Send logger `name` at `level` through Airflow's handler instead of its own stderr one."""
    logger = logging.getLogger(name)
    logger.setLevel(level)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True


def task_logging(*, uses_mlflow: bool = True) -> None:
    """Called first in every task body: INFO for `trajectory` (and `mlflow`); every other
    logger keeps the configured level (its own level still filters it)."""
    adopt_logger("trajectory", logging.INFO)
    for handler in logging.getLogger().handlers:
        if handler.level > logging.INFO:
            handler.setLevel(logging.INFO)
    if not uses_mlflow:
        return
    os.environ["MLFLOW_CONFIGURE_LOGGING"] = "false"  # read when mlflow is first imported
    from mlflow.utils import logging_utils

    adopt_logger("mlflow", logging.INFO)  # in case it was imported, and configured, before
    # MLflow's notices (`eprint`: "Successfully registered model ...") print to this stream,
    # which writes to stderr; MLflow switches it off and on itself, so it is replaced, not muted
    if not isinstance(logging_utils.MLFLOW_LOGGING_STREAM, _LoggerStream):
        stream = _LoggerStream(logging.getLogger("mlflow"))  # duck-typed: write, flush, enabled
        logging_utils.MLFLOW_LOGGING_STREAM = stream  # type: ignore[assignment]


class _LoggerStream:
    """A text stream that logs each complete line at INFO; `enabled` as MLflow's stream has."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger, self.enabled, self._pending = logger, True, ""

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            if self.enabled and line.strip():
                self.logger.info(line.rstrip())
        return len(text)

    def flush(self) -> None:
        pass


def skip(reason: str) -> NoReturn:
    """Skip the task, saying why in its log (Airflow logs a skip's reason at INFO only, under
    its own logger, which [logging] logging_level WARNING hides)."""
    from airflow.sdk.exceptions import AirflowSkipException

    task_logging(uses_mlflow=False)  # tasks too small to have called it
    logging.getLogger("trajectory.dags").info("skipped: %s", reason)
    raise AirflowSkipException(reason)
