"""Reading raw files and validating rows: every kind of bad row, on tiny temporary files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trajectory.config import Settings
from trajectory.data import io
from trajectory.data.io import read_tracks, scene_from_path
from trajectory.data.validate import REASONS, validate_tracks
from trajectory.exceptions import InputFileError

SETTINGS = Settings(frame_seconds=0.4, max_speed=12.0)
GOOD = ["780\t1.0\t8.46\t3.59", "790\t1.0\t8.86\t3.59", "800\t1.0\t9.26\t3.59"]


def write(tmp_path: Path, lines: list[str], name: str = "biwi_hotel_train.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def rejects_of(path: Path) -> dict[int, str]:
    result = read_tracks(path, settings=SETTINGS)
    assert (result.rejects["file"] == str(path)).all()
    assert result.rows_in == len(result.tracks) + len(result.rejects)
    return dict(zip(result.rejects["line"], result.rejects["reason"], strict=True))


def test_clean_text_file_reads_every_row_with_schema_and_scene(tmp_path: Path) -> None:
    result = read_tracks(write(tmp_path, GOOD), settings=SETTINGS)
    assert result.rejects.empty and result.rows_in == 3
    assert list(result.tracks.columns) == ["scene", "frame", "agent_id", "x", "y"]
    assert result.tracks.dtypes.astype(str).tolist() == [
        "string",
        "int64",
        "int64",
        "float64",
        "float64",
    ]
    assert (result.tracks["scene"] == "biwi_hotel").all()
    assert result.tracks.index.tolist() == [1, 2, 3]  # 1-based line numbers
    assert (
        read_tracks(write(tmp_path, GOOD), scene="other", settings=SETTINGS)
        .tracks["scene"]
        .eq("other")
        .all()
    )


@pytest.mark.parametrize(
    ("bad", "tag", "field"),
    [
        ("810\t1.0\t9.66", "column count", "expected 4 fields, got 3"),
        ("810 1.0 9.66 3.59 7", "column count", "got 5"),
        ("810\t1.0\tabc\t3.59", "not a number", "'x'"),
        ("810\t1.0\tnan\t3.59", "nan", "'x'"),
        ("810\t1.0\t9.66\tinf", "inf", "'y'"),
        ("810.5\t1.0\t9.66\t3.59", "not an integer", "'frame'"),
        ("800\t1.0\t9.26\t3.59", "duplicate", "line 3"),
        ("790\t1.0\t8.86\t3.59", "out of order", "frame 790 after frame 800"),
        ("770\t1.0\t8.06\t3.59", "out of order", "frame 770 after frame 800"),
        ("810\t1.0\t19.66\t3.59", "impossible jump", "26.0 m/s"),
    ],
)
def test_each_bad_row_is_rejected_with_line_and_reason(
    tmp_path: Path, bad: str, tag: str, field: str
) -> None:
    path = write(tmp_path, [*GOOD, bad, "820\t2.0\t1.0\t1.0"])
    result = read_tracks(path, settings=SETTINGS)
    assert result.rejects["line"].tolist() == [4]
    reason = result.rejects["reason"].iloc[0]
    assert reason.startswith(tag) and field in reason and tag in REASONS
    assert result.rejects["raw"].iloc[0] == bad
    assert result.tracks.index.tolist() == [1, 2, 3, 5]  # valid rows go on


def test_a_spike_costs_one_row_and_blank_lines_keep_numbering(tmp_path: Path) -> None:
    lines = [
        *GOOD,
        "",
        "810\t1.0\t50.0\t3.59",
        "820\t1.0\t10.06\t3.59",
        "   ",
        "830\t1.0\t10.46\t3.59",
    ]
    result = read_tracks(write(tmp_path, lines), settings=SETTINGS)
    assert result.rejects["line"].tolist() == [5]
    assert result.tracks.index.tolist() == [1, 2, 3, 6, 8]
    assert result.rows_in == 6  # blank lines are not rows


def test_jump_speed_uses_the_scene_frame_step(tmp_path: Path) -> None:
    # step 1 (0.4 s): 4 m in one step is 10 m/s, allowed; with step 10 the same is 10 m/s too
    lines = [f"{f}\t1\t{4.0 * f:.1f}\t0" for f in range(5)]
    assert read_tracks(write(tmp_path, lines, "a.txt"), settings=SETTINGS).rejects.empty
    fast = [f"{f}\t1\t{6.0 * f:.1f}\t0" for f in range(5)]  # 15 m/s
    assert len(read_tracks(write(tmp_path, fast, "b.txt"), settings=SETTINGS).rejects) == 4


def test_bad_lines_in_a_large_file_are_found_chunk_by_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(io, "CHUNK_BYTES", 256)
    monkeypatch.setattr(io, "_SLOW_BYTES", 64)
    lines = [f"{10 * f}\t{a}\t{0.5 * f:.2f}\t{a}" for f in range(60) for a in range(3)]
    bad = {17: "x y", 101: "1 2 3 4 5", 160: "5\t1\tabc\t2"}
    for number, text in bad.items():
        lines[number - 1] = text
    result = read_tracks(write(tmp_path, lines), settings=SETTINGS)
    assert result.rejects["line"].tolist() == sorted(bad)
    assert result.rejects["raw"].tolist() == [bad[n] for n in sorted(bad)]
    assert len(result.tracks) == 180 - 3 and result.tracks.index.is_monotonic_increasing


def test_csv_with_timestamps_keeps_seconds_and_frames_in_milliseconds(tmp_path: Path) -> None:
    path = tmp_path / "cam.csv"
    path.write_text(
        "scene,timestamp,agent_id,x,y\ns1,0.0,1,0,0\ns1,0.4,1,0.5,0\ns2,0.8,7,1.0,0\ns1,0.8,1,abc,0\n"
    )
    result = read_tracks(path, settings=SETTINGS)
    assert result.tracks["frame"].tolist() == [0, 400, 800]
    assert result.tracks["time"].tolist() == [0.0, 0.4, 0.8]
    assert result.tracks["scene"].tolist() == ["s1", "s1", "s2"]
    assert result.tracks.index.tolist() == [2, 3, 4]  # the header is line 1
    assert result.rejects["line"].tolist() == [5]
    assert result.rejects["reason"].iloc[0] == "not a number: field 'x' is 'abc'"


def test_csv_without_scene_column_uses_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "zara_val.csv"
    path.write_text("frame,agent_id,x,y\n0,1,0,0\n10,1,0.4,0\n")
    assert read_tracks(path, settings=SETTINGS).tracks["scene"].tolist() == ["zara", "zara"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", "", "empty file"),
        ("blank.txt", "\n  \n\n", "empty file"),
        ("header_only.csv", "frame,agent_id,x,y\n", "header only, no data rows"),
        ("no_header.csv", "\n1,2,3,4\n", "no CSV header"),
        ("bad_header.csv", "frame,agent,x,y\n1,1,1,1\n", "must name agent_id"),
    ],
)
def test_unusable_file_is_one_clear_error(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputFileError, match=message) as err:
        read_tracks(path, settings=SETTINGS)
    assert name in str(err.value)


def test_missing_file_is_an_input_file_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="missing.txt: cannot read"):
        read_tracks(tmp_path / "missing.txt", settings=SETTINGS)


def test_scene_names_from_file_names() -> None:
    assert scene_from_path(Path("biwi_hotel_train.txt")) == "biwi_hotel"
    assert scene_from_path(Path("crowds_zara01_val.txt")) == "crowds_zara01"
    assert scene_from_path(Path("x/sim_003_part01.txt")) == "sim_003"
    assert scene_from_path(Path("biwi_eth.txt")) == "biwi_eth"


def test_validate_tracks_on_a_dataframe_names_rows_by_label() -> None:
    rows = pd.DataFrame(
        {
            "scene": ["s"] * 4,
            "frame": [0.0, 1.0, 1.0, 2.0],
            "agent_id": [1.0] * 4,
            "x": [0.0, 0.5, 0.5, np.nan],
            "y": [0.0] * 4,
        },
        index=[10, 11, 12, 13],
    )
    valid, reasons = validate_tracks(
        rows, max_speed=12.0, frame_seconds=0.4, where=lambda label: f"row {label}"
    )
    assert valid.index.tolist() == [10, 11]
    assert reasons.to_dict() == {
        13: "nan: field 'x' is nan",
        12: "duplicate: same scene, agent and frame as row 11",
    }


def test_after_a_teleport_each_later_point_is_judged_against_the_last_kept_one() -> None:
    x = [0.0, 0.4, 0.8, 40.0, 40.4, 40.8, 1.2]  # the agent "teleports" at row 3, back at row 6
    rows = pd.DataFrame({"scene": "s", "frame": np.arange(7.0), "agent_id": 1.0, "x": x, "y": 0.0})
    valid, reasons = validate_tracks(rows, max_speed=12.0, frame_seconds=0.4)
    assert valid.index.tolist() == [0, 1, 2, 6]  # 1.2 m from row 2 in 4 steps: 0.75 m/s
    assert sorted(reasons.index) == [3, 4, 5]
    assert all(r.startswith("impossible jump") for r in reasons)
