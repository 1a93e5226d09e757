"""Batch scoring of a raw tracks file: the one function behind the API, the CLI and the DAG.

Memory stays bounded for any file size: the input is cut into chunks of lines, each parsed and
validated by the ETL's own reader (`trajectory.data.io.read_tracks`, so rejects are the ETL's
rejects, renumbered to the input's lines), windows are cut by the shared `make_windows`, and
results are streamed to the output CSV. Windows that straddle chunks are completed from a small
per-scene carry of the last observed frames, which needs rows sorted by frame within a scene
(the raw formats are); rows that arrive after their frames were scored are reported.

Time step: as in the ETL, frame ids are timed by TRAJ_FRAME_SECONDS per frame step and
timestamps are seconds. Scenes at the model's step (`model.spec.dt`) are windowed as they are;
others are resampled to it (`serving.windowing`), and their output frames are then model steps
(frame k at k * dt seconds, frame step 1), not the input's frame ids.

Output: one row per agent, window, horizon step and sample:
    scene, agent_id, last_obs_frame, step, frame, sample, weight, x, y
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from serving.chunks import Chunk, split_lines
from serving.config import ServingSettings
from serving.registry import ServedModel
from serving.schemas import BatchProgress, LineError
from serving.windowing import StreamingWindows
from trajectory.data.io import read_tracks
from trajectory.data.windows import Windows
from trajectory.exceptions import InputFileError, TrajectoryError
from trajectory.models import predict

log = logging.getLogger(__name__)

ProgressCallback = Callable[[BatchProgress, list[LineError]], None]
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
_PREDICT_WINDOWS = 4096  # windows per model call and per output write


class BatchAborted(TrajectoryError):
    """The scoring was stopped from outside (service shutdown)."""


@dataclass
class BatchReport:
    rows: int
    rows_rejected: int
    windows: int
    output_rows: int
    seconds: float
    errors_path: Path
    first_errors: list[LineError] = field(default_factory=list)


def score_csv(
    input_path: Path,
    output_path: Path,
    model: ServedModel,
    settings: ServingSettings,
    progress_cb: ProgressCallback | None = None,
    *,
    k: int | None = None,
    scene: str | None = None,
) -> BatchReport:
    """Score every complete observation window of the file; reject lines are listed in
    `<output stem>.errors.csv` (line, reason) and the rest is still scored.

    `scene` names the scene of every row (default: the scene column, else the file name).
    """
    start = time.perf_counter()
    k = k or settings.batch_k
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise InputFileError(f"{input_path}: no such file to score")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    errors_path = output_path.with_name(output_path.stem + ".errors.csv")
    partial = output_path.with_name(output_path.name + ".part")
    progress = BatchProgress(bytes_total=input_path.stat().st_size)
    core = settings.trajectory_settings()  # the ETL's validation limits and frame timing
    stream = StreamingWindows(model.spec, core.frame_seconds)  # resamples to the model's dt
    first_errors: list[LineError] = []
    output_rows = 0

    with (
        tempfile.TemporaryDirectory(dir=output_path.parent, prefix=".chunks-") as tmp,
        _BackgroundWriter(partial) as writer,
        errors_path.open("w", newline="") as errors_file,
    ):
        errors_csv = csv.writer(errors_file)
        errors_csv.writerow(["line", "reason"])

        def report(errors: list[LineError]) -> None:
            errors_csv.writerows((e.line, e.reason) for e in errors)
            progress.rows_rejected += sum(e.line > 0 for e in errors)
            first_errors.extend(errors[: max(settings.batch_max_listed_errors - len(first_errors), 0)])
            if progress_cb is not None:
                progress_cb(progress.model_copy(), errors)

        chunks = split_lines(input_path, Path(tmp), settings.batch_chunk_rows, scene=scene)
        for chunk in chunks:
            result = read_tracks(chunk.path, scene=chunk.scene, settings=core)
            chunk.path.unlink()
            own = chunk.first_own_chunk_line
            errors = _line_errors(chunk, result.rejects[result.rejects["line"] >= own])
            progress.rows += chunk.own_lines
            windows, late = stream.add(result.tracks[result.tracks.index >= own])
            output_rows += _score(writer, windows, model, k, settings.output_decimals)
            progress.windows += len(windows)
            progress.bytes_read = chunk.end_byte
            report(errors + late)
        windows = stream.flush()
        output_rows += _score(writer, windows, model, k, settings.output_decimals)
        progress.windows += len(windows)
        report([])
    os.replace(partial, output_path)
    seconds = time.perf_counter() - start
    log.info(
        "scored %s: %d rows (%d rejected), %d windows in %.1f s",
        input_path.name, progress.rows, progress.rows_rejected, progress.windows, seconds,
    )
    return BatchReport(
        rows=progress.rows,
        rows_rejected=progress.rows_rejected,
        windows=progress.windows,
        output_rows=output_rows,
        seconds=seconds,
        errors_path=errors_path,
        first_errors=first_errors,
    )


def _line_errors(chunk: Chunk, rejects: pd.DataFrame) -> list[LineError]:
    """The reader's rejects (line numbers within the chunk file) on the input's lines."""
    if rejects.empty:
        return []
    lines = chunk.input_line(rejects["line"].to_numpy(np.int64))
    return [LineError(line=int(n), reason=str(r)) for n, r in zip(lines, rejects["reason"])]


class _BackgroundWriter:
    """CSV writing in a thread (pyarrow releases the GIL), overlapping the next chunk's work;
    at most two tables wait, so memory stays bounded."""

    def __init__(self, path: Path) -> None:
        options = pacsv.WriteOptions(quoting_style="needed")  # values quoted only if need be
        self._writer = pacsv.CSVWriter(str(path), OUTPUT_SCHEMA, write_options=options)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="csv-writer")
        self._pending: deque[Future[None]] = deque()

    def write_table(self, table: pa.Table) -> None:
        while len(self._pending) >= 2:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._writer.write_table, table))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True)
            self._writer.close()


def _score(
    writer: _BackgroundWriter, windows: Windows, model: ServedModel, k: int, decimals: int
) -> int:
    rows = 0
    for part in _parts(windows):
        traj, weights = predict(model.model, part.obs, part.nbr, k, batch_size=len(part))
        table = _table(part, traj, weights, model.spec.obs_len, part.extra["step"], decimals)
        writer.write_table(table)
        rows += table.num_rows
    return rows


def _parts(windows: Windows) -> Iterator[Windows]:
    for i in range(0, len(windows), _PREDICT_WINDOWS):
        yield windows.take(slice(i, i + _PREDICT_WINDOWS))


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
    scenes = pa.array(w.scene.astype(str)).take(np.repeat(np.arange(n), per_window))
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
