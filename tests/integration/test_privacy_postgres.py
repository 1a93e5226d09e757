"""Privacy on a real PostgreSQL: the v1 -> v2 migration pseudonymises the log (and is rolled
back whole when it cannot), and erasure and purge delete in batches there too."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest
from services import PostgresCluster, running_postgres
from sqlalchemy import create_engine, inspect, select, text

from serving import db
from trajectory.exceptions import ConfigError
from trajectory.privacy.erasure import Subject, erase
from trajectory.privacy.retention import purge
from trajectory.privacy.settings import PrivacySettings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _migration_kit() -> ModuleType:
    """The v1 schema, rows and checks of tests/serving/test_db_migration.py (one definition)."""
    path = REPO / "tests" / "serving" / "test_db_migration.py"
    spec = importlib.util.spec_from_file_location("db_migration_kit", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


kit = _migration_kit()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    with running_postgres() as cluster:
        yield cluster


@pytest.fixture
def url(postgres: PostgresCluster, request: pytest.FixtureRequest) -> str:
    """A fresh database per test."""
    name = f"privacy_{request.node.name[:40].lower()}"
    admin = create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return postgres.url.rsplit("/", 1)[0] + f"/{name}"


def test_v1_log_is_pseudonymised_on_postgres(url: str) -> None:
    kit.make_v1(url, kit.V1_ROWS)
    kit.check_migrated(url, kit.V1_ROWS)
    kit.check_migrated(url, kit.V1_ROWS)  # idempotent


def test_a_migration_without_the_key_leaves_v1_untouched(url: str) -> None:
    kit.make_v1(url, kit.V1_ROWS)
    with pytest.raises(ConfigError, match="pseudonym key"):
        db.open_database(url)
    engine = create_engine(url)
    with engine.connect() as conn:  # PostgreSQL DDL is transactional: all of it rolled back
        columns = {c["name"] for c in inspect(conn).get_columns("predictions")}
        version = conn.execute(text("SELECT max(version) FROM serving_schema_version")).scalar()
    engine.dispose()
    assert {"scene", "agent_id"} <= columns and version == 1
    kit.check_migrated(url, kit.V1_ROWS)


def test_erase_and_purge_on_postgres(url: str, tmp_path: Path) -> None:
    kit.make_v1(url, kit.V1_ROWS)
    engine = db.open_database(url, kit.KEYS)
    now = datetime.now(UTC)
    with engine.begin() as conn:  # the migrated rows are from 2026-01-01: make two recent
        conn.execute(db.predictions.update().where(db.predictions.c.request_id.in_(["r1", "r2"]))
                     .values(created_at=now - timedelta(hours=1)))
    settings = PrivacySettings(  # type: ignore[call-arg]
        _env_file=None, database_url=url, pseudonym_key=kit.KEYS.key.decode(),
        serving_work_dirs=[tmp_path], batch_size=1, log_retention_days=1,
    )
    erased = erase(tmp_path, settings, Subject.agent(kit.KEYS, "zara1", 7))
    assert erased["counts"]["predictions"] == 1 and erased["audited"] is True
    purged = purge(tmp_path, settings)
    assert purged["counts"]["predictions"] == 2  # r3 and r4, older than a day
    with engine.connect() as conn:
        left = conn.execute(select(db.predictions.c.request_id)).scalars().all()
        audits = conn.execute(select(db.admin_audit.c.action, db.admin_audit.c.outcome)
                              .order_by(db.admin_audit.c.id)).all()
    engine.dispose()
    assert left == ["r2"]
    assert [tuple(a) for a in audits][-2:] == [("privacy-erase", "ok"), ("privacy-purge", "ok")]
