"""What the pages read: the prediction log (cached for `refresh_s`), its scored forecasts and
the decision records. One instance per app; reads are short and thread-safe."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Engine, create_engine, inspect
from sqlalchemy.engine import make_url

from dashboard import logdata
from dashboard.decisions import DecisionRecord, read_decisions
from dashboard.settings import DashboardSettings


@dataclass
class LogView:
    """The rows of the default window (the lookback before the newest row) and their scores."""

    rows: pd.DataFrame
    errors: pd.DataFrame
    span: tuple[datetime, datetime] | None
    note: str  # why the view is empty, else ""


def shorten(pseudonym: object, n: int = 8) -> str:
    """A pseudonym as displayed: its first `n` hex characters."""
    return "-" if pseudonym is None or pd.isna(pseudonym) else str(pseudonym)[:n]


class Store:
    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._cached: tuple[float, LogView] | None = None

    def engine(self) -> Engine | None:
        """The log's engine; None while an embedded SQLite log does not exist (never created
        here: the service owns the schema)."""
        url = self.settings.resolved_database_url()
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, ":memory:"):
            from pathlib import Path

            if not Path(str(parsed.database)).is_file():
                return None
        if self._engine is None:
            self._engine = create_engine(url, pool_pre_ping=True, hide_parameters=True)
        return self._engine

    def view(self) -> LogView:
        """The default window of the log, read at most once per `refresh_s`."""
        with self._lock:
            now = time.monotonic()
            if self._cached and now - self._cached[0] < self.settings.refresh_s:
                return self._cached[1]
            view = self._read()
            self._cached = (now, view)
            return view

    def _read(self) -> LogView:
        empty = pd.DataFrame(columns=logdata.COLUMNS)
        engine = self.engine()
        if engine is None or not inspect(engine).has_table(logdata.TABLE):
            where = make_url(self.settings.resolved_database_url()).render_as_string()
            return LogView(empty, logdata.live_errors(empty, 1, 1), None,
                           f"no prediction log yet at {where}")
        span = logdata.log_span(engine)
        if span is None:
            return LogView(empty, logdata.live_errors(empty, 1, 1), None,
                           "the prediction log is empty")
        start = span[1] - timedelta(hours=self.settings.lookback_hours)
        rows = logdata.read_log(engine, start, span[1] + timedelta(seconds=1),
                                limit=self.settings.max_rows)
        errors = logdata.live_errors(rows, self.settings.dt, self.settings.neighbour_radius)
        return LogView(rows, errors, span, "")

    def decisions(self) -> list[DecisionRecord]:
        return read_decisions(self.settings.work_dir)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
