"""Spill files: prediction-log rows written to disk when the database is down at shutdown,
and their replay (at start-up and by `trajectory replay-log`), exactly once; the same for the
journal files a killed process left (`serving.predictions_log.Journal`), whose rows the
database may partly hold already: those are skipped.

A spill is `predictions-spill-<ns>.jsonl` in the work dir, written to a temp name and renamed.
Replay inserts a file's rows and records its name and SHA-256 in `spill_imports` in one
transaction, then deletes the file; a file already recorded is only deleted. Rows the database
refuses are quarantined as the live writer does (`serving.quarantine`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from serving.db import predictions, pseudonymise_v1_row, spill_imports
from serving.quarantine import AlreadyImported, Row, row_json, write_rows
from trajectory.privacy.files import JOURNAL_GLOB, SPILL_GLOB, in_use
from trajectory.privacy.pseudonym import Pseudonymiser

log = logging.getLogger(__name__)



@dataclass
class ReplayReport:
    files: int = 0  # replayed now
    rows: int = 0  # inserted into `predictions`
    quarantined: int = 0
    skipped: int = 0  # already imported before: only deleted


def write_spill(spill_dir: Path, rows: Iterable[Row]) -> tuple[Path, int]:
    """Rows -> a new spill file (atomic: temp name, then rename); -> (path, rows)."""
    spill_dir.mkdir(parents=True, exist_ok=True)
    path = spill_dir / SPILL_GLOB.replace("*", str(time.time_ns()))
    tmp = path.with_suffix(".tmp")
    n = 0
    with tmp.open("w") as f:
        for row in rows:
            f.write(row_json(row) + "\n")
            n += 1
    tmp.replace(path)
    return path, n


def replay_spills(
    engine: Engine, spill_dir: Path, pseudonyms: Pseudonymiser | None = None
) -> ReplayReport:
    """Import every spill file in `spill_dir`, oldest first (DatabaseUnavailable propagates:
    the files stay for the next try). `pseudonyms` converts rows spilled by a v1 service."""
    report = ReplayReport()
    found = [
        *sorted(spill_dir.glob(SPILL_GLOB)),  # first: a journal's rows may be in a spill too
        *sorted(p for p in spill_dir.glob(JOURNAL_GLOB) if not in_use(p)),
    ] if spill_dir.is_dir() else []
    for path in found:
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        with engine.connect() as conn:
            known = conn.execute(
                select(spill_imports.c.sha256).where(spill_imports.c.name == path.name)
            ).scalar()
        if known is not None and known != digest:
            log.error("%s was imported before with other contents; left in place", path)
            continue
        rows = [] if known else [_decode(line, pseudonyms) for line in data.splitlines() if line]
        if rows and path.match(JOURNAL_GLOB):
            rows = _not_logged(engine, rows)
        marker = {"name": path.name, "sha256": digest, "rows": len(rows),
                  "imported_at": datetime.now(UTC)}
        try:
            if known is not None:
                raise AlreadyImported(path.name)
            outcome = write_rows(engine, rows, spill_dir, marker)
        except AlreadyImported:
            log.warning("%s was already imported; deleting it", path)
            report.skipped += 1
        else:
            report.files += 1
            report.rows += outcome.written
            report.quarantined += outcome.quarantined
            log.info("replayed %s: %d rows written, %d quarantined", path.name,
                     outcome.written, outcome.quarantined)
        path.unlink()
    return report


def _not_logged(engine: Engine, rows: list[Row]) -> list[Row]:
    """The rows of a journal that are not in `predictions` yet (same request id, variant,
    agent and latency: one request logs an agent once per variant)."""
    def key(row: Row) -> tuple[Any, ...]:
        return row["request_id"], row["variant"], row["agent_key"], row["latency_ms"]

    c = predictions.c
    logged: set[tuple[Any, ...]] = set()
    ids = sorted({row["request_id"] for row in rows})
    with engine.connect() as conn:
        for i in range(0, len(ids), 500):
            logged.update(tuple(r) for r in conn.execute(
                select(c.request_id, c.variant, c.agent_key, c.latency_ms)
                .where(c.request_id.in_(ids[i:i + 500]))
            ))
    return [row for row in rows if key(row) not in logged]


def _decode(line: bytes, pseudonyms: Pseudonymiser | None) -> Row:
    row: dict[str, Any] = json.loads(line)
    if isinstance(row.get("created_at"), str):
        row["created_at"] = datetime.fromisoformat(row["created_at"])
    if "agent_id" in row and pseudonyms is not None:  # spilled by a v1 service: raw ids
        row = pseudonymise_v1_row(row, pseudonyms)
    return row
