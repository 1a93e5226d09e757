"""The ETL end to end: the ETH/UCY `eth` fold on two Dask workers, and a simulated crowd."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from trajectory.config import Settings
from trajectory.data import dataset
from trajectory.data.dataset import load_windows, read_manifest, write_scene_windows
from trajectory.data.etl import EtlResult, run_etl
from trajectory.data.io import read_tracks
from trajectory.data.simulate import simulate_crowd
from trajectory.data.windows import WindowSpec, make_windows
from trajectory.exceptions import DataError, InputFileError, NoWindowsError

SETTINGS = Settings()
SPEC = WindowSpec.from_settings(SETTINGS)


@pytest.fixture(scope="module")
def eth_runs(
    eth_ucy_dir: Path, dask_client: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[EtlResult, EtlResult, dict]:
    out = tmp_path_factory.mktemp("eth") / "windows"
    first = run_etl(eth_ucy_dir / "eth", out, SETTINGS, client=dask_client, progress=False)
    manifest = read_manifest(out)
    second = run_etl(eth_ucy_dir / "eth", out, SETTINGS, client=dask_client, progress=False)
    return first, second, manifest


@pytest.mark.data
def test_eth_fold_windows_per_scene_and_split(eth_runs: tuple[EtlResult, EtlResult, dict]) -> None:
    first, _, _ = eth_runs
    assert first.windows["biwi_eth"] == {"test": 364}  # 8 + 12, stride 1
    others = {s for s in first.windows if s != "biwi_eth"}
    assert others == {
        "biwi_hotel",
        "crowds_zara01",
        "crowds_zara02",
        "crowds_zara03",
        "students001",
        "students003",
        "uni_examples",
    }
    assert all(set(first.windows[s]) == {"train", "val"} for s in others)
    assert first.rows_in == first.rows_valid == 74428 and first.rows_rejected == 0
    test = load_windows(first.output_dir, SPEC, split="test")
    assert len(test) == 364 and set(test.scene) == {"biwi_eth"}
    assert test.obs.shape == (364, 8, 2) and test.fut.shape == (364, 12, 2)
    assert {"speed", "neighbour_count", "split"} <= set(test.extra)


@pytest.mark.data
def test_eth_fold_windows_match_make_windows_on_the_raw_file(
    eth_ucy_dir: Path, eth_runs: tuple[EtlResult, EtlResult, dict]
) -> None:
    raw = read_tracks(eth_ucy_dir / "eth" / "test" / "biwi_eth.txt", settings=SETTINGS).tracks
    direct = make_windows(raw, SPEC)
    stored = load_windows(eth_runs[0].output_dir, SPEC, scenes=["biwi_eth"])
    np.testing.assert_array_equal(stored.start_frame, direct.start_frame)
    np.testing.assert_array_equal(stored.obs, direct.obs)
    np.testing.assert_array_equal(stored.nbr, direct.nbr)


@pytest.mark.data
def test_eth_rerun_same_version_no_duplicates(eth_runs: tuple[EtlResult, EtlResult, dict]) -> None:
    first, second, manifest = eth_runs
    again = read_manifest(second.output_dir)
    assert second.data_version == first.data_version == again["data_version"]
    assert again["outputs_sha256"] == manifest["outputs_sha256"]
    assert second.windows == first.windows
    assert len(load_windows(second.output_dir, SPEC)) == again["windows_total"] == 36093
    leftovers = [p.name for p in second.output_dir.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no temporary or old folders left beside the output


@pytest.mark.data
def test_eth_manifest_content(eth_runs: tuple[EtlResult, EtlResult, dict]) -> None:
    manifest = eth_runs[2]
    assert manifest["rows"] == {"in": 74428, "valid": 74428, "rejected": 0}
    assert manifest["window_spec"] == {
        "obs_len": 8,
        "pred_len": 12,
        "stride": 1,
        "neighbour_radius": 5.0,
        "max_neighbours": 8,
        "dt": 0.4,
        "max_gap": 1.0,
    }
    assert len(manifest["files"]) == 15 and not any(f["error"] for f in manifest["files"])
    assert manifest["files"][0]["path"] == "test/biwi_eth.txt"
    assert len(manifest["inputs_sha256"]) == 64 and len(manifest["data_version"]) == 12
    assert {"obs", "nbr", "fut", "start_frame", "agent_id", "speed"} <= set(
        manifest["schema"]["windows"]
    )
    assert sum(n for s in manifest["windows"].values() for n in s.values()) == 36093


@pytest.fixture(scope="module")
def sim_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two scenes in two time-chunk files each, plus bad lines and broken files."""
    raw = tmp_path_factory.mktemp("sim") / "raw"
    simulate_crowd(raw, n_scenes=2, agents_per_scene=10, n_frames=400, seed=7, files_per_scene=2)
    part = raw / "sim_000" / "sim_000_part00.txt"
    lines = part.read_text().splitlines()
    lines[4] = "not a line"
    last_of_part0 = lines[-1]
    part.write_text("\n".join(lines) + "\n")
    nxt = raw / "sim_000" / "sim_000_part01.txt"
    nxt.write_text(last_of_part0 + "\n" + nxt.read_text())  # a duplicate across files
    (raw / "empty.txt").write_text("")
    (raw / "cam.csv").write_text(
        "scene,timestamp,agent_id,x,y\n"
        + "".join(f"cam,{0.4 * t:.1f},1,{0.5 * t:.1f},0\n" for t in range(60))
    )
    return raw


def test_simulated_etl_dask_and_pandas_agree(
    sim_raw: Path, dask_client: Any, tmp_path: Path
) -> None:
    a = run_etl(sim_raw, tmp_path / "dask", SETTINGS, client=dask_client, progress=False)
    b = run_etl(sim_raw, tmp_path / "pandas", SETTINGS, engine="pandas", progress=False)
    assert a.data_version == b.data_version
    assert (
        read_manifest(a.output_dir)["outputs_sha256"]
        == read_manifest(b.output_dir)["outputs_sha256"]
    )
    assert a.rows_in == a.rows_valid + a.rows_rejected
    assert a.failed_files == ["empty.txt"]
    rejects = pd.read_parquet(a.rejects_path)
    by_file = {f: g for f, g in rejects.groupby("file")}
    assert by_file["sim_000/sim_000_part00.txt"]["line"].tolist() == [5]
    assert by_file["sim_000/sim_000_part00.txt"]["reason"].str.startswith("column count").all()
    dup = by_file["sim_000/sim_000_part01.txt"]
    assert dup["line"].tolist() == [1] and dup["reason"].iloc[0].startswith("duplicate: same scene")
    assert "sim_000/sim_000_part00.txt line" in dup["reason"].iloc[0]
    assert by_file["empty.txt"]["line"].tolist() == [0]
    assert a.rows_rejected == 2 and set(a.windows) == {"cam", "sim_000", "sim_001"}


def test_time_split_keeps_windows_inside_their_part(sim_raw: Path, tmp_path: Path) -> None:
    result = run_etl(sim_raw, tmp_path / "w", SETTINGS, engine="pandas", progress=False)
    frames = pd.concat(
        read_tracks(p, settings=SETTINGS).tracks
        for p in sorted((sim_raw / "sim_001").glob("*.txt"))
    )["frame"]
    first, last = frames.min(), frames.max()
    b1, b2 = first + 0.7 * (last - first), first + 0.85 * (last - first)
    span = 19 * 10
    for split, (lo, hi) in {"train": (first, b1), "val": (b1, b2), "test": (b2, last + 1)}.items():
        w = load_windows(result.output_dir, SPEC, split=split, scenes=["sim_001"])
        assert w.start_frame.min() >= lo and (w.start_frame + span).max() < hi, split
        assert (w.extra["split"] == split).all()
    counts = result.windows["sim_001"]
    assert counts["train"] > counts["val"] > 0 and counts["test"] > 0


def test_block_by_block_windowing_is_exact(
    sim_raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracks = pd.concat(
        read_tracks(p, settings=SETTINGS).tracks
        for p in sorted((sim_raw / "sim_001").glob("*.txt"))
    )
    spec = WindowSpec(stride=3)
    monkeypatch.setattr(dataset, "BLOCK_ROWS", 500)
    counts = write_scene_windows(
        tracks, tmp_path, split="train", part="0", spec=spec, frame_seconds=0.4
    )
    (tmp_path / "manifest.json").write_text(json.dumps({"window_spec": spec.__dict__}))
    assert len(list(tmp_path.rglob("*.parquet"))) > 5
    stored = load_windows(tmp_path, spec)
    direct = make_windows(tracks, spec)
    key = np.lexsort((stored.agent_id, stored.start_frame))
    ref = np.lexsort((direct.agent_id, direct.start_frame))
    assert counts == {"train": len(direct)}
    np.testing.assert_array_equal(stored.start_frame[key], direct.start_frame[ref])
    np.testing.assert_array_equal(stored.nbr[key], direct.nbr[ref])
    np.testing.assert_array_equal(stored.fut[key], direct.fut[ref])


def test_unusable_inputs_and_outputs_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    with pytest.raises(InputFileError, match="no .txt or .csv"):
        run_etl(tmp_path / "in", tmp_path / "out", SETTINGS, engine="pandas", progress=False)
    (tmp_path / "in" / "a.txt").write_text("")
    with pytest.raises(InputFileError, match="no usable input file.*a.txt: empty file"):
        run_etl(tmp_path / "in", tmp_path / "out", SETTINGS, engine="pandas", progress=False)
    (tmp_path / "in" / "a.txt").write_text("0 1 0 0\n10 1 0.4 0\n")
    with pytest.raises(NoWindowsError):
        run_etl(tmp_path / "in", tmp_path / "out", SETTINGS, engine="pandas", progress=False)
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "notes.md").write_text("mine")
    with pytest.raises(DataError, match="not replacing"):
        run_etl(tmp_path / "in", tmp_path / "keep", SETTINGS, engine="pandas", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "keep"]
    with pytest.raises(DataError, match="no manifest"):
        read_manifest(tmp_path / "keep")


def test_loading_with_another_spec_is_refused(sim_raw: Path, tmp_path: Path) -> None:
    run_etl(sim_raw, tmp_path / "w", SETTINGS, engine="pandas", progress=False)
    with pytest.raises(DataError, match="window spec"):
        load_windows(tmp_path / "w", WindowSpec(obs_len=4))
    with pytest.raises(NoWindowsError):
        load_windows(tmp_path / "w", SPEC, scenes=["nowhere"])
