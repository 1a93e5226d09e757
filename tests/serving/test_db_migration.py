"""Schema v1 -> v2 on SQLite: the prediction log's raw identifiers become keyed pseudonyms.

The v1 tables are written out here as the v1 service made them (serving/db.py at v1), rows
with raw scenes and agent ids included; tests/integration/test_privacy_postgres.py runs the
same migration on PostgreSQL.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
    inspect,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB

from serving import db
from trajectory.exceptions import ConfigError
from trajectory.privacy.pseudonym import Pseudonymiser

KEYS = Pseudonymiser(b"migration-test-key-of-32-characters!")
JSONDoc = JSON().with_variant(JSONB(), "postgresql")


def v1_schema() -> MetaData:
    """The v1 tables, as serving/db.py created them."""
    m = MetaData()
    Table("serving_schema_version", m, Column("version", Integer, primary_key=True),
          Column("applied_at", DateTime(timezone=True), nullable=False))
    Table(
        "predictions", m,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
               autoincrement=True),
        Column("request_id", String(64), nullable=False, index=True),
        Column("created_at", DateTime(timezone=True), nullable=False, index=True),
        Column("routing_key_hash", String(64), nullable=False),
        Column("variant", String(64), nullable=False),
        Column("assignment", String(16), nullable=False),
        Column("shadow", Boolean, nullable=False),
        Column("model_name", String(200), nullable=False),
        Column("model_version", String(64), nullable=False),
        Column("scene", String(200), nullable=True),
        Column("agent_id", BigInteger, nullable=False),
        Column("last_frame", BigInteger, nullable=True),
        Column("frame_step", Integer, nullable=False),
        Column("k", Integer, nullable=False),
        Column("observed", JSONDoc, nullable=False),
        Column("predicted", JSONDoc, nullable=False),
        Column("weights", JSONDoc, nullable=False),
        Column("latency_ms", Float, nullable=False),
        Column("cache_hit", Boolean, nullable=False),
        Index("ix_predictions_scene_agent_frame", "scene", "agent_id", "last_frame"),
    )
    Table("admin_audit", m, Column("id", Integer, primary_key=True, autoincrement=True),
          Column("created_at", DateTime(timezone=True), nullable=False),
          Column("key_fingerprint", String(16), nullable=False),
          Column("action", String(64), nullable=False),
          Column("detail", JSONDoc, nullable=False))
    return m


def v1_row(i: int, scene: str | None, agent: int) -> dict[str, Any]:
    routing = f"scene:{scene}" if scene else f"agent:{agent}"
    return {
        "request_id": f"r{i}", "created_at": datetime(2026, 1, 1, 0, i, tzinfo=UTC),
        "routing_key_hash": hashlib.sha256(routing.encode()).hexdigest()[:32],
        "variant": "champion", "assignment": "hash", "shadow": False, "model_name": "m",
        "model_version": "1", "scene": scene, "agent_id": agent, "last_frame": 10 * i,
        "frame_step": 10, "k": 1, "observed": [[0.0, 0.0], [0.4, 0.0]],
        "predicted": [[[0.8, 0.0]]], "weights": [1.0], "latency_ms": 1.5, "cache_hit": False,
    }


V1_ROWS = [v1_row(1, "zara1", 7), v1_row(2, "zara1", 8), v1_row(3, "hotel", 7),
           v1_row(4, None, 7)]


def make_v1(url: str, rows: list[dict[str, Any]]) -> None:
    """A database as a v1 service left it: schema v1, log rows with raw ids, one audit row."""
    engine = create_engine(url)
    schema = v1_schema()
    schema.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(schema.tables["serving_schema_version"]),
                     [{"version": 1, "applied_at": datetime(2026, 1, 1, tzinfo=UTC)}])
        if rows:
            conn.execute(insert(schema.tables["predictions"]), rows)
        conn.execute(insert(schema.tables["admin_audit"]), [{
            "created_at": datetime(2026, 1, 1, tzinfo=UTC), "key_fingerprint": "abcd",
            "action": "cache-flush", "detail": {"deleted": 3}}])
    engine.dispose()


def check_migrated(url: str, rows: list[dict[str, Any]]) -> None:
    """What every migrated database must look like (shared with the PostgreSQL test)."""
    engine = db.open_database(url, KEYS)
    names = inspect(engine).get_table_names()
    assert {"predictions", "predictions_quarantine", "spill_imports", "batch_jobs",
            "admin_audit"} <= set(names) and "predictions_v1" not in names
    columns = {c["name"] for c in inspect(engine).get_columns("predictions")}
    assert not {"scene", "agent_id"} & columns
    with engine.connect() as conn:
        versions = conn.execute(select(db.schema_version.c.version)).scalars().all()
        got = conn.execute(select(db.predictions).order_by(db.predictions.c.request_id)
                           ).mappings().all()
        audit = conn.execute(select(db.admin_audit)).mappings().all()
    engine.dispose()
    assert sorted(versions) == [1, 2]
    assert len(got) == len(rows)
    for old, new in zip(rows, got, strict=True):
        assert new["request_id"] == old["request_id"]
        assert new["scene_key"] == KEYS.scene(old["scene"])
        assert new["agent_key"] == KEYS.agent(old["scene"], old["agent_id"])
        assert new["routing_key_hash"] == KEYS.routing(old["routing_key_hash"])
        assert new["pseudonym_key_id"] == KEYS.key_id and new["client_key"] is None
        assert new["observed"] == old["observed"] and new["last_frame"] == old["last_frame"]
        assert new["created_at"].replace(tzinfo=UTC) == old["created_at"]
        raw = {old["scene"], str(old["agent_id"]), old["routing_key_hash"]} - {None}
        assert not raw & {str(v) for v in new.values()}  # no raw identifier is left
    assert [(a["action"], a["outcome"]) for a in audit] == [("cache-flush", "ok")]


def test_v1_rows_are_pseudonymised(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    make_v1(url, V1_ROWS)
    check_migrated(url, V1_ROWS)
    check_migrated(url, V1_ROWS)  # opening again: nothing more to migrate


def test_v1_rows_are_not_migrated_without_the_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    make_v1(url, V1_ROWS)
    with pytest.raises(ConfigError, match="pseudonym key"):
        db.open_database(url)
    engine = create_engine(url)
    with engine.connect() as conn:  # rolled back: still v1, raw rows intact for a retry
        columns = {c["name"] for c in inspect(conn).get_columns("predictions")}
        count = len(conn.execute(select(v1_schema().tables["predictions"])).all())
    engine.dispose()
    assert {"scene", "agent_id"} <= columns and count == len(V1_ROWS)
    check_migrated(url, V1_ROWS)


def test_an_empty_v1_log_migrates_without_a_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    make_v1(url, [])
    db.open_database(url).dispose()
    check_migrated(url, [])


def test_more_rows_than_one_migration_batch(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    rows = [v1_row(i % 60, f"s{i % 3}", 100_000 + i) | {"request_id": f"r{i:05d}"}
            for i in range(5003)]
    make_v1(url, rows)
    check_migrated(url, rows)
