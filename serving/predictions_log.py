"""Background writer of the prediction log: requests enqueue rows, a task inserts them in batches.

Inserts run in a worker thread, off the event loop, through `serving.quarantine.write_rows`:
rows the database refuses are quarantined (table or file) and the rest written, so one bad row
never blocks the log. When the database is unavailable the batch is kept and retried with
backoff. `close()` drains everything; rows still unwritten because the database is down at
shutdown go to a spill file in the work dir (`serving.spills`), replayed at the next start-up.

`state()` is shown on the unauthenticated /ready: a status and counts only. The error itself
goes to the server log.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from pathlib import Path

from sqlalchemy import Engine

from serving.metrics import ServingMetrics
from serving.quarantine import DatabaseUnavailable, Row, write_rows
from serving.spills import write_spill

__all__ = ["PredictionLog", "Row"]

log = logging.getLogger(__name__)

CLOSE_ATTEMPTS = 5  # tries at shutdown before the rows are spilled


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
    ) -> None:
        self._engine, self._metrics = engine, metrics
        self._batch_size, self._flush_s, self._max_queue = batch_size, flush_s, max_queue
        self._spill_dir = spill_dir
        self._rows: deque[Row] = deque()
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
        self._rows.extend(rows)
        self._metrics.log_queue.set(len(self._rows))
        if len(self._rows) >= self._batch_size:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="prediction-log-writer")

    async def close(self) -> None:
        """Flush every queued row (or spill it to a file) and stop the writer."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._rows:
            path, n = write_spill(self._spill_dir, self._rows)
            self._metrics.log_rows.labels("spilled").inc(n)
            log.error("database unavailable at shutdown: %d rows spilled to %s", n, path)
            self._rows.clear()

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
                outcome = await asyncio.to_thread(write_rows, self._engine, batch, self._spill_dir)
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
            self.written += outcome.written
            self.quarantined += outcome.quarantined
            self._metrics.log_rows.labels("written").inc(outcome.written)
            if outcome.quarantined:
                self._metrics.log_rows.labels("quarantined").inc(outcome.quarantined)
            self._metrics.log_queue.set(len(self._rows))
