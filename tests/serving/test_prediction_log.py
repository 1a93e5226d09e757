"""The prediction-log writer: bad rows are quarantined, an outage keeps rows, spills replay once."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from serving_testkit import PREDICT, FakeRegistry, TestClient, make_settings, walk
from sqlalchemy import Engine, func, select, text

from serving.db import metadata, open_database, predictions, quarantine, spill_imports
from serving.main import create_app
from serving.metrics import ServingMetrics
from serving.predictions_log import PredictionLog
from serving.spills import replay_spills


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = open_database(f"sqlite:///{tmp_path / 'log.db'}")
    yield engine
    engine.dispose()


def row(i: int, **changes: Any) -> dict[str, Any]:
    """A valid log row (request `r<i>`)."""
    base: dict[str, Any] = {
        "request_id": f"r{i}", "created_at": datetime.now(UTC), "routing_key_hash": "k" * 32,
        "client_key": None, "variant": "champion", "assignment": "hash", "shadow": False,
        "model_name": "cv", "model_version": "1", "scene_key": "s" * 32, "agent_key": f"a{i}",
        "pseudonym_key_id": "p" * 16, "last_frame": i, "frame_step": 1, "k": 1,
        "observed": [[0.0, 0.0], [0.5, 0.0]], "predicted": [[[1.0, 0.0]]], "weights": [1.0],
        "latency_ms": 1.5, "cache_hit": False,
    }
    return base | changes


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)


def request_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        ids = conn.execute(select(predictions.c.request_id).order_by(predictions.c.id))
        return list(ids.scalars())


async def run_log(engine: Engine, rows: list[dict[str, Any]], spill_dir: Path,
                  until: Any = None) -> tuple[PredictionLog, ServingMetrics]:
    """Record `rows`, wait (at most 5 s) for `until(log)` or an empty queue, then close."""
    metrics = ServingMetrics()
    log = PredictionLog(engine, metrics, batch_size=10, flush_s=0.01, max_queue=1000,
                        spill_dir=spill_dir)
    log.start()
    log.record(rows)
    deadline = time.monotonic() + 5
    done = until or (lambda lg: lg.state()["queued"] == 0)
    while not done(log) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await log.close()
    return log, metrics


def test_bad_rows_are_quarantined_and_the_good_ones_written(
    engine: Engine, tmp_path: Path
) -> None:
    rows = [row(i) for i in range(10)]
    rows[3]["agent_key"] = None  # NOT NULL: IntegrityError
    rows[7]["observed"] = [[object(), 0.0]]  # not JSON: refused before it reaches the database
    log, metrics = asyncio.run(run_log(engine, rows, tmp_path))
    assert request_ids(engine) == [f"r{i}" for i in range(10) if i not in (3, 7)]
    with engine.connect() as conn:
        bad = conn.execute(select(quarantine).order_by(quarantine.c.id)).mappings().all()
    assert [b["request_id"] for b in bad] == ["r3", "r7"]
    assert "IntegrityError" in bad[0]["reason"] and json.loads(bad[0]["row"])["agent_key"] is None
    assert "[SQL" not in bad[0]["reason"]  # the reason is the driver's message, no statement
    assert log.state() == {"ok": True, "status": "ok", "queued": 0, "written": 8,
                           "quarantined": 2}
    assert metrics.log_rows.labels("quarantined")._value.get() == 2
    assert not list(tmp_path.glob("predictions-spill-*"))  # nothing waits for a database


def test_quarantine_row_is_escaped_json_text(engine: Engine, tmp_path: Path) -> None:
    poison = row(1, model_version="x\u0000y", observed=[[float("nan"), float("inf")]])
    poison["agent_key"] = None
    asyncio.run(run_log(engine, [poison], tmp_path))
    with engine.connect() as conn:
        stored = conn.execute(select(quarantine.c.row)).scalar_one()
    assert stored.isascii() and "\x00" not in stored and "\\u0000" in stored
    assert json.loads(stored)["observed"][0][0] != json.loads(stored)["observed"][0][0]  # NaN


def test_a_refused_quarantine_insert_goes_to_a_quarantine_file(
    engine: Engine, tmp_path: Path
) -> None:
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE predictions_quarantine"))
    asyncio.run(run_log(engine, [row(1), row(2, agent_key=None)], tmp_path))
    assert request_ids(engine) == ["r1"]
    (file,) = tmp_path.glob("predictions-quarantine-*.jsonl")
    (line,) = file.read_text().splitlines()
    assert json.loads(line)["row"]["request_id"] == "r2" and json.loads(line)["reason"]


def test_an_outage_keeps_rows_hides_the_error_and_spills_them_for_replay(
    engine: Engine, tmp_path: Path
) -> None:
    with engine.begin() as conn:  # every insert now fails with an OperationalError
        conn.execute(text("ALTER TABLE predictions RENAME TO predictions_away"))
    log, metrics = asyncio.run(run_log(
        engine, [row(i) for i in range(5)], tmp_path,
        until=lambda lg: lg.state()["status"] == "unavailable",
    ))
    state = log.state()
    assert state["status"] == "unavailable" and state["ok"] is False  # while it lasted
    assert "INSERT" not in json.dumps(state) and "last_error" not in state
    assert count(engine, quarantine) == 0  # an outage never quarantines
    (spill,) = tmp_path.glob("predictions-spill-*.jsonl")
    assert len(spill.read_text().splitlines()) == 5
    assert metrics.log_rows.labels("spilled")._value.get() == 5

    with engine.begin() as conn:
        conn.execute(text("DROP TABLE predictions_away"))
    metadata.create_all(engine)
    kept = tmp_path / "kept.jsonl"
    shutil.copy(spill, kept)
    assert replay_spills(engine, tmp_path).rows == 5
    assert request_ids(engine) == [f"r{i}" for i in range(5)] and not spill.exists()
    with engine.connect() as conn:
        (imported,) = conn.execute(select(spill_imports)).mappings().all()
    assert imported["name"] == spill.name and imported["rows"] == 5
    shutil.copy(kept, spill)  # the same file again (say its delete had failed): deleted only
    assert replay_spills(engine, tmp_path).rows == 0
    assert count(engine, predictions) == 5 and not spill.exists()


def test_a_spill_with_a_bad_row_replays_the_good_ones(engine: Engine, tmp_path: Path) -> None:
    lines = [json.dumps(row(1), default=str), json.dumps(row(2, agent_key=None), default=str)]
    (tmp_path / "predictions-spill-1.jsonl").write_text("\n".join(lines) + "\n")
    report = replay_spills(engine, tmp_path)
    assert (report.rows, report.quarantined) == (1, 1)
    assert request_ids(engine) == ["r1"] and count(engine, quarantine) == 1


def test_spills_are_replayed_at_start_up(tmp_path: Path) -> None:
    (tmp_path / "predictions-spill-7.jsonl").write_text(json.dumps(row(1), default=str) + "\n")
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings, model_source=FakeRegistry())) as client:
        assert client.post("/v1/predict", json={"agents": [walk(1)]},
                           headers=PREDICT).status_code == 200
    engine = open_database(settings.resolved_database_url())
    assert "r1" in request_ids(engine) and count(engine, spill_imports) == 1
    engine.dispose()
    assert not (tmp_path / "predictions-spill-7.jsonl").exists()


def test_replay_command_imports_spills(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    from serving.cli import replay_log

    app = typer.Typer()  # the main CLI attaches it as `trajectory replay-log`
    app.command("replay-log")(replay_log)
    app.command("other")(lambda: None)  # two commands: typer keeps the name
    monkeypatch.setenv("SERVING_WORK_DIR", str(tmp_path))
    monkeypatch.setenv("SERVING_PSEUDONYM_KEY", "k" * 40)
    (tmp_path / "predictions-spill-9.jsonl").write_text(json.dumps(row(1), default=str) + "\n")
    result = CliRunner().invoke(app, ["replay-log"])
    assert result.exit_code == 0, result.output
    assert "1 file" in result.output and "1 rows" in result.output
    engine = open_database(f"sqlite:///{tmp_path / 'serving.db'}")
    assert request_ids(engine) == ["r1"]
    engine.dispose()


def killed(log: PredictionLog) -> None:
    """What SIGKILL leaves of a log: its journal files, unlocked, and nothing else."""
    assert log._journal is not None
    for f in log._journal._files.values():
        f.close()


def test_a_killed_process_loses_no_answered_row(engine: Engine, tmp_path: Path) -> None:
    async def answer_then_die() -> None:
        log = PredictionLog(engine, ServingMetrics(), batch_size=2, flush_s=0.01,
                            max_queue=1000, spill_dir=tmp_path)
        log.start()
        log.record([row(1), row(2)])  # written before the "kill"
        while log.state()["written"] < 2:
            await asyncio.sleep(0.01)
        log._task.cancel()  # type: ignore[union-attr]  # the writer dies with the process
        log.record([row(3), row(4), row(5)])  # answered, never written
        killed(log)

    asyncio.run(answer_then_die())
    (journal,) = tmp_path.glob("predictions-journal-*.jsonl")
    assert len(journal.read_text().splitlines()) == 5
    assert request_ids(engine) == ["r1", "r2"]
    report = replay_spills(engine, tmp_path)  # the next start
    assert report.rows == 3  # the two already written are not written twice
    assert request_ids(engine) == [f"r{i}" for i in range(1, 6)] and not journal.exists()


def test_a_live_journal_is_left_alone_and_a_closed_log_leaves_none(
    engine: Engine, tmp_path: Path
) -> None:
    async def live() -> None:
        log = PredictionLog(engine, ServingMetrics(), batch_size=100, flush_s=60,
                            max_queue=1000, spill_dir=tmp_path)
        log.record([row(1)])
        (journal,) = tmp_path.glob("predictions-journal-*.jsonl")
        assert replay_spills(engine, tmp_path).rows == 0 and journal.exists()  # locked
        log.start()
        await log.close()
        assert request_ids(engine) == ["r1"] and not journal.exists()

    asyncio.run(live())
    asyncio.run(run_log(engine, [row(i) for i in range(2, 30)], tmp_path))
    assert not list(tmp_path.glob("predictions-journal-*")) and count(engine, predictions) == 29
