"""Background writer of the prediction log: requests enqueue rows, a task inserts them in batches.

Inserts run in a worker thread, off the event loop, through `serving.quarantine.write_rows`:
rows the database refuses are quarantined (table or file) and the rest written, so one bad row
never blocks the log. When the database is unavailable the batch is kept and retried with
backoff. `close()` drains everything; rows still unwritten because the database is down at
shutdown go to a spill file in the work dir (`serving.spills`), replayed at the next start-up.

Rows are also appended to a journal file before the answer leaves (`Journal`): a replica
killed outright (SIGKILL, out of memory) loses none of the rows its clients were answered
with; the next start replays what the database did not get (`serving.spills`).

`state()` is shown on the unauthenticated /ready: a status and counts only. The error itself
goes to the server log.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections import Counter, deque
from pathlib import Path
from typing import IO

from sqlalchemy import Engine

from serving.metrics import ServingMetrics
from serving.quarantine import DatabaseUnavailable, Row, row_json, write_rows
from serving.spills import write_spill
from trajectory.privacy.files import JOURNAL_GLOB

__all__ = ["PredictionLog", "Row"]

log = logging.getLogger(__name__)

CLOSE_ATTEMPTS = 5  # tries at shutdown before the rows are spilled
SEGMENT_ROWS = 5000  # a journal segment is sealed after this many rows
SEGMENT_S = 30.0  # or this many seconds


class Journal:
    """Append-only segments `predictions-journal-<pid>-<ns>.jsonl` in the work dir, each held
    under an exclusive lock (`flock`) while its process lives, so a replay never reads a live
    one. A sealed segment is deleted once every row in it reached the database (written or
    quarantined); what a killed process leaves is replayed at the next start, skipping rows
    the database already holds. Appends are not fsynced: they survive the process, not the
    host."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = None
        self._segment = 0
        self._opened = 0.0
        self._rows = 0
        self._paths: dict[int, Path] = {}
        self._files: dict[int, IO[str]] = {}
        self._pending: dict[int, int] = {}  # segment -> rows not yet in the database

    def append(self, rows: list[Row]) -> int:
        """Write rows to the current segment; -> its number (for `done`)."""
        if self._file is None or self._rows >= SEGMENT_ROWS or (
            time.monotonic() - self._opened > SEGMENT_S
        ):
            self._open()
        assert self._file is not None
        self._file.write("".join(row_json(r) + "\n" for r in rows))
        self._file.flush()
        self._rows += len(rows)
        self._pending[self._segment] += len(rows)
        return self._segment

    def done(self, segment: int, rows: int) -> None:
        """`rows` of `segment` are in the database; a sealed segment with none left goes."""
        if segment not in self._pending:  # 0: rows the journal could not take
            return
        self._pending[segment] -= rows
        if segment != self._segment and self._pending[segment] <= 0:
            self._drop(segment)

    def close(self) -> None:
        """Every row is in the database or in a spill file: delete all segments."""
        for segment in list(self._paths):
            self._drop(segment)
        self._file = None

    def _open(self) -> None:
        sealed = self._segment
        self._segment += 1
        path = self._dir / JOURNAL_GLOB.replace("*", f"{os.getpid()}-{time.time_ns()}")
        f = path.open("a")
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._paths[self._segment], self._files[self._segment] = path, f
        self._pending[self._segment] = 0
        self._file, self._opened, self._rows = f, time.monotonic(), 0
        if sealed in self._pending and self._pending[sealed] <= 0:
            self._drop(sealed)

    def _drop(self, segment: int) -> None:
        self._paths.pop(segment).unlink(missing_ok=True)
        self._files.pop(segment).close()
        del self._pending[segment]


class PredictionLog:
    """Queue + batch writer for the `predictions` table."""

    def __init__(
        self,
        engine: Engine,
        metrics: ServingMetrics,
        *,
        batch_size: int,
        flush_s: float,
        max_queue: int,
        spill_dir: Path,
        journal: bool = True,
    ) -> None:
        self._engine, self._metrics = engine, metrics
        self._batch_size, self._flush_s, self._max_queue = batch_size, flush_s, max_queue
        self._spill_dir = spill_dir
        self._journal = Journal(spill_dir) if journal else None
        self._rows: deque[tuple[int, Row]] = deque()  # (journal segment, row)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._failures = 0
        self.written = 0
        self.quarantined = 0

    def record(self, rows: list[Row]) -> None:
        """Enqueue rows without blocking; over `max_queue` the rows are dropped and counted."""
        if len(self._rows) + len(rows) > self._max_queue:
            self._metrics.log_rows.labels("dropped").inc(len(rows))
            log.error("prediction log queue full (%d rows); dropping %d", self._max_queue, len(rows))
            return
        segment = self._journal_append(rows)
        self._rows.extend((segment, row) for row in rows)
        self._metrics.log_queue.set(len(self._rows))
        if len(self._rows) >= self._batch_size:
            self._wake.set()

    def _journal_append(self, rows: list[Row]) -> int:
        if self._journal is None:
            return 0
        try:
            return self._journal.append(rows)
        except OSError as err:  # a full disk must not fail the request: the rows are queued
            self._metrics.log_rows.labels("unjournaled").inc(len(rows))
            log.error("prediction log journal: %s; %d rows only in memory", err, len(rows))
            return 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="prediction-log-writer")

    async def close(self) -> None:
        """Flush every queued row (or spill it to a file) and stop the writer."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._rows:
            path, n = write_spill(self._spill_dir, (row for _, row in self._rows))
            self._metrics.log_rows.labels("spilled").inc(n)
            log.error("database unavailable at shutdown: %d rows spilled to %s", n, path)
            self._rows.clear()
        if self._journal is not None:
            self._journal.close()

    def state(self) -> dict[str, object]:
        """For /ready: no error text (it may hold SQL and other clients' rows)."""
        return {
            "ok": self._failures == 0,
            "status": "ok" if self._failures == 0 else "unavailable",
            "queued": len(self._rows),
            "written": self.written,
            "quarantined": self.quarantined,
        }

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            if not self._rows:
                if self._closing:
                    return
                try:
                    await asyncio.wait_for(self._wake.wait(), self._flush_s)
                except TimeoutError:
                    pass
                self._wake.clear()
                continue
            batch = [self._rows.popleft() for _ in range(min(self._batch_size, len(self._rows)))]
            try:
                outcome = await asyncio.to_thread(
                    write_rows, self._engine, [row for _, row in batch], self._spill_dir
                )
            except Exception as err:
                self._rows.extendleft(reversed(batch))
                self._failures += 1
                detail = err.detail if isinstance(err, DatabaseUnavailable) else repr(err)
                log.warning("prediction log: database unavailable (%s); %d rows kept, retrying",
                            detail, len(self._rows), exc_info=not isinstance(err, DatabaseUnavailable))
                if self._closing and self._failures >= CLOSE_ATTEMPTS:
                    return  # close() spills what is left
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff, self._failures = 0.1, 0
            if self._journal is not None:
                for segment, n in Counter(segment for segment, _ in batch).items():
                    self._journal.done(segment, n)
            self.written += outcome.written
            self.quarantined += outcome.quarantined
            self._metrics.log_rows.labels("written").inc(outcome.written)
            if outcome.quarantined:
                self._metrics.log_rows.labels("quarantined").inc(outcome.quarantined)
            self._metrics.log_queue.set(len(self._rows))
