"""The tasks of batch scoring: what a Dask worker (or this process) runs, one call each.

  parse_chunk      cut a chunk of lines out of the input, parse and validate it with the
                   ETL's reader, write its valid rows (Parquet) and its rejects (CSV part)
  score_partition  read a partition's rows, cut the windows it owns, predict, write its
                   output part (Parquet and/or headerless CSV)
  score_windows    the same for a file of the ETL's Parquet windows

Tasks take and return small values (paths, counts, the first errors); rows only travel
through files in the job's work folder, which every worker must see (a shared volume when the
cluster is remote). The model comes as an argument the driver scattered once per worker;
its engine (`serving.engine`) is built once per worker and model version.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import torch

from serving.chunks import ChunkPlan, write_chunk
from serving.engine import engine_for
from serving.inference import finite_outputs
from serving.partitions import Partition, SceneStats, scene_stats
from serving.registry import ServedModel
from serving.schemas import LineError
from serving.windowing import partition_windows
from trajectory.config import Settings
from trajectory.data import schema as S
from trajectory.data.dataset import SCENE_NAME
from trajectory.data.io import read_tracks
from trajectory.data.windows import Windows, frame_step
from trajectory.files import neutralise_array, neutralise_cell

OUTPUT_SCHEMA = pa.schema(
    [
        ("scene", pa.string()),
        ("agent_id", pa.int64()),
        ("last_obs_frame", pa.int64()),
        ("step", pa.int32()),
        ("frame", pa.int64()),
        ("sample", pa.int32()),
        ("weight", pa.float64()),
        ("x", pa.float64()),
        ("y", pa.float64()),
    ]
)
_CSV = pacsv.WriteOptions(quoting_style="needed", include_header=False)


@dataclass
class ParsedChunk:
    index: int
    tracks_path: str | None  # None: no valid row
    rows: int  # non-blank own lines
    rejected: int
    first_errors: list[LineError]  # the first `listed` rejects
    errors_path: str  # every reject, as headerless (line, reason) CSV
    end_byte: int
    timed: bool  # rows carry timestamps
    scenes: dict[str, SceneStats] = field(default_factory=dict)


@dataclass
class ScoredPart:
    index: int
    windows: int
    output_rows: int
    errors: list[LineError]  # windows whose prediction is not finite (line 0)


def parse_chunk(
    input_path: Path,
    plan: ChunkPlan,
    work: Path,
    settings: Settings,
    scene: str | None,
    listed: int,
) -> ParsedChunk:
    """Parse and validate the chunk's own lines; rejects keep the input's line numbers."""
    chunk = write_chunk(input_path, plan, work / f"chunk-{plan.index:06d}{input_path.suffix}",
                        scene)  # fmt: skip
    try:
        result = read_tracks(chunk.path, scene=chunk.scene, settings=settings, part=True)
    finally:
        chunk.path.unlink(missing_ok=True)
    own = chunk.first_own_chunk_line
    rejects = result.rejects[result.rejects["line"] >= own]
    tracks = result.tracks[result.tracks.index >= own]
    lines = chunk.input_line(rejects["line"].to_numpy(np.int64))
    reasons = [neutralise_cell(str(r)) for r in rejects["reason"]]
    errors_path = work / f"errors-{plan.index:06d}.csv"
    with errors_path.open("w", newline="") as f:
        csv.writer(f).writerows(zip(lines.tolist(), reasons))
    tracks_path = None
    if len(tracks):
        tracks_path = work / f"tracks-{plan.index:06d}.parquet"
        columns = [*S.TRACK_COLUMNS, *([S.TIME] if S.TIME in tracks else [])]
        frame = tracks[columns].reset_index(drop=True)
        frame[S.SCENE] = frame[S.SCENE].astype(str)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tracks_path,
                       compression="lz4")  # fmt: skip
    return ParsedChunk(
        index=plan.index,
        tracks_path=None if tracks_path is None else str(tracks_path),
        rows=len(tracks) + len(rejects),  # blank lines are no rows
        rejected=len(rejects),
        first_errors=[LineError(line=int(n), reason=r)
                      for n, r in zip(lines[:listed], reasons[:listed])],
        errors_path=str(errors_path),
        end_byte=plan.end,
        timed=S.TIME in tracks,
        scenes=scene_stats(tracks) if len(tracks) else {},
    )


def score_partition(
    part: Partition,
    model: ServedModel,
    k: int,
    decimals: int,
    out: OutputParts,
    threads: int | None,
) -> ScoredPart:
    """Score the windows one partition owns; write its output part."""
    rows = _read_rows(part)
    windows = partition_windows(rows, part, model.spec)
    return _score(part.index, windows, model, k, decimals, out, threads)


def score_windows(
    index: int,
    path: str,
    stride: int,
    model: ServedModel,
    k: int,
    decimals: int,
    out: OutputParts,
    threads: int | None,
) -> ScoredPart:
    """Score one Parquet file of the ETL's windows (`trajectory.data.dataset` layout). Its
    frame step is the most common gap between an agent's window starts, over the stride."""
    frame = pq.read_table(path).to_pandas()
    if SCENE_NAME in frame:
        frame[S.SCENE] = frame.pop(SCENE_NAME)
    windows = Windows.from_frame(frame, model.spec)
    gap = frame_step(windows.start_frame, windows.agent_id)
    windows.extra = {"step": np.full(len(windows), max(gap // max(stride, 1), 1), np.int64)}
    return _score(index, windows, model, k, decimals, out, threads)


@dataclass(frozen=True)
class OutputParts:
    """Where score tasks write their parts: Parquet, headerless CSV, or both."""

    parquet_dir: str | None
    csv_dir: str | None

    def write(self, index: int, tables: list[pa.Table]) -> None:
        table = pa.concat_tables(tables) if tables else OUTPUT_SCHEMA.empty_table()
        if self.parquet_dir is not None:
            path = Path(self.parquet_dir) / f"part-{index:06d}.parquet"
            pq.write_table(table, path, compression="zstd")
        if self.csv_dir is not None:
            path = Path(self.csv_dir) / f"part-{index:06d}.csv"
            pacsv.write_csv(table, str(path), write_options=_CSV)


def csv_header() -> bytes:
    """The output CSV's header line, as pyarrow writes it."""
    sink = pa.BufferOutputStream()
    pacsv.write_csv(OUTPUT_SCHEMA.empty_table(), sink,
                    write_options=pacsv.WriteOptions(quoting_style="needed"))  # fmt: skip
    return bytes(sink.getvalue().to_pybytes())


def _read_rows(part: Partition) -> pd.DataFrame:
    if not part.files:
        return pd.DataFrame(columns=S.TRACK_COLUMNS)
    dataset = pads.dataset(list(part.files), format="parquet")
    frame = pads.field(S.FRAME)
    by_frame = (frame >= part.frame_range[0]) & (frame <= part.frame_range[1])
    if part.time_range is not None and S.TIME in dataset.schema.names:
        time = pads.field(S.TIME)
        by_time = (time >= part.time_range[0]) & (time <= part.time_range[1])
        by_frame = by_time | (time.is_null() & by_frame)
    table = dataset.to_table(filter=(pads.field(S.SCENE) == part.scene) & by_frame)
    rows = table.to_pandas()
    rows[S.SCENE] = rows[S.SCENE].astype("string")
    return rows


def _score(
    index: int,
    windows: Windows,
    model: ServedModel,
    k: int,
    decimals: int,
    out: OutputParts,
    threads: int | None,
) -> ScoredPart:
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)  # a worker's share of the cores
    engine = engine_for(model.model)
    traj, weights = engine.predict(windows.obs, windows.nbr, k)  # (W, K, T, 2), (W, K)
    step = windows.extra["step"]
    finite = finite_outputs(traj, weights)  # (W,)
    errors = []
    if not finite.all():
        last = windows.start_frame + (model.spec.obs_len - 1) * step
        errors = [
            LineError(line=0, reason=(
                f"scene {str(windows.scene[i])[:80]!r} agent {windows.agent_id[i]} window ending "
                f"at frame {last[i]}: the model's prediction is not finite (NaN or inf); "
                "not scored"
            ))
            for i in np.flatnonzero(~finite)
        ]  # fmt: skip
        keep = np.flatnonzero(finite)
        windows, traj, weights, step = windows.take(keep), traj[keep], weights[keep], step[keep]
    table = _table(windows, traj, weights, model.spec.obs_len, step, decimals)
    out.write(index, [table])
    return ScoredPart(index, len(windows), table.num_rows, errors)


def _table(
    w: Windows,
    traj: np.ndarray,
    weights: np.ndarray,
    obs_len: int,
    step: np.ndarray,
    decimals: int,
) -> pa.Table:
    """traj (W, K, T, 2), weights (W, K) -> W*K*T rows, window-major, then sample, then step.

    Coordinates are rounded to `decimals` (as in the API), which also keeps the CSV short.
    """
    xy = traj.astype(np.float64).round(decimals)  # (W, K, T, 2)
    n, k, t, _ = traj.shape
    per_window = k * t
    last = w.start_frame + (obs_len - 1) * step  # (W,)
    steps = np.tile(np.arange(1, t + 1, dtype=np.int32), n * k)  # (W*K*T,)
    last_rep = np.repeat(last, per_window)
    scenes = neutralise_array(pa.array(w.scene.astype(str), pa.string()))  # (W,)
    scenes = scenes.take(np.repeat(np.arange(n), per_window))
    return pa.table(
        {
            "scene": scenes,
            "agent_id": np.repeat(w.agent_id, per_window),
            "last_obs_frame": last_rep,
            "step": steps,
            "frame": last_rep + steps * np.repeat(step, per_window),
            "sample": np.tile(np.repeat(np.arange(k, dtype=np.int32), t), n),
            "weight": np.repeat(weights.astype(np.float64).round(6).ravel(), t),
            "x": xy[..., 0].ravel(),
            "y": xy[..., 1].ravel(),
        },
        schema=OUTPUT_SCHEMA,
    )
