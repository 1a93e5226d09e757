"""Hardening of the raw-file reader: coordinate bound, outliers that poison a track, compact
reasons, files that are empty, header-only or binary."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from trajectory.config import Settings
from trajectory.data.io import read_tracks
from trajectory.data.validate import REASONS, validate_tracks
from trajectory.exceptions import InputFileError

SETTINGS = Settings(frame_seconds=0.4, max_speed=12.0)
TRACK = [f"{10 * f}\t1\t{0.4 * f:.2f}\t3.5" for f in range(6)]


def write(tmp_path: Path, lines: list[str], name: str = "scene.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_max_abs_coordinate_is_a_setting_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().max_abs_coordinate == 1e5
    monkeypatch.setenv("TRAJ_MAX_ABS_COORDINATE", "50")
    assert Settings().max_abs_coordinate == 50


@pytest.mark.parametrize(
    ("bad", "field"),
    [("60\t1\t2e5\t3.5", "'x'"), ("60\t1\t2.8\t-1e6", "'y'"), ("60\t1\t1e308\t3.5", "'x'")],
)
def test_a_coordinate_beyond_the_bound_is_rejected_and_the_rest_kept(
    tmp_path: Path, bad: str, field: str
) -> None:
    result = read_tracks(write(tmp_path, [*TRACK, bad, "70\t1\t2.8\t3.5"]), settings=SETTINGS)
    assert result.rejects["line"].tolist() == [7]
    reason = result.rejects["reason"].iloc[0]
    assert reason.startswith("out of range") and field in reason and "out of range" in REASONS
    assert len(reason) < 120
    assert result.tracks.index.tolist() == [1, 2, 3, 4, 5, 6, 8]


def test_the_bound_follows_the_setting(tmp_path: Path) -> None:
    path = write(tmp_path, [*TRACK, "60\t1\t2.4\t3.5"])
    tight = Settings(frame_seconds=0.4, max_speed=12.0, max_abs_coordinate=3.0)
    result = read_tracks(path, settings=tight)
    assert result.rejects["reason"].str.startswith("out of range").all()
    assert result.rejects["line"].tolist() == [1, 2, 3, 4, 5, 6, 7]


def test_a_first_point_outlier_costs_one_row_not_the_track(tmp_path: Path) -> None:
    result = read_tracks(write(tmp_path, ["0\t1\t1e308\t3.5", *TRACK[1:]]), settings=SETTINGS)
    assert result.rejects["line"].tolist() == [1]
    assert result.tracks.index.tolist() == [2, 3, 4, 5, 6]
    assert all(len(r) < 120 for r in result.rejects["reason"])


def test_a_first_point_outlier_within_the_bound_costs_one_row() -> None:
    x = [5e4, 0.4, 0.8, 1.2, 1.6]
    rows = pd.DataFrame({"scene": "s", "frame": [0.0, 1, 2, 3, 4], "agent_id": 1.0, "x": x,
                         "y": 0.0})
    valid, reasons = validate_tracks(rows, max_speed=12.0, frame_seconds=0.4,
                                     max_abs_coordinate=1e5)
    assert valid.index.tolist() == [1, 2, 3, 4]
    assert reasons.index.tolist() == [0]
    assert reasons.iloc[0] == "impossible jump: 124999.0 m/s to the next point (max 12 m/s)"


def test_jump_reasons_print_numbers_compactly() -> None:
    rows = pd.DataFrame({"scene": "s", "frame": [0.0, 1, 2], "agent_id": 1.0,
                         "x": [0.0, 0.4, 9e4], "y": 0.0})
    _, reasons = validate_tracks(rows, max_speed=12.0, frame_seconds=0.4,
                                 max_abs_coordinate=1e5)
    assert reasons.to_dict() == {
        2: "impossible jump: 224999.0 m/s from the previous point (max 12 m/s)"
    }


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "empty"),
        ("empty.txt", b"", "empty"),
        ("header.csv", b"scene,frame,agent_id,x,y\n", "header only, no data rows"),
        ("header_blank.csv", b"scene,frame,agent_id,x,y\n\n  \n", "header only, no data rows"),
        ("blob.txt", bytes(range(256)) * 8, "not a text file (binary)"),
        ("blob.csv", b"frame,agent_id,x,y\n" + b"\x00\x01\xfe\xff" * 500, "not a text file"),
    ],
)
def test_unusable_files_name_the_file_and_why(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=re.escape(message)) as err:
        read_tracks(path, settings=SETTINGS)
    assert name in str(err.value)


def test_latin1_text_is_not_taken_for_binary(tmp_path: Path) -> None:
    path = tmp_path / "cam.csv"
    path.write_bytes(b"scene,frame,agent_id,x,y\n" + b"caf\xe9,0,1,0,0\ncaf\xe9,10,1,0.4,0\n")
    assert len(read_tracks(path, settings=SETTINGS).tracks) == 2
