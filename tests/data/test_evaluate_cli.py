"""`trajectory evaluate` end to end through the CLI: builtins and a checkpoint on a synthetic
raw folder, the ETL's splits, rejected lines counted as dropped windows, clear errors; and,
with the `data` marker, Constant Velocity on the ETH/UCY zara1 test scene."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from trajectory.cli import app
from trajectory.config import Settings
from trajectory.data.simulate import simulate_crowd

REQUIRED = {"model", "data", "windows", "windows_dropped", "metrics"}
METRICS = {"ade", "fde", "min_ade_20", "min_fde_20", "brier_min_fde_20", "nll", "miss_rate_20"}


@pytest.fixture(scope="module")
def crowd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small synthetic scene in the ETH/UCY text format, no split folders."""
    root = tmp_path_factory.mktemp("crowd")
    simulate_crowd(root, n_scenes=1, agents_per_scene=8, n_frames=300, seed=0, fast=True)
    return root


def evaluate(tmp: Path, *args: str) -> tuple[Any, dict[str, Any] | None]:
    """Run the command with --output; the result and the report (None when it failed)."""
    out = tmp / "report" / "scores.json"
    result = CliRunner().invoke(
        app, ["evaluate", *args, "--output", str(out), "--device", "cpu", "--work-dir", str(tmp)]
    )
    report = json.loads(out.read_text()) if result.exit_code == 0 else None
    return result, report


def _raw_file(folder: Path) -> Path:
    return next(folder.rglob("*.txt"))


def _copy_with(src: Path, dest: Path, edit: Any) -> Path:
    """Copy a raw folder's one file to `dest`, passing its lines through `edit`."""
    target = dest / _raw_file(src).relative_to(src)
    target.parent.mkdir(parents=True)
    lines = _raw_file(src).read_text().splitlines()
    target.write_text("\n".join(edit(lines)) + "\n")
    return target


def _mid_track_lines(lines: list[str]) -> list[int]:
    """Indices of three successive points in the middle of the longest track: a gap of 1.6 s
    once they are gone, too long for resampling to bridge (TRAJ_MAX_GAP_SECONDS, 1 s)."""
    agents = np.array([int(float(line.split()[1])) for line in lines])
    ids, counts = np.unique(agents, return_counts=True)
    rows = np.flatnonzero(agents == ids[np.argmax(counts)])
    return [int(r) for r in rows[len(rows) // 2 : len(rows) // 2 + 3]]


def test_builtin_cv_report_and_json(crowd: Path, tmp_path: Path) -> None:
    result, report = evaluate(tmp_path, "--model", "builtin:cv", "--data", str(crowd))
    assert result.exit_code == 0, result.stderr
    assert report is not None and REQUIRED <= set(report) and set(report["metrics"]) == METRICS
    assert report["model"] == "builtin:cv" and report["data"] == str(crowd)
    assert report["windows"] > 0 and report["windows_dropped"] == 0
    assert all(np.isfinite(v) for v in report["metrics"].values())
    m = report["metrics"]
    assert m["min_ade_20"] == pytest.approx(m["ade"]) and m["brier_min_fde_20"] == pytest.approx(
        m["fde"]
    )  # one track: best-of-20 is the track, its probability is 1
    assert report["nll_scale"]["fitted_on"] == "val" and report["nll_scale"]["c"] > 0
    assert sum(b["count"] for b in report["reliability"]) == report["windows"]
    for text in ("ADE, K=1", "brier-minFDE", "NLL", "mode weight", f"{report['windows']} scored"):
        assert text in result.stdout
    assert [p.name for p in (tmp_path / "report").iterdir()] == ["scores.json"]  # no temp left


def test_splits_are_the_etl_s(crowd: Path, tmp_path: Path) -> None:
    from trajectory.data.etl import run_etl

    etl = run_etl(crowd, tmp_path / "windows", Settings(work_dir=tmp_path), progress=False,
                  engine="pandas")
    counts = {}
    for split in ("train", "val", "test", "all"):
        result, report = evaluate(tmp_path, "--model", "builtin:cv", "--data", str(crowd),
                                  "--split", split)
        assert result.exit_code == 0, result.stderr
        assert report is not None
        counts[split] = report["windows"]
    etl_counts = etl.windows["sim_000"]
    assert set(etl_counts) == {"train", "val", "test"}
    assert {s: counts[s] for s in etl_counts} == etl_counts
    assert counts["all"] == sum(etl_counts.values())


def test_cv_grid_fans_out(crowd: Path, tmp_path: Path) -> None:
    _, cv = evaluate(tmp_path, "--model", "builtin:cv", "--data", str(crowd))
    result, grid = evaluate(tmp_path, "--model", "builtin:cv-grid", "--data", str(crowd))
    assert result.exit_code == 0, result.stderr
    assert cv is not None and grid is not None
    assert grid["metrics"]["ade"] == pytest.approx(cv["metrics"]["ade"])  # k=1 is plain CV
    # a fan of 20 equal weights: the closest mode had p = 0.05, one mode in 20 is the closest
    assert grid["metrics"]["brier_min_fde_20"] > grid["metrics"]["min_fde_20"] + 0.9
    fan = next(b for b in grid["reliability"] if b["lo"] == 0.05)
    assert fan["count"] >= 19 * grid["windows"]
    assert fan["closest_rate"] == pytest.approx(0.05, abs=0.005)


def test_a_bad_line_is_reported_and_its_windows_counted(crowd: Path, tmp_path: Path) -> None:
    lines = _raw_file(crowd).read_text().splitlines()
    bad = _mid_track_lines(lines)

    def bad_x(lines: list[str]) -> list[str]:
        def edit(f: list[str]) -> str:
            return "\t".join([*f[:2], "abc", f[3]])

        return [edit(line.split()) if n in bad else line for n, line in enumerate(lines)]

    broken = tmp_path / "broken"
    _copy_with(crowd, broken, bad_x)
    _, clean = evaluate(tmp_path, "--model", "builtin:cv", "--data", str(crowd), "--split", "all")
    result, report = evaluate(tmp_path, "--model", "builtin:cv", "--data", str(broken),
                              "--split", "all")
    assert result.exit_code == 0, result.stderr
    assert clean is not None and report is not None
    assert report["windows_dropped"] > 0
    assert report["windows"] + report["windows_dropped"] == clean["windows"]
    assert report["rows"] == {"in": len(lines), "valid": len(lines) - 3, "rejected": 3}
    assert report["rejects"] == [{"file": str(_raw_file(broken)), "line": i + 1,
                                  "reason": "not a number: field 'x' is 'abc'"} for i in bad]
    assert f"line {bad[0] + 1}: not a number: field 'x' is 'abc'" in result.stdout


def test_a_jump_rejected_by_validation_also_costs_windows(crowd: Path, tmp_path: Path) -> None:
    lines = _raw_file(crowd).read_text().splitlines()
    bad = _mid_track_lines(lines)

    def jump(lines: list[str]) -> list[str]:  # three points 100 m off, each rejected
        def edit(f: list[str]) -> str:
            return "\t".join([f[0], f[1], str(float(f[2]) + 100), f[3]])

        return [edit(line.split()) if n in bad else line for n, line in enumerate(lines)]

    _copy_with(crowd, tmp_path / "jump", jump)
    result, report = evaluate(tmp_path, "--model", "builtin:cv", "--data", str(tmp_path / "jump"),
                              "--split", "all")
    assert result.exit_code == 0, result.stderr
    assert report is not None and report["windows_dropped"] > 0
    assert [r["line"] for r in report["rejects"]] == [i + 1 for i in bad]
    assert all(r["reason"].startswith("impossible jump") for r in report["rejects"])


def test_bad_input_is_a_clear_error(crowd: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty" / "scene.txt"
    empty.parent.mkdir()
    empty.write_text("")
    result, _ = evaluate(tmp_path, "--model", "builtin:cv", "--data", str(empty.parent))
    assert result.exit_code == 3 and str(empty) in result.stderr and "empty" in result.stderr
    result, _ = evaluate(tmp_path, "--model", "builtin:cv", "--data", str(tmp_path / "nowhere"))
    assert result.exit_code == 3 and "not found" in result.stderr
    result, _ = evaluate(tmp_path, "--model", "no-such.pt", "--data", str(crowd))
    assert result.exit_code == 4 and "no-such.pt" in result.stderr
    result, _ = evaluate(tmp_path, "--model", "builtin:mixture", "--data", str(crowd))
    assert result.exit_code == 4 and "no trained weights" in result.stderr
    result, _ = evaluate(tmp_path, "--model", "builtin:cv", "--data", str(crowd), "--split", "x")
    assert result.exit_code == 2 and "split must be one of" in result.stderr


def test_without_a_val_split_the_nll_scale_is_fitted_on_the_scored_windows(
    crowd: Path, tmp_path: Path
) -> None:
    only_test = tmp_path / "only_test" / "test" / "sim_000.txt"
    only_test.parent.mkdir(parents=True)
    only_test.write_bytes(_raw_file(crowd).read_bytes())
    result, report = evaluate(tmp_path, "--model", "builtin:cv", "--data", str(only_test.parents[1]))
    assert result.exit_code == 0, result.stderr
    assert report is not None and report["nll_scale"]["fitted_on"] == "scored"
    result, _ = evaluate(tmp_path, "--model", "builtin:cv", "--data", str(only_test.parents[1]),
                         "--split", "val")
    assert result.exit_code == 3 and "no complete window in split 'val'" in result.stderr


def test_a_checkpoint_is_scored_with_its_own_window_spec(crowd: Path, tmp_path: Path) -> None:
    from trajectory import metrics
    from trajectory.data.io import read_tracks
    from trajectory.data.windows import WindowSpec, make_windows
    from trajectory.evaluation import read_folder
    from trajectory.models.base import predict
    from trajectory.training import TrainConfig, load_checkpoint, train

    spec = WindowSpec(obs_len=6, pred_len=8)
    windows = make_windows(read_tracks(_raw_file(crowd)).tracks, spec)
    half = np.arange(len(windows)) % 2 == 0
    config = TrainConfig(model="mixture", model_args={"hidden": 16, "heads": 2}, epochs=1,
                         batch_size=64, device="cpu", num_threads=1)
    res = train(windows.take(half), windows.take(~half), config, tmp_path / "ckpt",
                progress=False, spec=spec)
    result, report = evaluate(tmp_path, "--model", str(res.checkpoint), "--data", str(crowd))
    assert result.exit_code == 0, result.stderr
    assert report is not None
    assert (report["window_spec"]["obs_len"], report["window_spec"]["pred_len"]) == (6, 8)
    test = read_folder(crowd, spec, "test", Settings(work_dir=tmp_path)).windows
    assert report["windows"] == len(test)
    model, _ = load_checkpoint(res.checkpoint)
    one, _ = predict(model, test.obs, test.nbr, k=1)
    assert test.fut is not None
    assert report["metrics"]["ade"] == pytest.approx(float(metrics.ade(one[:, 0], test.fut).mean()))
    assert report["metrics"]["min_ade_20"] <= report["metrics"]["ade"]


@pytest.mark.data
def test_constant_velocity_on_zara1_test(eth_ucy_dir: Path, tmp_path: Path) -> None:
    zara1 = eth_ucy_dir / "zara1"
    result, report = evaluate(tmp_path, "--model", "builtin:cv", "--data", str(zara1),
                              "--split", "test")
    assert result.exit_code == 0, result.stderr
    assert report is not None
    assert report["windows"] == 2356 and report["windows_dropped"] == 0
    assert report["metrics"]["ade"] == pytest.approx(0.43, abs=0.01)
    assert report["metrics"]["fde"] == pytest.approx(0.95, abs=0.01)
    assert report["nll_scale"]["fitted_on"] == "val"
    _, grid = evaluate(tmp_path, "--model", "builtin:cv-grid", "--data", str(zara1))
    assert grid is not None
    assert grid["metrics"]["min_ade_20"] == pytest.approx(0.33, abs=0.02)
    assert grid["metrics"]["min_fde_20"] == pytest.approx(0.60, abs=0.02)
