"""ETL hardening: one bad file or scene never stops the run, any scene name is a safe
partition, a folder without windows says why and keeps its rejects, CLI mistakes are one line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from trajectory.cli import app
from trajectory.config import Settings
from trajectory.data import etl
from trajectory.data.dataset import load_windows
from trajectory.data.etl import run_etl
from trajectory.data.windows import WindowSpec
from trajectory.exceptions import NoWindowsError

SETTINGS = Settings()
SPEC = WindowSpec.from_settings(SETTINGS)
LONG_NAME = "é" * 50  # 300 bytes once URL-quoted: too long for a folder name


def walkers(scene: str, frames: int = 40, agents: int = 3, header: bool = True) -> str:
    rows = [f"{scene},{10 * f},{a},{0.4 * f:.2f},{1.0 * a}" for f in range(frames)
            for a in range(agents)]
    return ("scene,frame,agent_id,x,y\n" if header else "") + "\n".join(rows) + "\n"


def run(src: Path, out: Path) -> etl.EtlResult:
    return run_etl(src, out, SETTINGS, engine="pandas", progress=False)


def test_any_scene_name_is_a_safe_partition_and_comes_back_whole(tmp_path: Path) -> None:
    (tmp_path / "raw" / "test").mkdir(parents=True)
    (tmp_path / "raw" / "test" / "long.csv").write_text(walkers(LONG_NAME))
    (tmp_path / "raw" / "test" / "odd.csv").write_text(walkers("a/b%2F..=x"))
    (tmp_path / "raw" / "test" / "plain.csv").write_text(walkers("zara"))
    result = run(tmp_path / "raw", tmp_path / "out")
    assert set(result.windows) == {LONG_NAME, "a/b%2F..=x", "zara"}
    assert all(len(p.name.encode()) <= 80 for p in (tmp_path / "out").rglob("*"))
    back = load_windows(tmp_path / "out", SPEC, split="test", scenes=[LONG_NAME])
    assert set(back.scene) == {LONG_NAME} and len(back) == result.windows[LONG_NAME]["test"]
    assert len(load_windows(tmp_path / "out", SPEC)) == sum(
        n for s in result.windows.values() for n in s.values())


def test_a_file_that_crashes_its_reader_is_reported_and_the_rest_processed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "bad.csv").write_text(walkers("bad"))
    (tmp_path / "raw" / "good.csv").write_text(walkers("good"))
    real = etl.read_tracks

    def flaky(path: Path, *args: object, **kwargs: object) -> object:
        if Path(path).name == "bad.csv":
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(etl, "read_tracks", flaky)
    result = run(tmp_path / "raw", tmp_path / "out")
    assert result.failed_files == ["bad.csv"] and set(result.windows) == {"good"}
    rejects = pd.read_parquet(result.rejects_path)
    assert "invalid start byte" in rejects.loc[rejects.file == "bad.csv", "reason"].iloc[0]


def test_a_scene_that_fails_to_write_is_reported_and_the_rest_processed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.csv").write_text(walkers("broken") + walkers("fine", header=False))
    real = etl.write_scene_windows

    def failing(tracks: pd.DataFrame, *args: object, **kwargs: object) -> dict[str, int]:
        if tracks["scene"].iloc[0] == "broken":
            real(tracks, *args, **kwargs)  # leaves part files, then fails
            raise OSError(36, "File name too long")
        return real(tracks, *args, **kwargs)

    monkeypatch.setattr(etl, "write_scene_windows", failing)
    result = run(tmp_path / "raw", tmp_path / "out")
    assert set(result.windows) == {"fine"} and "1 scene failed" in result.summary()
    assert set(load_windows(tmp_path / "out", SPEC).scene) == {"fine"}
    rejects = pd.read_parquet(result.rejects_path)
    assert rejects["reason"].str.contains("scene 'broken'.*File name too long").any()


def test_a_folder_without_windows_says_why_and_keeps_its_rejects(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    short = walkers("short", frames=9) + "short,90,0,abc,0\n"
    (tmp_path / "raw" / "a.csv").write_text(short)
    with pytest.raises(NoWindowsError) as err:
        run(tmp_path / "raw", tmp_path / "out")
    message = str(err.value)
    assert "longest track has 9 points" in message and "needs 20" in message
    kept = tmp_path / "out.rejects.parquet"
    assert str(kept) in message
    assert pd.read_parquet(kept)["reason"].str.startswith("not a number").all()
    (tmp_path / "raw" / "a.csv").write_text(walkers("split", frames=25))  # 25 >= 20, but
    with pytest.raises(NoWindowsError, match="too few frames per split"):  # 70/15/15 of 25
        run(tmp_path / "raw", tmp_path / "out")


def test_etl_user_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.csv").write_text(walkers("s"))
    a_file = tmp_path / "raw" / "a.csv"
    cases = {
        "a.csv is a file": [str(tmp_path / "raw"), str(a_file / "out")],
        "it is a file": [str(tmp_path / "raw"), str(a_file)],
        "not found": [str(tmp_path / "nope"), str(tmp_path / "out")],
        "is a file, not a folder": [str(a_file), str(tmp_path / "out")],
    }
    for expected, args in cases.items():
        result = CliRunner().invoke(app, ["etl", *args])
        assert isinstance(result.exception, SystemExit), (expected, result.exception)
        assert result.exit_code in (2, 3), result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], result.output
