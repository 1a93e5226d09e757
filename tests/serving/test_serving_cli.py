"""`trajectory score`: the CLI face of score_csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import typer
from test_serving_batch import crowd_csv, windows_expected
from typer.testing import CliRunner

from serving.cli import score


def test_score_command_writes_the_scored_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVING_WORK_DIR", str(tmp_path))
    app = typer.Typer()
    app.command()(score)
    app.command("noop")(lambda: None)  # two commands: typer keeps `score` as a sub-command
    src = crowd_csv(tmp_path / "in.csv")
    out = tmp_path / "scored.csv"
    result = CliRunner().invoke(app, ["score", str(src), "-o", str(out), "--model", "builtin:cv"])
    assert result.exit_code == 0, result.output
    assert f"{windows_expected()} windows scored with cv" in result.output
    assert len(pd.read_csv(out)) == windows_expected() * 12
