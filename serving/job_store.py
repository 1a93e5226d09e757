"""The `batch_jobs` table: batch job state shared by every replica on the database.

Plain blocking functions on an Engine: call them from a worker thread (`asyncio.to_thread`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, RowMapping, delete, func, insert, or_, select, update

from serving.db import batch_jobs
from serving.schemas import BatchJobStatus, BatchProgress, LineError, ModelRef

ACTIVE = ("queued", "running")
Row = RowMapping | dict[str, Any]


def now() -> datetime:
    return datetime.now(UTC)


def add(engine: Engine, values: dict[str, Any]) -> Row:
    """A new job row; returns it as stored."""
    row = {
        "status": "queued",
        "created_at": now(),
        "started_at": None,
        "finished_at": None,
        "model": None,
        "errors": [],
        "errors_truncated": False,
        "detail": None,
        "progress": BatchProgress().model_dump(),
    } | values
    with engine.begin() as conn:
        conn.execute(insert(batch_jobs), [row])
    return row


def get(engine: Engine, job_id: str) -> RowMapping | None:
    with engine.connect() as conn:
        return conn.execute(select(batch_jobs).where(batch_jobs.c.id == job_id)).mappings().first()


def count_active(engine: Engine, owner: str) -> int:
    """Queued and running jobs of one owner, on any replica."""
    query = select(func.count()).where(batch_jobs.c.owner == owner, batch_jobs.c.status.in_(ACTIVE))
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def set_values(engine: Engine, job_id: str, values: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(update(batch_jobs).where(batch_jobs.c.id == job_id).values(**values))


def fail_unfinished(
    engine: Engine, replica: str, alive: Callable[[int], bool], detail: str
) -> list[str]:
    """Mark failed the queued and running jobs that a process of `replica` (rows
    `<replica>/<pid>`) left behind: those whose process is no longer `alive`; their ids.
    Sibling worker processes of the replica keep theirs."""
    mine = or_(batch_jobs.c.replica == replica, batch_jobs.c.replica.like(f"{replica}/%"))
    where = (mine, batch_jobs.c.status.in_(ACTIVE))
    with engine.begin() as conn:
        rows = conn.execute(select(batch_jobs.c.id, batch_jobs.c.replica).where(*where)).all()
        ids = [job_id for job_id, name in rows if not _owner_alive(name, alive)]
        if ids:
            conn.execute(
                update(batch_jobs)
                .where(batch_jobs.c.id.in_(ids), batch_jobs.c.status.in_(ACTIVE))
                .values(status="failed", detail=detail, finished_at=now())
            )
    return ids


def _owner_alive(name: str, alive: Callable[[int], bool]) -> bool:
    pid = name.rpartition("/")[2]
    return pid.isdigit() and alive(int(pid))


def remove_finished_before(engine: Engine, cutoff: datetime) -> list[str]:
    """Delete the rows of jobs finished before `cutoff`; their ids."""
    where = (batch_jobs.c.finished_at < cutoff, batch_jobs.c.status.not_in(ACTIVE))
    with engine.begin() as conn:
        ids = list(conn.execute(select(batch_jobs.c.id).where(*where)).scalars())
        if ids:
            conn.execute(delete(batch_jobs).where(batch_jobs.c.id.in_(ids)))
    return ids


def known(engine: Engine, ids: list[str]) -> set[str]:
    """The ids of `ids` that have a row."""
    if not ids:
        return set()
    with engine.connect() as conn:
        return set(conn.execute(select(batch_jobs.c.id).where(batch_jobs.c.id.in_(ids))).scalars())


def to_status(row: Row) -> BatchJobStatus:
    progress = BatchProgress.model_validate(row["progress"])
    done = row["status"] == "done"
    return BatchJobStatus(
        job_id=row["id"],
        status=row["status"],
        created_at=_seconds(row["created_at"]),
        finished_at=_seconds(row["finished_at"]) if row["finished_at"] else None,
        fraction=round(progress.fraction, 4),
        progress=progress,
        model=ModelRef.model_validate(row["model"]) if row["model"] else None,
        errors=[LineError.model_validate(e) for e in row["errors"]],
        errors_truncated=row["errors_truncated"],
        detail=row["detail"],
        result_url=f"/v1/batch/{row['id']}/result" if done else None,
    )


def _seconds(moment: datetime) -> float:
    """Epoch seconds; SQLite hands back naive datetimes, written in UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
