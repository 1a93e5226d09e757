"""Batch CSV jobs of the API: spool the upload to disk, score it in a worker thread, keep status.

One job runs at a time (scoring is CPU-bound and shares the machine with real-time traffic);
others wait queued. Job state lives in this process: ask the replica that took the upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from serving.batch import BatchAborted, score_csv
from serving.config import ServingSettings
from serving.errors import NotFoundError
from serving.metrics import ServingMetrics
from serving.registry import ServedModel
from serving.schemas import BatchJobStatus, BatchProgress, LineError, ModelRef

log = logging.getLogger(__name__)

_SPOOL_BUFFER = 1 << 20


@dataclass
class BatchJob:
    id: str
    dir: Path
    input_path: Path
    created_at: float = field(default_factory=time.time)
    status: str = "queued"
    finished_at: float | None = None
    progress: BatchProgress = field(default_factory=BatchProgress)
    model: ModelRef | None = None
    errors: list[LineError] = field(default_factory=list)
    errors_truncated: bool = False
    detail: str | None = None

    @property
    def output_path(self) -> Path:
        return self.dir / "result.csv"

    def to_status(self) -> BatchJobStatus:
        return BatchJobStatus(
            job_id=self.id,
            status=self.status,  # type: ignore[arg-type]
            created_at=self.created_at,
            finished_at=self.finished_at,
            fraction=round(self.progress.fraction, 4),
            progress=self.progress.model_copy(),
            model=self.model,
            errors=list(self.errors),
            errors_truncated=self.errors_truncated,
            detail=self.detail,
            result_url=f"/v1/batch/{self.id}/result" if self.status == "done" else None,
        )


class BatchJobs:
    """The jobs of this process, their spool folders and the one-at-a-time runner."""

    def __init__(self, settings: ServingSettings, metrics: ServingMetrics) -> None:
        self._settings, self._metrics = settings, metrics
        self._root = settings.resolved_batch_dir()
        self._jobs: dict[str, BatchJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._gate = asyncio.Semaphore(1)
        self._stopping = False

    async def spool(self, chunks: AsyncIterator[bytes], suffix: str) -> BatchJob:
        """Write an upload to the job's folder as it arrives (memory: one buffer)."""
        job_id = uuid.uuid4().hex
        job_dir = self._root / job_id
        await asyncio.to_thread(job_dir.mkdir, parents=True, exist_ok=True)
        job = BatchJob(id=job_id, dir=job_dir, input_path=job_dir / f"input{suffix}")
        try:
            with job.input_path.open("wb") as f:
                buffer = bytearray()
                async for chunk in chunks:
                    buffer += chunk
                    if len(buffer) >= _SPOOL_BUFFER:
                        await asyncio.to_thread(f.write, bytes(buffer))
                        buffer.clear()
                await asyncio.to_thread(f.write, bytes(buffer))
        except BaseException:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise
        self._jobs[job_id] = job
        return job

    def start(self, job: BatchJob, model: ServedModel, scene: str | None = None) -> None:
        job.model = ModelRef(name=model.name, version=model.version)
        task = asyncio.create_task(self._run(job, model, scene), name=f"batch-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def get(self, job_id: str) -> BatchJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no batch job {job_id!r} on this replica")
        return job

    async def _run(self, job: BatchJob, model: ServedModel, scene: str | None) -> None:
        async with self._gate:
            if self._stopping:
                return
            job.status = "running"
            limit = self._settings.batch_max_listed_errors

            def on_progress(progress: BatchProgress, errors: list[LineError]) -> None:
                if self._stopping:
                    raise BatchAborted("the service is shutting down")
                job.progress = progress
                room = limit - len(job.errors)
                job.errors.extend(errors[: max(room, 0)])
                job.errors_truncated |= len(errors) > room

            try:
                await asyncio.to_thread(
                    partial(score_csv, scene=scene),
                    job.input_path, job.output_path, model, self._settings, on_progress,
                )
            except Exception as err:  # noqa: BLE001 - the job fails, the service does not
                job.status, job.detail = "failed", str(err)[:1000]
                log.warning("batch job %s failed: %s", job.id, err)
            else:
                job.status = "done"
                self._metrics.batch_windows.inc(job.progress.windows)
            finally:
                job.finished_at = time.time()
                self._metrics.batch_jobs.labels(job.status).inc()
                with contextlib.suppress(OSError):
                    job.input_path.unlink()
        self._expire()

    def _expire(self) -> None:
        """Forget finished jobs (and their files) older than the retention period."""
        cutoff = time.time() - self._settings.batch_retention_s
        for job in list(self._jobs.values()):
            if job.finished_at is not None and job.finished_at < cutoff:
                shutil.rmtree(job.dir, ignore_errors=True)
                del self._jobs[job.id]

    async def close(self) -> None:
        """Abort running jobs (marked failed) and wait for their threads to notice."""
        self._stopping = True
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
