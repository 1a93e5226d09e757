"""Batch CSV jobs of the API: spool the upload to disk, score it in a worker thread, keep status.

Job state lives in the database (`batch_jobs`, via `serving.job_store`) and job folders under
the batch dir, so every replica sharing both answers status and result, and a restart forgets
nothing. The replica that took an upload scores it, one job at a time (scoring is CPU-bound and
shares the machine with real-time traffic); others wait queued. Jobs a replica leaves queued or
running when it stops are marked failed at its next start; finished jobs are expired after
`batch_retention_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from serving import job_store
from serving.batch import BatchAborted, score_csv
from serving.config import ServingSettings
from serving.errors import NotFoundError, RequestError
from serving.metrics import ServingMetrics
from serving.registry import ServedModel
from serving.schemas import BatchJobStatus, BatchProgress, LineError
from trajectory.exceptions import TrajectoryError

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted by a service restart; resubmit"
PROGRESS_EVERY_S = 1.0  # the most often a running job writes its progress to the database
_SPOOL_BUFFER = 1 << 20
_JOB_ID = re.compile(r"[0-9a-f]{32}")
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[^\s/:'\"]+/)+[^\s:'\"]*")


def replica_name(settings: ServingSettings) -> str:
    """This replica: SERVING_REPLICA_NAME, else the host name. Each worker process of it
    writes `<replica>/<pid>` into `batch_jobs.replica` (see `job_store.fail_unfinished`)."""
    return (settings.replica_name or socket.gethostname())[:50]


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():  # a restarted process can get its predecessor's pid (PID 1)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Upload:
    chunks: AsyncIterator[bytes]
    suffix: str  # ".csv" or ".txt": picks the spool file's name, never the client's
    name: str  # what messages call the upload (sanitised, short); never a path
    source: str  # the request field it came from ("body" or "file"), for errors


class ProgressThrottle:
    """`due()` is true at most once per `every_s` seconds (the first call always)."""

    def __init__(
        self, every_s: float = PROGRESS_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.every_s, self._clock = every_s, clock
        self._last: float | None = None

    def due(self) -> bool:
        now = self._clock()
        if self._last is not None and now - self._last < self.every_s:
            return False
        self._last = now
        return True


@dataclass
class _Run:
    """A job being scored by this replica."""

    id: str
    dir: Path
    input_path: Path
    name: str
    progress: BatchProgress = field(default_factory=BatchProgress)
    errors: list[LineError] = field(default_factory=list)
    errors_truncated: bool = False

    @property
    def output_path(self) -> Path:
        return self.dir / "result.csv"

    def progress_values(self) -> dict[str, Any]:
        return {
            "progress": self.progress.model_dump(),
            "errors": [e.model_dump() for e in self.errors],
            "errors_truncated": self.errors_truncated,
        }


def public_detail(err: Exception, run: _Run) -> str:
    """The failure as the client may see it: server paths become the upload's name."""
    if not isinstance(err, TrajectoryError):
        return f"internal error while scoring; the service log has the details of job {run.id}"
    text = str(err)
    for folder in {str(run.dir), str(run.dir.resolve())}:
        text = re.sub(re.escape(folder) + r"[^\s:'\"]*", lambda _: run.name, text)
    return _ABSOLUTE_PATH.sub("<path>", text)[:1000]


class BatchJobs:
    """Submits, runs, reports and expires batch jobs; state in the database."""

    def __init__(
        self,
        settings: ServingSettings,
        metrics: ServingMetrics,
        engine: Engine,
        replica: str | None = None,
    ) -> None:
        self._settings, self._metrics = settings, metrics
        self._engine = engine
        self._base = replica or replica_name(settings)
        self.replica = f"{self._base}/{os.getpid()}"
        self._root = settings.resolved_batch_dir()
        self._tasks: set[asyncio.Task[None]] = set()
        self._gate = asyncio.Semaphore(1)
        self._stopping = False

    @classmethod
    async def open(
        cls,
        settings: ServingSettings,
        metrics: ServingMetrics,
        engine: Engine,
        replica: str | None = None,
    ) -> BatchJobs:
        """The jobs of a starting replica: its unfinished jobs failed, old jobs expired."""
        jobs = cls(settings, metrics, engine, replica)
        await asyncio.to_thread(jobs._start_up)
        return jobs

    async def active(self, owner: str) -> int:
        """Queued and running jobs of `owner` on every replica."""
        return await asyncio.to_thread(job_store.count_active, self._engine, owner)

    async def submit(
        self,
        upload: Upload,
        owner: str,
        client_key: str | None,
        model: ServedModel,
        scene: str | None = None,
    ) -> BatchJobStatus:
        """Spool the upload, record the job and queue it for scoring on this replica."""
        run = await self._spool(upload)
        values = {
            "id": run.id,
            "owner": owner,
            "client_key": client_key,
            "input_name": run.name,
            "replica": self.replica,
            "model": {"name": model.name, "version": model.version},
        }
        try:
            row = await asyncio.to_thread(job_store.add, self._engine, values)
        except BaseException:
            shutil.rmtree(run.dir, ignore_errors=True)  # also when cancelled: no await
            raise
        task = asyncio.create_task(self._run(run, model, scene), name=f"batch-{run.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job_store.to_status(row)

    async def status(self, job_id: str, owner: str) -> BatchJobStatus:
        return job_store.to_status(await self._owned(job_id, owner))

    async def result(self, job_id: str, owner: str) -> Path:
        """The scored CSV of a finished job (404 unknown or gone, 409 not done)."""
        row = await self._owned(job_id, owner)
        if row["status"] != "done":
            raise NotFoundError(f"job {job_id} is {row['status']}; it has no result", status=409)
        path = self._root / row["id"] / "result.csv"
        if not await asyncio.to_thread(path.is_file):
            log.error(
                "batch job %s is done but %s is missing (batch dir not shared?)", job_id, path
            )
            raise NotFoundError(f"the result of batch job {job_id!r} is no longer available")
        return path

    async def _owned(self, job_id: str, owner: str) -> job_store.Row:
        row = await asyncio.to_thread(job_store.get, self._engine, job_id)
        if row is None or row["owner"] != owner:  # another key's job looks unknown
            raise NotFoundError(f"no batch job {job_id[:64]!r}")
        return row

    async def _spool(self, upload: Upload) -> _Run:
        """Write an upload to a new job folder as it arrives (memory: one buffer)."""
        assert upload.suffix in {".csv", ".txt"}, upload.suffix
        job_id = uuid.uuid4().hex
        job_dir = self._root / job_id
        await asyncio.to_thread(job_dir.mkdir, parents=True, exist_ok=True)
        run = _Run(
            id=job_id, dir=job_dir, input_path=job_dir / f"input{upload.suffix}", name=upload.name
        )
        size = 0
        try:
            with run.input_path.open("wb") as f:
                buffer = bytearray()
                async for chunk in upload.chunks:
                    buffer += chunk
                    size += len(chunk)
                    if len(buffer) >= _SPOOL_BUFFER:
                        await asyncio.to_thread(f.write, bytes(buffer))
                        buffer.clear()
                await asyncio.to_thread(f.write, bytes(buffer))
            if size == 0:
                raise RequestError(
                    upload.source,
                    "the upload is empty: send a tracks file "
                    "(CSV with a header line, or ETH text) with rows",
                )
        except BaseException:
            shutil.rmtree(job_dir, ignore_errors=True)  # also when cancelled: no await
            raise
        return run

    async def _run(self, run: _Run, model: ServedModel, scene: str | None) -> None:
        try:
            async with self._gate:
                await self._score(run, model, scene)
            await asyncio.to_thread(self._expire)
        except Exception:  # a background task: nobody else would hear of it
            log.exception("batch job %s: its state could not be written", run.id)

    async def _score(self, run: _Run, model: ServedModel, scene: str | None) -> None:
        if self._stopping:
            await self._finish(run, "failed", INTERRUPTED)
            return
        started = {"status": "running", "started_at": job_store.now()}
        await asyncio.to_thread(job_store.set_values, self._engine, run.id, started)
        try:
            await asyncio.to_thread(
                partial(score_csv, scene=scene),
                run.input_path,
                run.output_path,
                model,
                self._settings,
                self._progress_callback(run),
            )
        except BatchAborted:
            await self._finish(run, "failed", INTERRUPTED)
        except Exception as err:  # the job fails, the service does not
            log.warning(
                "batch job %s (%s) failed: %s",
                run.id,
                run.name,
                err,
                exc_info=not isinstance(err, TrajectoryError),
            )
            await self._finish(run, "failed", public_detail(err, run))
        else:
            await self._finish(run, "done", None)

    def _progress_callback(self, run: _Run) -> Callable[[BatchProgress, list[LineError]], None]:
        """Runs in the scoring thread: keeps progress, writes it at most once a second."""
        limit = self._settings.batch_max_listed_errors
        throttle = ProgressThrottle()

        def on_progress(progress: BatchProgress, errors: list[LineError]) -> None:
            if self._stopping:
                raise BatchAborted("the service is shutting down")
            run.progress = progress
            room = max(limit - len(run.errors), 0)
            run.errors.extend(errors[:room])
            run.errors_truncated |= len(errors) > room
            if throttle.due():
                try:
                    job_store.set_values(self._engine, run.id, run.progress_values())
                except SQLAlchemyError as err:  # progress is advisory; the end state is not
                    log.warning("batch job %s: progress not saved: %s", run.id, err)

        return on_progress

    async def _finish(self, run: _Run, status: str, detail: str | None) -> None:
        values = run.progress_values() | {
            "status": status,
            "detail": detail,
            "finished_at": job_store.now(),
        }
        try:
            await asyncio.to_thread(job_store.set_values, self._engine, run.id, values)
        finally:
            self._metrics.batch_jobs.labels(status).inc()
            if status == "done":
                self._metrics.batch_windows.inc(run.progress.windows)
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(run.input_path.unlink)
            else:  # the input and any partial output: a failed job has no result
                await asyncio.to_thread(shutil.rmtree, run.dir, True)

    def _start_up(self) -> None:
        """Fail the jobs this replica left unfinished; expire old jobs and stray folders."""
        left = job_store.fail_unfinished(self._engine, self._base, _pid_alive, INTERRUPTED)
        for job_id in left:
            log.warning("batch job %s was interrupted by a restart; marked failed", job_id)
            shutil.rmtree(self._root / job_id, ignore_errors=True)
        self._expire(strays=True)

    def _expire(self, strays: bool = False) -> None:
        """Delete finished jobs (rows and folders) older than the retention period; with
        `strays`, also old folders without a row (a crash between spooling and recording)."""
        cutoff = job_store.now() - timedelta(seconds=self._settings.batch_retention_s)
        for job_id in job_store.remove_finished_before(self._engine, cutoff):
            shutil.rmtree(self._root / job_id, ignore_errors=True)
        if not strays or not self._root.is_dir():
            return
        old = [
            p.name
            for p in self._root.iterdir()
            if _JOB_ID.fullmatch(p.name) and p.is_dir() and p.stat().st_mtime < cutoff.timestamp()
        ]
        for job_id in set(old) - job_store.known(self._engine, old):
            shutil.rmtree(self._root / job_id, ignore_errors=True)

    async def close(self) -> None:
        """Abort running jobs (marked failed) and wait for their threads to notice."""
        self._stopping = True
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
