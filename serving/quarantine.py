"""Writing prediction-log rows so that one bad row never blocks the rest.

Two kinds of failure, told apart by the error:
- the database is unavailable (connection lost, server down, locked, permissions): nothing
  is written, `DatabaseUnavailable` is raised, and the caller keeps every row for a retry;
- some rows are bad (the database refuses them: NOT NULL, too long, NaN in JSONB, a NUL in a
  string; or the driver cannot send them): the batch is bisected in rolled-back probes to find
  them, the good rows are inserted, and the bad ones go to `predictions_quarantine` with the
  reason (escaped JSON text), or, if even that insert is refused, to a quarantine JSON-lines
  file in the spill directory.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, exists, insert, select
from sqlalchemy import exc as sa_exc

from serving.db import predictions, quarantine, spill_imports
from trajectory.exceptions import TrajectoryError
from trajectory.privacy.files import QUARANTINE_GLOB

log = logging.getLogger(__name__)

Row = dict[str, Any]

# driver messages that blame the values sent, not the connection (psycopg2, sqlite3)
_BINDING = re.compile(r"can't adapt|Error binding parameter|is not supported|NUL", re.IGNORECASE)


class DatabaseUnavailable(TrajectoryError):
    """The database cannot take rows now; `detail` is for the server log, never a client."""

    def __init__(self, detail: str) -> None:
        super().__init__("database unavailable")
        self.detail = detail


class AlreadyImported(TrajectoryError):
    """The marker row (a spill file's name) is already in the database."""


@dataclass
class WriteOutcome:
    written: int = 0
    quarantined: int = 0  # into the table or, failing that, the file


def is_bad_data(err: BaseException) -> bool:
    """True when the rows are at fault, False when the database is (retry later)."""
    if isinstance(err, sa_exc.DBAPIError):
        if err.connection_invalidated:
            return False
        if isinstance(err, sa_exc.DataError | sa_exc.IntegrityError):
            return True
        if isinstance(err, sa_exc.ProgrammingError | sa_exc.InterfaceError):
            return bool(_BINDING.search(str(err.orig)))
        return False
    # a value that fails in SQLAlchemy's bind processing (not JSON-serialisable) or that the
    # driver refuses before sending (psycopg2: "A string literal cannot contain NUL")
    return isinstance(err, sa_exc.StatementError | ValueError | TypeError)


def reason_of(err: BaseException) -> str:
    """The driver's message without SQL or parameters, printable, at most 500 characters."""
    orig = getattr(err, "orig", None) or err
    message = f"{type(orig).__name__}: {orig}".strip()
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in message)[:500]


def write_rows(
    engine: Engine, rows: list[Row], spill_dir: Path, marker: Row | None = None
) -> WriteOutcome:
    """Insert `rows` (and `marker` into `spill_imports`, in the same transaction); rows the
    database refuses are quarantined. Raises DatabaseUnavailable (nothing written) or
    AlreadyImported (the marker exists)."""
    try:
        _insert(engine, predictions, rows, marker)
        return WriteOutcome(written=len(rows))
    except Exception as err:  # noqa: BLE001 - sorted into bad rows or an outage
        _raise_unless_bad_data(err)
    if marker is not None and _recorded(engine, marker["name"]):
        raise AlreadyImported(marker["name"])
    bad = _find_bad(engine, rows)
    good = [r for i, r in enumerate(rows) if i not in bad]
    held = [_quarantine_row(rows[i], reason) for i, reason in bad.items()]
    try:
        with engine.begin() as conn:
            _execute(conn, predictions, good, marker)
            if held:
                conn.execute(insert(quarantine), held)
    except Exception as err:  # noqa: BLE001 - the quarantine insert failed: bad rows to a file
        log.error("quarantine insert failed (%s): quarantined rows go to a file", reason_of(err))
        try:  # the good rows alone (an outage now raises: the batch is retried)
            _insert(engine, predictions, good, marker)
        except Exception as again:  # noqa: BLE001
            _raise_unless_bad_data(again)
            log.error("prediction log rows refused after bisection (%s)", reason_of(again))
            bad = {i: reason_of(again) for i in range(len(rows))}
            good = []  # cannot happen with row-local errors; keep every row, in the file
        _quarantine_file(spill_dir, [(rows[i], reason) for i, reason in bad.items()])
    for i, reason in bad.items():
        log.warning("prediction log row %s quarantined: %s", rows[i].get("request_id"), reason)
    return WriteOutcome(written=len(good), quarantined=len(bad))


def _raise_unless_bad_data(err: Exception) -> None:
    if not is_bad_data(err):
        raise DatabaseUnavailable(reason_of(err)) from err


def _insert(engine: Engine, table: Table, rows: list[Row], marker: Row | None) -> None:
    with engine.begin() as conn:
        _execute(conn, table, rows, marker)


def _execute(conn: Any, table: Table, rows: list[Row], marker: Row | None) -> None:
    if marker is not None:
        conn.execute(insert(spill_imports), [marker])
    if rows:
        conn.execute(insert(table), rows)


def _recorded(engine: Engine, name: str) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(select(exists().where(spill_imports.c.name == name))).scalar())


def _find_bad(engine: Engine, rows: list[Row]) -> dict[int, str]:
    """Index -> reason of each row the database refuses, by bisection; nothing is kept."""
    bad: dict[int, str] = {}
    pending = [(0, len(rows))]
    while pending:
        lo, hi = pending.pop()
        try:
            with engine.connect() as conn:  # closed without a commit: rolled back
                conn.execute(insert(predictions), rows[lo:hi])
                conn.rollback()
        except Exception as err:  # noqa: BLE001
            _raise_unless_bad_data(err)
            if hi - lo == 1:
                bad[lo] = reason_of(err)
            else:
                mid = (lo + hi) // 2
                pending += [(mid, hi), (lo, mid)]
    return dict(sorted(bad.items()))


def _fits(value: object, size: int) -> str | None:
    return value if isinstance(value, str) and len(value) <= size and value.isprintable() else None


def _quarantine_row(row: Row, reason: str) -> Row:
    return {
        "created_at": datetime.now(UTC),
        "request_id": _fits(row.get("request_id"), 64),
        "client_key": _fits(row.get("client_key"), 32),
        "scene_key": _fits(row.get("scene_key"), 32),
        "agent_key": _fits(row.get("agent_key"), 32),
        "reason": reason,
        "row": row_json(row),
    }


def row_json(row: Row) -> str:
    """A row as escaped JSON text: ASCII only (a NUL becomes \\u0000), NaN kept as NaN."""
    return json.dumps(row, ensure_ascii=True, default=_encode)


def _encode(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else repr(value)


def _quarantine_file(spill_dir: Path, held: list[tuple[Row, str]]) -> None:
    spill_dir.mkdir(parents=True, exist_ok=True)
    path = spill_dir / QUARANTINE_GLOB.replace("*", str(time.time_ns()))
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        for row, reason in held:
            f.write(f'{{"reason": {json.dumps(reason)}, "row": {row_json(row)}}}\n')
    tmp.replace(path)
    log.error("%d quarantined prediction rows written to %s", len(held), path)
