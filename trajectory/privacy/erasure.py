"""Erasure of one data subject everywhere the system keeps it, audited with a count per place.

A subject is a client (the X-Client-Id it sent) or an agent of a scene. The raw identifier is
pseudonymised with the service's key, then its rows are deleted from the prediction log and the
quarantine, from spill files, and from batch outputs: a client's batch jobs are deleted (row
and folder); an agent's rows are cut out of every batch result CSV (which carries the scene and
agent id as sent). The audit row names the subject by its pseudonym only.

Rows written under an earlier pseudonym key (another `pseudonym_key_id`) do not match: run
again with that key in TRAJ_PSEUDONYM_KEY, or let retention remove them (docs/privacy.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Engine, Table, and_, create_engine

from trajectory.exceptions import ConfigError
from trajectory.privacy import files, store
from trajectory.privacy.pseudonym import Pseudonymiser
from trajectory.privacy.settings import PrivacySettings

log = logging.getLogger(__name__)

ACTION = "privacy-erase"


@dataclass(frozen=True)
class Subject:
    """Whose data to erase, as pseudonyms (and, for batch result CSVs, the raw scene/agent)."""

    kind: str  # client | agent
    client_key: str | None = None
    scene_key: str | None = None
    agent_key: str | None = None
    scene: str | None = None
    agent_id: int | None = None

    @classmethod
    def client(cls, pseudonyms: Pseudonymiser, client_id: str) -> Subject:
        if not client_id:
            raise ConfigError("--client-id must not be empty")
        return cls("client", client_key=pseudonyms.client(client_id))

    @classmethod
    def agent(cls, pseudonyms: Pseudonymiser, scene: str | None, agent_id: int) -> Subject:
        return cls("agent", scene_key=pseudonyms.scene(scene),
                   agent_key=pseudonyms.agent(scene, agent_id), scene=scene, agent_id=agent_id)

    def where(self, table: Table) -> ColumnElement[bool]:
        """Its rows in a log-shaped table (predictions, quarantine)."""
        if self.kind == "client":
            return table.c.client_key == self.client_key
        scene = (table.c.scene_key.is_(None) if self.scene_key is None
                 else table.c.scene_key == self.scene_key)
        return and_(scene, table.c.agent_key == self.agent_key)

    def matches(self, row: dict[str, Any]) -> bool:
        """Its rows in a spill file (log rows as JSON; a v1 service's hold the raw ids)."""
        if self.kind == "client":
            return row.get("client_key") == self.client_key
        if "agent_key" not in row and "agent_id" in row:
            return row.get("scene") == self.scene and row.get("agent_id") == self.agent_id
        return row.get("scene_key") == self.scene_key and row.get("agent_key") == self.agent_key

    def audit_name(self) -> dict[str, str | None]:
        """The subject in the audit: pseudonyms only, never the raw identifier."""
        if self.kind == "client":
            return {"kind": "client", "client_key": self.client_key}
        return {"kind": "agent", "scene_key": self.scene_key, "agent_key": self.agent_key}


def erase(work_dir: Path, privacy: PrivacySettings, subject: Subject,
          source: str = "cli") -> dict[str, Any]:
    """Delete the subject's rows everywhere; -> counts per place (also written to the audit)."""
    counts: dict[str, int] = {}
    engine = create_engine(privacy.resolved_database_url(work_dir), hide_parameters=True)
    try:
        tables = store.reflect(engine)
        detail: dict[str, Any] = {"subject": subject.audit_name(), "counts": counts}
        try:
            _erase_database(engine, tables, subject, privacy.batch_size, counts)
            counts["spill_rows"] = sum(files.drop_spill_rows(p, subject.matches)
                                       for p in files.spill_files(
                                           privacy.resolved_serving_dirs(work_dir)))
            _erase_batch(engine, tables, subject, privacy.resolved_batch_dirs(work_dir),
                         privacy.batch_size, counts)
        except Exception as err:
            store.write_audit(engine, tables, ACTION, "failed",
                              detail | {"error": type(err).__name__}, source)
            raise
        detail["audited"] = store.write_audit(engine, tables, ACTION, "ok", detail, source)
    finally:
        engine.dispose()
    log.info("privacy erase of %s: %s", subject.audit_name(), counts)
    return detail


def _erase_database(engine: Engine, tables: dict[str, Table], subject: Subject, batch: int,
                    counts: dict[str, int]) -> None:
    for name in (store.PREDICTIONS, store.QUARANTINE):
        table = tables.get(name)
        counts[name] = 0 if table is None else store.delete_where(
            engine, table, subject.where(table), batch)


def _erase_batch(engine: Engine, tables: dict[str, Table], subject: Subject, dirs: list[Path],
                 batch: int, counts: dict[str, int]) -> None:
    """A client's jobs go whole (row and folder); an agent is cut out of every result CSV."""
    jobs = tables.get(store.BATCH_JOBS)
    counts["batch_jobs"] = counts["batch_folders"] = counts["batch_result_rows"] = 0
    if subject.kind == "client":
        if jobs is None:
            return
        mine = jobs.c.client_key == subject.client_key
        ids = set(store.select_column(engine, jobs, "id", mine))
        counts["batch_folders"] = sum(files.remove_folder(folder)
                                      for folder in files.job_folders(dirs) if folder.name in ids)
        counts["batch_jobs"] = store.delete_where(engine, jobs, mine, batch)
        return
    if subject.scene is None or subject.agent_id is None:
        return  # batch rows always name a scene
    for folder in files.job_folders(dirs):
        result = folder / files.RESULT_CSV
        if result.is_file():
            counts["batch_result_rows"] += files.drop_result_rows(result, subject.scene,
                                                                  subject.agent_id)
