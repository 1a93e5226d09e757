"""Background writer of the prediction log: requests enqueue rows, a task inserts them in batches.

Inserts run in a worker thread, off the event loop. A failed insert keeps its rows and retries
with backoff (the database may come back). `close()` drains everything; if the database is
still down at shutdown the remaining rows go to a JSON-lines spill file beside the work dir,
so a SIGTERM loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert

from serving.db import predictions
from serving.metrics import ServingMetrics

log = logging.getLogger(__name__)

Row = dict[str, Any]


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
        self._last_error: str | None = None
        self._failures = 0
        self.written = 0

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
            self._spill()

    def state(self) -> dict[str, object]:
        return {
            "ok": self._failures == 0,
            "queued": len(self._rows),
            "written": self.written,
            "last_error": self._last_error,
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
                await asyncio.to_thread(self._insert, batch)
            except Exception as err:  # noqa: BLE001 - any driver error: keep the rows, retry
                self._rows.extendleft(reversed(batch))
                self._failures += 1
                self._last_error = f"{type(err).__name__}: {err}"[:500]
                log.warning("prediction log insert failed (%s); retrying", self._last_error)
                if self._closing and self._failures >= 5:
                    return  # close() spills what is left
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff, self._failures, self._last_error = 0.1, 0, None
            self.written += len(batch)
            self._metrics.log_rows.labels("written").inc(len(batch))
            self._metrics.log_queue.set(len(self._rows))

    def _insert(self, batch: list[Row]) -> None:
        with self._engine.begin() as conn:
            conn.execute(insert(predictions), batch)

    def _spill(self) -> None:
        self._spill_dir.mkdir(parents=True, exist_ok=True)
        path = self._spill_dir / f"predictions-spill-{time.time_ns()}.jsonl"
        with path.open("w") as f:
            for row in self._rows:
                f.write(json.dumps(row, default=str) + "\n")
        self._metrics.log_rows.labels("spilled").inc(len(self._rows))
        log.error("database unavailable at shutdown: %d rows spilled to %s", len(self._rows), path)
        self._rows.clear()
