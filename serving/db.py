"""SQL tables of the service (prediction log, quarantine, batch jobs, admin audit), versioned.

PostgreSQL in deployment, a SQLite file embedded. `serving_schema_version` holds one row per
applied version; `open_database` creates a fresh schema, applies any newer steps in
`MIGRATIONS`, and refuses a database written by a newer service.

Identifiers are stored only as keyed pseudonyms (`trajectory.privacy.pseudonym`); the
evaluation job joins ground truth, pseudonymised with the same key, on
(scene_key, agent_key, last_frame) of `predictions`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, make_url

from trajectory.exceptions import ConfigError
from trajectory.privacy.pseudonym import Pseudonymiser

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2

JSONDoc = JSON().with_variant(JSONB(), "postgresql")
metadata = MetaData()

schema_version = Table(
    "serving_schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

# identifiers are keyed pseudonyms (trajectory.privacy.pseudonym), never the raw values
Pseudonym = String(32)

predictions = Table(
    "predictions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("routing_key_hash", Pseudonym, nullable=False),
    Column("client_key", Pseudonym, nullable=True, index=True),  # X-Client-Id
    Column("variant", String(64), nullable=False),
    Column("assignment", String(16), nullable=False),  # hash, forced, fallback, shadow
    Column("shadow", Boolean, nullable=False),
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("scene_key", Pseudonym, nullable=True),
    Column("agent_key", Pseudonym, nullable=False),
    Column("pseudonym_key_id", String(16), nullable=False),
    Column("last_frame", BigInteger, nullable=True),
    Column("frame_step", Integer, nullable=False),
    Column("k", Integer, nullable=False),
    Column("observed", JSONDoc, nullable=False),  # [[x, y], ...] as scored
    Column("predicted", JSONDoc, nullable=False),  # [K][T][x, y]
    Column("weights", JSONDoc, nullable=False),  # [K]
    Column("latency_ms", Float, nullable=False),
    Column("cache_hit", Boolean, nullable=False),
    Index("ix_predictions_scene_agent_frame", "scene_key", "agent_key", "last_frame"),
)

# log rows the database refused, with the reason; the row itself as escaped JSON text
quarantine = Table(
    "predictions_quarantine",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("request_id", String(64), nullable=True),
    Column("client_key", Pseudonym, nullable=True, index=True),
    Column("scene_key", Pseudonym, nullable=True),
    Column("agent_key", Pseudonym, nullable=True),
    Column("reason", String(500), nullable=False),
    Column("row", Text, nullable=False),
)

# spill files already imported: replay is exactly once even if deleting the file failed
spill_imports = Table(
    "spill_imports",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
)

batch_jobs = Table(
    "batch_jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(16), nullable=False),  # fingerprint of the API key that made it
    Column("client_key", Pseudonym, nullable=True, index=True),  # X-Client-Id, for erasure
    Column("status", String(16), nullable=False),  # queued, running, done, failed
    Column("input_name", String(255), nullable=False),  # display only, never a path
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("replica", String(64), nullable=True),
    Column("model", JSONDoc, nullable=True),
    Column("progress", JSONDoc, nullable=False),
    Column("errors", JSONDoc, nullable=False),
    Column("errors_truncated", Boolean, nullable=False),
    Column("detail", Text, nullable=True),
    Index("ix_batch_jobs_owner_status", "owner", "status"),
)

admin_audit = Table(
    "admin_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("key_fingerprint", String(16), nullable=False),  # first hex of the key's hash, or "-"
    Column("action", String(64), nullable=False),
    Column("detail", JSONDoc, nullable=False),
    Column("outcome", String(16), nullable=False, server_default="ok"),  # ok, denied, failed
    Column("status_code", Integer, nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("source", String(64), nullable=True),  # client address as the service saw it
)

# A/B experiments: what is compared since when, with which weights. The admin ab-weights route
# writes the weights (versions {}); the evaluation job (trajectory.monitoring.experiment) fills
# in the versions and opens a row when an alias moves. Its A/B test starts at started_at.
experiments = Table(
    "experiments",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False, index=True),
    Column("weights", JSONDoc, nullable=False),  # variant -> share of routing keys
    Column("versions", JSONDoc, nullable=False),  # variant -> model version; {} until seen
    Column("source", String(16), nullable=False),  # admin | evaluation
)


def record_experiment(engine: Engine, weights: dict[str, float]) -> str:
    """A new experiment with these weights from now on (the admin weights change)."""
    import uuid

    row = {"id": uuid.uuid4().hex, "started_at": datetime.now(UTC), "weights": dict(weights),
           "versions": {}, "source": "admin"}
    with engine.begin() as conn:
        conn.execute(insert(experiments), [row])
    return str(row["id"])


Step = Callable[[Connection, Pseudonymiser | None], None]


def _v2(conn: Connection, pseudonyms: Pseudonymiser | None) -> None:
    """v1 -> v2: pseudonymise the log's identifiers; audit outcome columns; new tables."""
    # before any DDL: pysqlite runs DDL outside the transaction, so a later refusal would
    # leave a half-migrated database behind
    if pseudonyms is None and conn.execute(text("SELECT count(*) FROM predictions")).scalar():
        raise ConfigError("migrating the prediction log to v2 needs the pseudonym key")
    for column in ("outcome VARCHAR(16) NOT NULL DEFAULT 'ok'", "status_code INTEGER",
                   "request_id VARCHAR(64)", "source VARCHAR(64)"):
        conn.execute(text(f"ALTER TABLE admin_audit ADD COLUMN {column}"))
    for index in ("ix_predictions_request_id", "ix_predictions_created_at",
                  "ix_predictions_scene_agent_frame"):
        conn.execute(text(f"DROP INDEX IF EXISTS {index}"))
    conn.execute(text("ALTER TABLE predictions RENAME TO predictions_v1"))
    metadata.create_all(conn, checkfirst=True)
    old = Table("predictions_v1", MetaData(), autoload_with=conn)
    last = -1
    while True:
        rows = conn.execute(
            select(old).where(old.c.id > last).order_by(old.c.id).limit(5000)
        ).mappings().all()
        if not rows:
            break
        assert pseudonyms is not None
        conn.execute(insert(predictions), [pseudonymise_v1_row(dict(r), pseudonyms) for r in rows])
        last = rows[-1]["id"]
    conn.execute(text("DROP TABLE predictions_v1"))
    protect_audit(conn)


def pseudonymise_v1_row(row: dict[str, Any], pseudonyms: Pseudonymiser) -> dict[str, Any]:
    """A v1 log row (raw scene and agent id; from the table or a v1 spill file) as v2."""
    scene, agent = row.pop("scene"), row.pop("agent_id")
    row.pop("id", None)
    # v1 kept an unsalted hash of the routing key: re-keyed, it stays stable per key
    row["routing_key_hash"] = pseudonyms.routing(row["routing_key_hash"])
    row.update(client_key=None, scene_key=pseudonyms.scene(scene),
               agent_key=pseudonyms.agent(scene, agent), pseudonym_key_id=pseudonyms.key_id)
    return row


_AUDIT_GUARD = "admin_audit is append-only"


def protect_audit(conn: Connection) -> None:
    """Triggers that refuse UPDATE, DELETE (and in PostgreSQL TRUNCATE) of `admin_audit`,
    for every role but one that may drop them (the table's owner: the migration role)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(
            "CREATE OR REPLACE FUNCTION admin_audit_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION "
            f"'{_AUDIT_GUARD}: % refused', TG_OP; END $$"
        ))
        for name, spec in (("admin_audit_no_change", "UPDATE OR DELETE ON admin_audit FOR EACH ROW"),
                           ("admin_audit_no_truncate", "TRUNCATE ON admin_audit FOR EACH STATEMENT")):
            conn.execute(text(f"DROP TRIGGER IF EXISTS {name} ON admin_audit"))
            conn.execute(text(
                f"CREATE TRIGGER {name} BEFORE {spec} EXECUTE FUNCTION admin_audit_append_only()"
            ))
    elif conn.dialect.name == "sqlite":
        for op in ("UPDATE", "DELETE"):
            conn.execute(text(
                f"CREATE TRIGGER IF NOT EXISTS admin_audit_no_{op.lower()} BEFORE {op} ON "
                f"admin_audit BEGIN SELECT RAISE(ABORT, '{_AUDIT_GUARD}: {op} refused'); END"
            ))


# version -> the step that brings version-1 to version
MIGRATIONS: dict[int, Step] = {2: _v2}


def open_database(url: str, pseudonyms: Pseudonymiser | None = None) -> Engine:
    """Engine with the schema at SCHEMA_VERSION (created or migrated; migrating rows that hold
    raw identifiers needs `pseudonyms`)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4,
                               hide_parameters=True)  # log rows stay out of error messages
    _migrate(engine, pseudonyms)
    return engine


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA journal_mode=WAL")  # readers (the evaluation job) never block writes
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


# any constant: replicas starting together on one PostgreSQL database take turns migrating
_MIGRATION_LOCK = 0x7472616A  # "traj"


def _migrate(engine: Engine, pseudonyms: Pseudonymiser | None) -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        schema_version.create(conn, checkfirst=True)
        current = conn.execute(select(func.max(schema_version.c.version))).scalar()
        if current is None:
            metadata.create_all(conn)
            protect_audit(conn)
            conn.execute(insert(schema_version), [_version_row(SCHEMA_VERSION)])
            log.info("created serving schema v%d", SCHEMA_VERSION)
            return
        if current > SCHEMA_VERSION:
            raise ConfigError(
                f"database schema v{current} is newer than this service (v{SCHEMA_VERSION})"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version](conn, pseudonyms)
            conn.execute(insert(schema_version), [_version_row(version)])
            log.info("migrated serving schema to v%d", version)


def _version_row(version: int) -> dict[str, object]:
    return {"version": version, "applied_at": datetime.now(UTC)}


def write_audit(
    engine: Engine,
    key_hash: str,
    action: str,
    detail: dict[str, object],
    *,
    outcome: str = "ok",
    status_code: int | None = None,
    request_id: str | None = None,
    source: str | None = None,
) -> None:
    """One admin action (ok, failed) or refused attempt (denied), before its response is sent.

    `key_hash` is the SHA-256 hex of the presented key, "-" when none was presented."""
    row = {
        "created_at": datetime.now(UTC),
        "key_fingerprint": key_hash[:16],
        "action": action,
        "detail": json.loads(json.dumps(detail, default=str)),
        "outcome": outcome,
        "status_code": status_code,
        "request_id": request_id,
        "source": source[:64] if source else None,
    }
    with engine.begin() as conn:
        conn.execute(insert(admin_audit), [row])
