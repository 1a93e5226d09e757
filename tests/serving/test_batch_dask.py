"""Batch scoring on Dask: the same output on 1 and 2 worker processes and in this process;
the model sent once per worker; the ETL's Parquet windows as input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from serving_testkit import SPEC, FakeRegistry, make_settings
from test_serving_batch import crowd_csv, windows_expected

from serving import engine
from serving.batch import score_csv
from serving.cluster import Runner
from serving.registry import ServedModel
from trajectory.config import Settings
from trajectory.data.etl import run_etl

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")


@pytest.fixture
def model() -> ServedModel:
    return FakeRegistry().load("models:/fake/1")


def messy_csv(path: Path) -> Path:
    """Three scenes with a late agent, bad lines and one agent's rows at the end of the file."""
    src = crowd_csv(path, scenes=3, agents=5, frames=40)
    lines = src.read_text().splitlines()
    lines.insert(7, "s0,60,9,abc,1")
    lines.insert(300, "s1,70,9")
    lines += [f"s0,{f * 10},42,{0.3 * f:.2f},2.5" for f in range(12)]
    src.write_text("\n".join(lines) + "\n")
    return src


def test_one_and_two_workers_and_this_process_write_the_same_output(
    tmp_path: Path, model: ServedModel
) -> None:
    src = messy_csv(tmp_path / "in.csv")
    settings = make_settings(tmp_path, batch_chunk_rows=120)
    results = {}
    for workers in (0, 1, 2):
        out = tmp_path / f"w{workers}" / "scored.csv"
        runners: list[Runner] = []
        report = score_csv(src, out, model, settings, k=2, workers=workers,
                           parquet_dir=out.with_suffix(".parquet"), on_start=runners.append)
        assert report.workers == workers and report.partitions > 4
        assert (runners[0].client is not None) == (workers > 0)
        results[workers] = (out.read_bytes(), report.errors_path.read_bytes(),
                            pq.read_table(out.with_suffix(".parquet")).to_pandas(), report)
    csv0, errors0, parquet0, report0 = results[0]
    assert report0.windows == windows_expected(3, 5, 40) + 12 - SPEC.obs_len + 1
    assert report0.rows_rejected == 2 and [e.line for e in report0.first_errors] == [8, 301]
    for workers in (1, 2):
        csv_w, errors_w, parquet_w, report_w = results[workers]
        assert csv_w == csv0, f"{workers} worker(s): another CSV"
        assert errors_w == errors0
        pd.testing.assert_frame_equal(parquet_w, parquet0)
        assert (report_w.windows, report_w.output_rows) == (report0.windows, report0.output_rows)
    scored = pd.read_csv(tmp_path / "w0" / "scored.csv")
    assert len(scored) == report0.windows * SPEC.pred_len * 2
    assert not scored.duplicated(["scene", "agent_id", "last_obs_frame", "step", "sample"]).any()
    pd.testing.assert_frame_equal(scored.astype(parquet0.dtypes.to_dict()), parquet0,
                                  check_dtype=False)


def test_each_worker_gets_the_model_once_not_per_partition(
    tmp_path: Path, model: ServedModel
) -> None:
    src = crowd_csv(tmp_path / "in.csv", scenes=4, agents=5, frames=40)
    settings = make_settings(tmp_path, batch_chunk_rows=100)
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        report = score_csv(src, tmp_path / "out.csv", model, settings, client=client)
        assert report.partitions >= 8 and report.workers == 2
        engines = client.run(lambda: len(engine._cache))  # per worker: engines built
    assert sorted(engines.values()) == [1, 1], engines


def test_the_etl_parquet_windows_score_as_the_raw_file(tmp_path: Path, model: ServedModel) -> None:
    raw = tmp_path / "raw" / "crowd.csv"
    raw.parent.mkdir()
    crowd_csv(raw, scenes=2, agents=4, frames=40)
    core = Settings(work_dir=tmp_path, obs_len=SPEC.obs_len, pred_len=SPEC.pred_len,
                    neighbour_radius=SPEC.neighbour_radius, max_neighbours=SPEC.max_neighbours,
                    frame_seconds=SPEC.dt)  # fmt: skip
    etl = run_etl(raw.parent, tmp_path / "windows", core, progress=False, engine="pandas")
    settings = make_settings(tmp_path)
    report = score_csv(tmp_path / "windows", None, model, settings,
                       parquet_dir=tmp_path / "from_windows")  # fmt: skip
    assert report.windows == sum(n for s in etl.windows.values() for n in s.values()) > 0
    got = pq.read_table(tmp_path / "from_windows").to_pandas()
    score_csv(raw, tmp_path / "from_raw.csv", model, settings)
    ref = pd.read_csv(tmp_path / "from_raw.csv")
    keys = ["scene", "agent_id", "last_obs_frame", "step", "sample"]
    both = got.merge(ref, on=keys, suffixes=("", "_raw"))
    assert len(both) == len(got)  # every ETL window is a window of the raw file
    np.testing.assert_allclose(both[["frame", "x", "y"]].to_numpy(np.float64),
                               both[["frame_raw", "x_raw", "y_raw"]].to_numpy(np.float64))
