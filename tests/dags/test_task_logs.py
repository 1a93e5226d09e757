"""What a task log shows: per-epoch progress lines at INFO as they happen, no progress bar dumped
on stderr (which the task supervisor records as ERROR), MLflow's lines at their own level.
The real thing, in a running Airflow, is checked by tests/integration/test_airflow_api.py."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture
def airflow_like_logging() -> Iterator[io.StringIO]:
    """The stdlib setup Airflow gives a task: one root handler at [logging] logging_level
    (WARNING here, as in this project's deployments). Restored afterwards."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    saved_loggers = {name: (logging.getLogger(name).level, logging.getLogger(name).propagate,
                            list(logging.getLogger(name).handlers))
                     for name in ("trajectory", "mlflow")}
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root.handlers, root.level = [handler], logging.WARNING
    try:
        yield stream
    finally:
        root.level, root.handlers = saved[0], saved[1]
        for name, (level, propagate, handlers) in saved_loggers.items():
            logger = logging.getLogger(name)
            logger.level, logger.propagate, logger.handlers = level, propagate, handlers


def _task_logging():
    sys.path.insert(0, str(DAGS))
    try:
        from trajectory_common.logs import task_logging
    finally:
        sys.path.remove(str(DAGS))
    return task_logging


def test_task_logging_shows_project_and_mlflow_info_lines_at_info(
    airflow_like_logging: io.StringIO,
) -> None:
    import mlflow  # noqa: F401  # imported before the task starts, with its own stderr handler
    from mlflow.utils import logging_utils

    saved_stream = logging_utils.MLFLOW_LOGGING_STREAM
    try:
        _task_logging()()
        logging.getLogger("trajectory.training.train").info("epoch 1 loss 0.5")
        logging.getLogger("mlflow.tracking").info("registered model version 1")
        logging.getLogger("some.library").info("chatter")  # other loggers keep the level
        # MLflow's notices go through print(file=stream): after its own off/on, still logged
        logging_utils.disable_logging()
        logging_utils.eprint("not shown while MLflow silences its events")
        logging_utils.enable_logging()
        logging_utils.eprint("Successfully registered model 'm'.")
    finally:
        logging_utils.MLFLOW_LOGGING_STREAM = saved_stream
    lines = airflow_like_logging.getvalue().splitlines()
    assert lines == ["INFO trajectory.training.train epoch 1 loss 0.5",
                     "INFO mlflow.tracking registered model version 1",
                     "INFO mlflow Successfully registered model 'm'."]
    assert not logging.getLogger("mlflow").handlers  # nothing of its own on stderr


def test_training_draws_no_progress_bar_when_stderr_is_not_a_terminal(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from trajectory.data.windows import Windows
    from trajectory.training import TrainConfig, train

    rng = np.random.default_rng(0)

    def windows(n: int) -> Windows:
        pos = rng.normal(0, 1, (n, 20, 2)).cumsum(1).astype(np.float32)  # (N, 20, 2)
        return Windows(obs=pos[:, :8], nbr=np.full((n, 1, 8, 2), np.nan, np.float32),
                       scene=np.full(n, "s", object), agent_id=np.arange(n),
                       start_frame=np.zeros(n, np.int64), fut=pos[:, 8:])

    config = TrainConfig(model="mixture", model_args={"modes": 2, "hidden": 8, "heads": 1},
                         epochs=2, batch_size=16, device="cpu", num_threads=1, seed=0)
    train(windows(32), windows(16), config, tmp_path)  # progress left at its default
    assert "epoch" not in capfd.readouterr().err  # a task's stderr is a pipe, not a terminal
