"""The service's tables as the privacy jobs see them: reflected, deleted from in batches, audited.

The tables belong to `serving.db`; they are reflected here (as `trajectory.monitoring.live`
reflects `predictions`) so the domain package does not import the service. A database the
service never opened has none of them: every step then finds nothing to delete.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, MetaData, Table, delete, insert, inspect, select

log = logging.getLogger(__name__)

PREDICTIONS, QUARANTINE, BATCH_JOBS, AUDIT = (
    "predictions", "predictions_quarantine", "batch_jobs", "admin_audit",
)


def reflect(engine: Engine) -> dict[str, Table]:
    """The service's tables that exist in this database, by name."""
    present = set(inspect(engine).get_table_names())
    wanted = [n for n in (PREDICTIONS, QUARANTINE, BATCH_JOBS, AUDIT) if n in present]
    metadata = MetaData()
    metadata.reflect(engine, only=wanted)
    return dict(metadata.tables)


def delete_where(engine: Engine, table: Table, where: ColumnElement[bool], batch: int) -> int:
    """Delete the rows matching `where`, `batch` at a time (short transactions, short locks on
    a log the service keeps writing); -> how many."""
    pk = table.c.id
    total = 0
    while True:
        with engine.begin() as conn:
            ids = conn.execute(select(pk).where(where).limit(batch)).scalars().all()
            if ids:
                conn.execute(delete(table).where(pk.in_(ids)))
        total += len(ids)
        if len(ids) < batch:
            return total


def select_column(engine: Engine, table: Table, column: str,
                  where: ColumnElement[bool]) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(table.c[column]).where(where)).scalars())


def write_audit(engine: Engine, tables: dict[str, Table], action: str, outcome: str,
                detail: dict[str, Any], source: str) -> bool:
    """One row in the service's `admin_audit` (v2: with an outcome); -> False when the
    database has no such table yet (the service never ran against it)."""
    audit = tables.get(AUDIT)
    if audit is None or "outcome" not in audit.c:
        log.warning("no admin_audit table (schema v2) in the prediction log's database: "
                    "%s not audited there", action)
        return False
    row = {
        "created_at": datetime.now(UTC),
        "key_fingerprint": "-",  # no API key: an operator's command or a scheduled job
        "action": action,
        "detail": json.loads(json.dumps(detail, default=str)),
        "outcome": outcome,
        "source": source[:64],
    }
    with engine.begin() as conn:
        conn.execute(insert(audit), [row])
    return True
