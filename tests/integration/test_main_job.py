"""The README's main job, end to end, as a user runs it: `trajectory run` in a fresh work dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLI = Path(sys.executable).with_name("trajectory")


def run_job(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TRAJ_"))}
    env["MPLBACKEND"] = "Agg"
    return subprocess.run(
        [str(CLI), "run", "--work-dir", str(work), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )


def test_main_job_registers_and_promotes_then_reruns_idempotently(tmp_path: Path) -> None:
    work = tmp_path / "work"
    first = run_job(work, "--epochs", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout
    for expected in ("data version", "mlflow run", "promotion", "ADE K=1", "MLflow UI:"):
        assert expected in out, out
    assert "version 1" in out and "champion" in out
    from trajectory.training import TrainConfig

    assert f"({TrainConfig.load().model})" in out, "the main job trains the configured model"

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work.resolve() / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("trajectory-forecaster", "champion")
    challenger = client.get_model_version_by_alias("trajectory-forecaster", "challenger")
    # the SQLite store gives the version as int, the REST store as str
    assert str(champion.version) == str(challenger.version) == "1"
    run = client.get_run(champion.run_id)
    assert {"val_ade", "test_ade", "test_min_ade", "train_loss"} <= set(run.data.metrics)
    assert run.data.params.get("data_version") or run.data.tags.get("data_version")
    assert any("config_provenance" in key for key in run.data.params), run.data.params

    # the same input again: same data version, a second registered version, a recorded decision
    version_line = next(line for line in out.splitlines() if line.startswith("data version"))
    second = run_job(work, "--epochs", "2")
    assert second.returncode == 0, second.stderr[-3000:]
    assert version_line in second.stdout
    assert "version 2" in second.stdout


def test_main_job_reports_a_missing_data_dir_clearly(tmp_path: Path) -> None:
    result = run_job(tmp_path / "w", "--data", str(tmp_path / "nope"))
    assert result.returncode != 0
    assert "nope" in result.stderr and "Traceback" not in result.stderr
