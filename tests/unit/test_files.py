"""The one atomic writer: content, permissions, and nothing left behind on failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trajectory.files import write_json_atomic, write_text_atomic


def test_writes_text_and_json_creating_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.json"
    assert write_json_atomic(target, {"x": 1}) == target
    assert json.loads(target.read_text()) == {"x": 1} and target.read_text().endswith("\n")
    assert target.stat().st_mode & 0o777 == 0o644


def test_an_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    target.write_text("{}")
    target.chmod(0o600)
    write_text_atomic(target, "new")
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o600


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        write_text_atomic(target, 123)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
