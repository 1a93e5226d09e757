"""SQL tables of the service (prediction log, admin audit) with simple schema versioning.

PostgreSQL in deployment, a SQLite file embedded. `serving_schema_version` holds one row per
applied version; `open_database` creates a fresh schema, applies any newer steps in
`MIGRATIONS`, and refuses a database written by a newer service.

The evaluation job joins ground truth on (scene, agent_id, last_frame) of `predictions`.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

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
    create_engine,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url

from trajectory.exceptions import ConfigError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# version -> SQL statements that bring version-1 to version (none yet: v1 is the first)
MIGRATIONS: dict[int, list[str]] = {}

JSONDoc = JSON().with_variant(JSONB(), "postgresql")
metadata = MetaData()

schema_version = Table(
    "serving_schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

predictions = Table(
    "predictions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("routing_key_hash", String(64), nullable=False),
    Column("variant", String(64), nullable=False),
    Column("assignment", String(16), nullable=False),  # hash, forced, fallback, shadow
    Column("shadow", Boolean, nullable=False),
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("scene", String(200), nullable=True),
    Column("agent_id", BigInteger, nullable=False),
    Column("last_frame", BigInteger, nullable=True),
    Column("frame_step", Integer, nullable=False),
    Column("k", Integer, nullable=False),
    Column("observed", JSONDoc, nullable=False),  # [[x, y], ...] as sent
    Column("predicted", JSONDoc, nullable=False),  # [K][T][x, y]
    Column("weights", JSONDoc, nullable=False),  # [K]
    Column("latency_ms", Float, nullable=False),
    Column("cache_hit", Boolean, nullable=False),
    Index("ix_predictions_scene_agent_frame", "scene", "agent_id", "last_frame"),
)

admin_audit = Table(
    "admin_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("key_fingerprint", String(16), nullable=False),  # first hex of the key's hash
    Column("action", String(64), nullable=False),
    Column("detail", JSONDoc, nullable=False),
)


def open_database(url: str) -> Engine:
    """Engine with the schema at SCHEMA_VERSION (created or migrated)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)
    _migrate(engine)
    return engine


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA journal_mode=WAL")  # readers (the evaluation job) never block writes
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


# any constant: replicas starting together on one PostgreSQL database take turns migrating
_MIGRATION_LOCK = 0x7472616A  # "traj"


def _migrate(engine: Engine) -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        schema_version.create(conn, checkfirst=True)
        current = conn.execute(select(func.max(schema_version.c.version))).scalar()
        if current is None:
            metadata.create_all(conn)
            conn.execute(insert(schema_version), [_version_row(SCHEMA_VERSION)])
            log.info("created serving schema v%d", SCHEMA_VERSION)
            return
        if current > SCHEMA_VERSION:
            raise ConfigError(
                f"database schema v{current} is newer than this service (v{SCHEMA_VERSION})"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS.get(version, []):
                conn.execute(text(statement))
            conn.execute(insert(schema_version), [_version_row(version)])
            log.info("migrated serving schema to v%d", version)


def _version_row(version: int) -> dict[str, object]:
    return {"version": version, "applied_at": datetime.now(UTC)}


def write_audit(engine: Engine, key_hash: str, action: str, detail: dict[str, object]) -> None:
    """One admin action, written before the action's response is sent."""
    row = {
        "created_at": datetime.now(UTC),
        "key_fingerprint": key_hash[:16],
        "action": action,
        "detail": json.loads(json.dumps(detail, default=str)),
    }
    with engine.begin() as conn:
        conn.execute(insert(admin_audit), [row])
