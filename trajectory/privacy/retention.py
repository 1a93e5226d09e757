"""Retention: delete what is older than its period, in batches, and audit the counts.

    prediction log, quarantine, spill rows     TRAJ_PRIVACY_ / SERVING_LOG_RETENTION_DAYS
    finished batch jobs (row and folder)       TRAJ_PRIVACY_ / SERVING_BATCH_RETENTION_S
    evaluation folders (<work_dir>/monitoring) TRAJ_PRIVACY_ / TRAJ_MONITOR_RETENTION_DAYS

What `trajectory privacy purge` and the `trajectory_retention` DAG run. Idempotent: a second
run at the same time finds nothing more to delete.
"""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, and_, create_engine, or_

from trajectory.privacy import files, store
from trajectory.privacy.settings import PrivacySettings

log = logging.getLogger(__name__)

ACTION = "privacy-purge"
MONITORING_RUN = "%Y%m%dT%H%M%S"  # folder names of trajectory.monitoring.job, in UTC
FINISHED = ("done", "failed")
ACTIVE = ("queued", "running")


def purge(work_dir: Path, privacy: PrivacySettings, now: datetime | None = None,
          source: str = "cli") -> dict[str, Any]:
    """Delete everything past its retention period; -> counts per place and the cutoffs."""
    now = now or datetime.now(UTC)
    cutoffs = {
        "log": now - timedelta(days=privacy.log_retention_days),
        "batch": now - timedelta(seconds=privacy.batch_retention_s),
        "monitoring": now - timedelta(days=privacy.monitoring_retention_days),
    }
    counts: dict[str, int] = {}
    engine = create_engine(privacy.resolved_database_url(work_dir), hide_parameters=True)
    tables: dict[str, Table] = {}
    try:
        tables = store.reflect(engine)
        try:
            _purge_database(engine, tables, cutoffs, privacy, counts)
            _purge_spills(privacy.resolved_serving_dirs(work_dir), cutoffs["log"], counts)
            _purge_job_folders(engine, tables, privacy.resolved_batch_dirs(work_dir),
                               cutoffs["batch"], privacy.batch_size, counts)
            counts["monitoring_folders"] = _purge_monitoring(work_dir / "monitoring",
                                                             cutoffs["monitoring"])
        except Exception as err:
            store.write_audit(engine, tables, ACTION, "failed",
                              _detail(counts, cutoffs) | {"error": type(err).__name__}, source)
            raise
        report = _detail(counts, cutoffs)
        report["audited"] = store.write_audit(engine, tables, ACTION, "ok", report, source)
    finally:
        engine.dispose()
    log.info("privacy purge: %s", counts)
    return report


def _detail(counts: dict[str, int], cutoffs: dict[str, datetime]) -> dict[str, Any]:
    return {"counts": dict(counts),
            "cutoffs": {k: v.isoformat(timespec="seconds") for k, v in cutoffs.items()}}


def _purge_database(engine: Engine, tables: dict[str, Table], cutoffs: dict[str, datetime],
                    privacy: PrivacySettings, counts: dict[str, int]) -> None:
    for name in (store.PREDICTIONS, store.QUARANTINE):
        table = tables.get(name)
        counts[name] = 0 if table is None else store.delete_where(
            engine, table, table.c.created_at < cutoffs["log"], privacy.batch_size)


def _purge_spills(dirs: list[Path], cutoff: datetime, counts: dict[str, int]) -> None:
    """Spill rows created before the cutoff (a file left empty is deleted)."""
    counts["spill_rows"] = sum(
        files.drop_spill_rows(path, lambda row: _before(row.get("created_at"), cutoff))
        for path in files.spill_files(dirs)
    )


def _before(value: object, cutoff: datetime) -> bool:
    if not isinstance(value, str):
        return False  # no time: kept (the service replays it; the next import dates it)
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return False
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)) < cutoff


def _purge_job_folders(engine: Engine, tables: dict[str, Table], dirs: list[Path],
                       cutoff: datetime, batch: int, counts: dict[str, int]) -> None:
    """Finished jobs older than the cutoff: folder and row. A folder without a row (a job
    of a replica that kept its jobs in memory) goes when its files are older than the cutoff;
    a queued or running job's folder is never touched."""
    jobs = tables.get(store.BATCH_JOBS)
    active: set[str] = set()
    expired: set[str] = set()
    if jobs is not None:
        old = and_(jobs.c.status.in_(FINISHED),
                   or_(jobs.c.finished_at < cutoff,
                       and_(jobs.c.finished_at.is_(None), jobs.c.created_at < cutoff)))
        active = set(store.select_column(engine, jobs, "id", jobs.c.status.in_(ACTIVE)))
        expired = set(store.select_column(engine, jobs, "id", old))
    removed = 0
    for folder in files.job_folders(dirs):
        if folder.name in active:
            continue
        if folder.name in expired or _newest_mtime(folder) < cutoff.timestamp():
            removed += files.remove_folder(folder)
    counts["batch_folders"] = removed
    counts[store.BATCH_JOBS] = 0 if jobs is None else store.delete_where(
        engine, jobs, old, batch)


def _newest_mtime(folder: Path) -> float:
    stamps = [p.stat().st_mtime for p in folder.rglob("*")] + [folder.stat().st_mtime]
    return max(stamps)


def _purge_monitoring(root: Path, cutoff: datetime) -> int:
    """Evaluation folders (named by the end of their window) older than the cutoff."""
    if not root.is_dir():
        return 0
    removed = 0
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            end = datetime.strptime(folder.name, MONITORING_RUN).replace(tzinfo=UTC)
        except ValueError:
            continue  # not an evaluation's folder
        if end < cutoff:
            shutil.rmtree(folder)
            removed += 1
    return removed
