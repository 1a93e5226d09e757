"""`trajectory score`: the CLI face of score_csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_serving_batch import crowd_csv, windows_expected
from typer.testing import CliRunner, Result

from trajectory.cli import app


def test_score_command_writes_the_scored_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVING_WORK_DIR", str(tmp_path))
    src = crowd_csv(tmp_path / "in.csv")
    out = tmp_path / "scored.csv"
    result = CliRunner().invoke(app, ["score", str(src), "-o", str(out), "--model", "builtin:cv"])
    assert result.exit_code == 0, result.output
    assert f"{windows_expected()} windows scored with cv" in result.output
    assert len(pd.read_csv(out)) == windows_expected() * 12


def test_serve_and_score_are_commands_of_the_main_cli() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert " serve " in result.output and " score " in result.output


def test_score_names_the_missing_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVING_WORK_DIR", str(tmp_path))
    missing = tmp_path / "nope.csv"
    result = CliRunner().invoke(app, ["score", str(missing), "-o", str(tmp_path / "o.csv"),
                                      "--model", "builtin:cv"])
    assert result.exit_code != 0
    assert "nope.csv" in result.output


def one_line_error(result: Result) -> str:
    """The run ended by a project error: an exit code, one `error:` line, no traceback."""
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (2, 3), result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_score_user_mistakes_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVING_WORK_DIR", str(tmp_path))
    src = crowd_csv(tmp_path / "in.txt")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    cases = {
        "in.txt is a file": [str(src), "-o", str(src / "out.csv")],
        "is the input": [str(src), "-o", str(src)],
        "is a folder": [str(tmp_path), "-o", str(tmp_path / "o.csv")],
        "empty": [str(empty), "-o", str(tmp_path / "o.csv")],
    }
    for expected, args in cases.items():
        result = CliRunner().invoke(app, ["score", *args, "--model", "builtin:cv"])
        assert expected in one_line_error(result)
    assert not (tmp_path / "o.csv").exists()
