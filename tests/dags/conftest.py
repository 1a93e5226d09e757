"""Airflow in a temporary home for the DAG tests: SQLite, this repo's DAGs and plugins.

Airflow reads its configuration once, when first imported, so the environment is set here,
when this conftest is loaded and before any test module imports airflow.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]

_HOME = Path(tempfile.mkdtemp(prefix="airflow-dag-tests-"))
os.environ.update({
    "AIRFLOW_HOME": str(_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "1",
})

SCENES = ("hotel", "zara1")  # test files of two scenes, cut to a few hundred frames each
FRAMES_PER_SCENE = 400


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """The metadata database, created once per session (needed by `dag.test()`)."""
    from airflow.utils import db

    db.initdb()
    return _HOME


@pytest.fixture(scope="session")
def eth_ucy_slice(eth_ucy_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Raw ETH/UCY text files of 2 scenes, each cut to its first FRAMES_PER_SCENE frames."""
    out = tmp_path_factory.mktemp("raw")
    for scene in SCENES:
        src = next((eth_ucy_dir / scene / "test").glob("*.txt"))
        rows = pd.read_csv(src, sep=r"\s+", header=None, names=["frame", "agent", "x", "y"])
        frames = sorted(rows["frame"].unique())[:FRAMES_PER_SCENE]
        rows[rows["frame"].isin(frames)].to_csv(out / f"{scene}.txt", sep="\t", header=False,
                                                index=False)
    return out
