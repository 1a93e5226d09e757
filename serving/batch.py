"""Batch scoring of a raw tracks file: the one function behind the API, the CLI and the DAG.

The input is cut into chunks of lines (`serving.chunks`); parse tasks read each with the ETL's
own reader (`trajectory.data.io.read_tracks`, so rejects are the ETL's rejects, on the
input's line numbers) and keep its valid rows; the rows are then cut into partitions by scene
and time (`serving.partitions`), and score tasks window each partition with the shared
`make_windows` (through `serving.windowing.partition_windows`), predict with the model's
engine (`serving.engine`) and write the partition's output part. The tasks run on a Dask
cluster or one after another in this process (`serving.cluster`), so every way gives the same
output; memory per task is bounded by the chunk size for any file size (input sorted by
frame within a scene, as the raw formats are; other orders are scored the same, reading
more). The ETL's Parquet windows (a folder with manifest.json) are scored file by file.

Time step: as in the ETL, frame ids are timed by TRAJ_FRAME_SECONDS per frame step and
timestamps are seconds. Scenes at the model's step (`model.spec.dt`) are windowed as they are;
others are resampled to it, and their output frames are then model steps (frame k at
k * dt seconds, frame step 1), not the input's frame ids.

Output: one row per agent, window, horizon step and sample:
    scene, agent_id, last_obs_frame, step, frame, sample, weight, x, y
as one CSV (`output_path`) and/or partitioned Parquet (`parquet_dir`, part-<n>.parquet in
partition order). Text cells are neutralised against CSV formula injection
(`trajectory.files`). A window whose prediction is not finite is not written: it is listed as
an error (line 0, naming scene, agent and last observed frame). Outputs and the errors file
are written atomically: a failed run (an input without rows, a bad output path, a crash)
leaves none of them behind.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.batch_tasks import (
    OutputParts,
    ParsedChunk,
    ScoredPart,
    csv_header,
    parse_chunk,
    score_partition,
    score_windows,
)
from serving.chunks import input_scene, plan_chunks
from serving.cluster import Runner, open_runner
from serving.config import ServingSettings
from serving.partitions import Partition, plan_partitions
from serving.registry import ServedModel
from serving.schemas import BatchProgress, LineError
from trajectory.data.dataset import MANIFEST_FILE, read_manifest
from trajectory.data.io import check_file
from trajectory.data.resample import same_step
from trajectory.data.windows import WindowSpec
from trajectory.exceptions import ConfigError, DataError, InputFileError, TrajectoryError
from trajectory.files import atomic_path, prepare_output

log = logging.getLogger(__name__)

ProgressCallback = Callable[[BatchProgress, list[LineError]], None]
_COPY = 16 << 20


class BatchAborted(TrajectoryError):
    """The scoring was stopped from outside (service shutdown)."""


@dataclass
class BatchReport:
    rows: int  # non-blank data lines of the input (windows, for Parquet windows)
    rows_rejected: int  # of which rejected (each listed in errors_path); the rest were valid
    windows: int
    output_rows: int
    seconds: float
    errors_path: Path
    first_errors: list[LineError] = field(default_factory=list)
    partitions: int = 0
    workers: int = 0  # Dask workers used (0: this process)
    cluster_seconds: float = 0.0  # of `seconds`, starting or joining the cluster


def score_csv(
    input_path: Path,
    output_path: Path | None,
    model: ServedModel,
    settings: ServingSettings,
    progress_cb: ProgressCallback | None = None,
    *,
    k: int | None = None,
    scene: str | None = None,
    parquet_dir: Path | None = None,
    client: Any | None = None,
    address: str | None = None,
    workers: int | None = None,
    threads_per_worker: int = 1,
    on_start: Callable[[Runner], None] | None = None,
) -> BatchReport:
    """Score every complete observation window of the file; reject lines are listed in
    `<output stem>.errors.csv` (line, reason) and the rest is still scored.

    `output_path` is the CSV to write (None: Parquet only), `parquet_dir` the partitioned
    Parquet folder (None: none). Where tasks run: `client`, else the scheduler at `address`
    (default TRAJ_DASK_ADDRESS), else a LocalCluster of `workers` processes with
    `threads_per_worker` torch threads each (None or 0: this process). `scene` names the
    scene of every row (default: the scene column, else the file name).
    Raises InputFileError naming the input when it is missing, a folder, empty, header
    only, binary or has a bad CSV header; ConfigError for an unusable output path.
    """
    start = time.perf_counter()
    k = k or settings.batch_k
    input_path = Path(input_path)
    output_path = None if output_path is None else Path(output_path)
    parquet_dir = None if parquet_dir is None else Path(parquet_dir)
    if output_path is None and parquet_dir is None:
        raise ConfigError("batch scoring needs an output: a CSV path or a Parquet folder")
    if not input_path.exists():
        raise InputFileError(f"{input_path}: no such file to score")
    windows_input = input_path.is_dir() and (input_path / MANIFEST_FILE).is_file()
    if not windows_input:
        check_file(input_path)
    main = output_path if output_path is not None else parquet_dir
    assert main is not None
    errors_path = main.with_name(main.stem + ".errors.csv")
    for path, folder in ((output_path, False), (errors_path, False), (parquet_dir, True)):
        if path is not None:
            prepare_output(path, inputs=(input_path,), folder=folder)
    core = settings.trajectory_settings()
    address = address if address is not None else core.dask_address
    job = _Job(settings, model, k, BatchProgress(bytes_total=_size(input_path)), progress_cb)

    with ExitStack() as stack:
        work = Path(stack.enter_context(
            tempfile.TemporaryDirectory(dir=main.parent, prefix=".batch-")))  # fmt: skip
        outputs = OutputParts(
            parquet_dir=_mkdir(work / "parquet") if parquet_dir is not None else None,
            csv_dir=_mkdir(work / "csv") if output_path is not None else None,
        )
        cluster_start = time.perf_counter()
        runner = stack.enter_context(open_runner(
            client=client, address=address, workers=workers or 0,
            threads_per_worker=threads_per_worker, memory_limit=core.dask_memory_limit,
        ))  # fmt: skip
        used_workers = runner.workers
        cluster_seconds = time.perf_counter() - cluster_start
        if on_start is not None:
            on_start(runner)
        if windows_input:
            parsed: list[ParsedChunk] = []
            scored = job.score_windows(runner, input_path, outputs)
        else:
            parsed = job.parse(runner, input_path, work, scene)
            scored = job.score(runner, job.plan(parsed), outputs)
        with atomic_path(errors_path) as errors_tmp:
            _write_errors(errors_tmp, parsed, scored)
            if output_path is not None:
                assert outputs.csv_dir is not None
                with atomic_path(output_path) as out_tmp:
                    _concat_csv(out_tmp, Path(outputs.csv_dir), len(scored))
            if parquet_dir is not None:
                assert outputs.parquet_dir is not None
                _replace_folder(Path(outputs.parquet_dir), parquet_dir)
    progress = job.progress
    seconds = time.perf_counter() - start
    log.info(
        "scored %s: %d rows (%d rejected), %d windows in %.1f s on %d worker(s)",
        input_path.name, progress.rows, progress.rows_rejected, progress.windows, seconds,
        used_workers,
    )
    return BatchReport(
        rows=progress.rows,
        rows_rejected=progress.rows_rejected,
        windows=progress.windows,
        output_rows=job.output_rows,
        seconds=seconds,
        errors_path=errors_path,
        first_errors=job.first_errors,
        partitions=len(scored),
        workers=used_workers,
        cluster_seconds=cluster_seconds,
    )


@dataclass
class _Job:
    """One scoring run: its settings, progress and first errors, and the task fan-outs."""

    settings: ServingSettings
    model: ServedModel
    k: int
    progress: BatchProgress
    progress_cb: ProgressCallback | None
    output_rows: int = 0
    first_errors: list[LineError] = field(default_factory=list)

    def report(self, errors: list[LineError]) -> None:
        room = max(self.settings.batch_max_listed_errors - len(self.first_errors), 0)
        self.first_errors.extend(errors[:room])
        if self.progress_cb is not None:
            self.progress_cb(self.progress.model_copy(), errors)

    def parse(
        self, runner: Runner, input_path: Path, work: Path, scene: str | None
    ) -> list[ParsedChunk]:
        """Parse tasks for every chunk; results (and progress) in input order."""
        core = self.settings.trajectory_settings().model_copy(
            update={"max_abs_coordinate": self.settings.max_abs_coordinate}
        )  # the ETL's validation limits and frame timing, with the service's coordinate bound
        scene = input_scene(input_path, scene)
        listed = self.settings.batch_max_listed_errors + 1
        plans = plan_chunks(input_path, self.settings.batch_chunk_rows)
        futures = [
            runner.submit(parse_chunk, input_path, plan, work, core, scene, listed)
            for plan in plans
        ]
        out = []
        for future in futures:
            chunk: ParsedChunk = future.result()
            self.progress.rows += chunk.rows
            self.progress.rows_rejected += chunk.rejected
            self.progress.bytes_read = chunk.end_byte
            self.report(chunk.first_errors)
            out.append(chunk)
        return out

    def plan(self, parsed: list[ParsedChunk]) -> list[Partition]:
        spec, frame_seconds = self.model.spec, self.settings.trajectory_settings().frame_seconds
        timed = any(p.timed for p in parsed)
        resampled = timed or not same_step(frame_seconds, spec.dt)
        chunks = [(p.tracks_path, p.scenes) for p in parsed if p.tracks_path is not None]
        return plan_partitions(chunks, spec, frame_seconds, resampled,
                               self.settings.batch_chunk_rows)  # fmt: skip

    def score(
        self, runner: Runner, partitions: list[Partition], outputs: OutputParts
    ) -> list[ScoredPart]:
        model = runner.share(self.model)
        decimals, threads = self.settings.output_decimals, runner.threads_per_worker
        futures = [
            runner.submit(score_partition, part, model, self.k, decimals, outputs, threads)
            for part in partitions
        ]
        return self._collect(runner, futures)

    def score_windows(
        self, runner: Runner, folder: Path, outputs: OutputParts
    ) -> list[ScoredPart]:
        """The ETL's window files, one task each (made with the model's window spec)."""
        manifest = read_manifest(folder)
        made_with = WindowSpec.from_dict(manifest["window_spec"])
        spec = self.model.spec
        if (made_with.obs_len, made_with.max_neighbours) != (spec.obs_len, spec.max_neighbours):
            raise DataError(
                f"{folder}: windows of obs_len {made_with.obs_len} and {made_with.max_neighbours}"
                f" neighbours; the model takes {spec.obs_len} and {spec.max_neighbours}"
            )
        files = sorted(str(p) for p in folder.glob("scene=*/split=*/*.parquet"))
        if not files:
            raise DataError(f"{folder}: no window files (scene=*/split=*/*.parquet)")
        model = runner.share(self.model)
        decimals, threads = self.settings.output_decimals, runner.threads_per_worker
        futures = [
            runner.submit(score_windows, i, path, made_with.stride, model, self.k, decimals,
                          outputs, threads)
            for i, path in enumerate(files)
        ]
        scored = self._collect(runner, futures)
        self.progress.rows = self.progress.windows
        return scored

    def _collect(self, runner: Runner, futures: list[Any]) -> list[ScoredPart]:
        out = []
        for part in runner.as_completed(futures):
            self.progress.windows += part.windows
            self.output_rows += part.output_rows
            self.report(part.errors)
            out.append(part)
        return sorted(out, key=lambda p: p.index)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*.parquet"))


def _mkdir(path: Path) -> str:
    path.mkdir()
    return str(path)


def _write_errors(path: Path, parsed: list[ParsedChunk], scored: list[ScoredPart]) -> None:
    """(line, reason): rejects in input order, then notes on windows (line 0)."""
    with path.open("wb") as out:
        out.write(b"line,reason\r\n")
        for chunk in parsed:
            with open(chunk.errors_path, "rb") as part:
                shutil.copyfileobj(part, out, _COPY)
    with path.open("a", newline="") as f:
        csv.writer(f).writerows((e.line, e.reason) for p in scored for e in p.errors)


def _concat_csv(path: Path, parts: Path, count: int) -> None:
    """The header, then every part in partition order."""
    with path.open("wb") as out:
        out.write(csv_header())
        for index in range(count):
            with (parts / f"part-{index:06d}.csv").open("rb") as part:
                shutil.copyfileobj(part, out, _COPY)


def _replace_folder(tmp: Path, target: Path) -> None:
    """Move the finished Parquet folder into place (an old one is removed first)."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)
