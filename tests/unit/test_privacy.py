"""Privacy jobs: erasure leaves nothing of the subject (and all of the others), retention purges
what is old, both in batches and audited; the CLI wires them. A SQLite log in a temp dir."""

from __future__ import annotations

import csv
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select
from typer.testing import CliRunner

from serving.db import admin_audit, batch_jobs, open_database, predictions, quarantine
from trajectory.exceptions import ConfigError
from trajectory.privacy import files
from trajectory.privacy.erasure import Subject, erase
from trajectory.privacy.pseudonym import KEY_FILE, Pseudonymiser
from trajectory.privacy.retention import purge
from trajectory.privacy.settings import PrivacySettings

KEY = "privacy-test-key-at-least-32-characters"
KEYS = Pseudonymiser(KEY.encode())
NOW = datetime(2026, 3, 1, tzinfo=UTC)
OLD, RECENT = NOW - timedelta(days=40), NOW - timedelta(days=1)
# (client, scene, agent) of the rows every test starts with
SUBJECTS = [("alice", "hotel", 7), ("bob", "hotel", 8), ("bob", "zara1", 7), (None, "hotel", 7)]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("TRAJ_", "SERVING_")):
            monkeypatch.delenv(name)


def _settings(work: Path, **overrides: Any) -> PrivacySettings:
    values: dict[str, Any] = {"database_url": f"sqlite:///{work / 'serving.db'}",
                              "pseudonym_key": KEY, "serving_work_dirs": [work], "batch_size": 2}
    return PrivacySettings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


def _log_row(client: str | None, scene: str, agent: int, created: datetime) -> dict[str, Any]:
    return {
        "request_id": f"{client}-{scene}-{agent}-{created:%j}", "created_at": created,
        "routing_key_hash": KEYS.routing(f"client:{client}"), "client_key": KEYS.client(client),
        "variant": "champion", "assignment": "hash", "shadow": False, "model_name": "m",
        "model_version": "1", "scene_key": KEYS.scene(scene), "agent_key": KEYS.agent(scene, agent),
        "pseudonym_key_id": KEYS.key_id, "last_frame": 10, "frame_step": 1, "k": 1,
        "observed": [[0.0, 0.0]], "predicted": [[[1.0, 1.0]]], "weights": [1.0],
        "latency_ms": 1.0, "cache_hit": False,
    }


def _quarantine_row(row: dict[str, Any]) -> dict[str, Any]:
    return {"created_at": row["created_at"], "request_id": row["request_id"],
            "client_key": row["client_key"], "scene_key": row["scene_key"],
            "agent_key": row["agent_key"], "reason": "test", "row": json.dumps(row, default=str)}


def _job(job_id: str, client: str | None, status: str, finished: datetime | None) -> dict[str, Any]:
    return {"id": job_id, "owner": "owner", "client_key": KEYS.client(client), "status": status,
            "input_name": "tracks.csv", "created_at": (finished or NOW) - timedelta(minutes=5),
            "finished_at": finished, "progress": {}, "errors": [], "errors_truncated": False}


def _write_result(folder: Path, rows: list[tuple[str, int]]) -> None:
    folder.mkdir(parents=True)
    with (folder / files.RESULT_CSV).open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["scene", "agent_id", "last_obs_frame", "step", "frame", "sample", "weight",
                      "x", "y"])
        for scene, agent in rows:
            out.writerows([scene, agent, 10, s, 10 + s, 0, 1.0, 0.5, 0.5] for s in (1, 2))


def _read_result(folder: Path) -> list[tuple[str, int]]:
    with (folder / files.RESULT_CSV).open(newline="") as f:
        return [(r["scene"], int(r["agent_id"])) for r in csv.DictReader(f)]


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    """A serving work dir with every place that holds log rows, old and recent."""
    work = tmp_path / "work"
    engine = open_database(f"sqlite:///{work / 'serving.db'}", KEYS)
    rows = [_log_row(c, s, a, t) for c, s, a in SUBJECTS for t in (OLD, RECENT)]
    jobs = {"alice": "a" * 32, "bob": "b" * 32, "old": "c" * 32, "running": "d" * 32}
    with engine.begin() as conn:
        conn.execute(insert(predictions), rows)
        conn.execute(insert(quarantine), [_quarantine_row(r) for r in rows])
        conn.execute(insert(batch_jobs), [
            _job(jobs["alice"], "alice", "done", RECENT), _job(jobs["bob"], "bob", "done", RECENT),
            _job(jobs["old"], "bob", "failed", OLD), _job(jobs["running"], "alice", "running",
                                                          None),
        ])
    engine.dispose()
    spill = work / "predictions-spill-1.jsonl"
    spill.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
    held = work / "predictions-quarantine-2.jsonl"
    held.write_text("".join(json.dumps({"reason": "x", "row": r}, default=str) + "\n"
                            for r in rows))
    for job_id in jobs.values():
        _write_result(work / "batch" / job_id, [("hotel", 7), ("hotel", 8), ("zara1", 7)])
    (work / "batch" / "scored.csv").write_text("not a job\n")  # an operator's file: left alone
    for when in (OLD, RECENT):
        folder = work / "monitoring" / when.strftime("%Y%m%dT%H%M%S")
        folder.mkdir(parents=True)
        (folder / "decision.json").write_text("{}")
    return {"work": work, "jobs": jobs, "rows": len(rows)}


def _engine(work: Path) -> Engine:
    return open_database(f"sqlite:///{work / 'serving.db'}", KEYS)


def _keys(work: Path) -> dict[str, list[tuple[str | None, str | None, str | None]]]:
    """(client_key, scene_key, agent_key) of every row, per place."""
    engine = _engine(work)
    with engine.connect() as conn:
        found = {
            name: [tuple(r) for r in conn.execute(
                select(t.c.client_key, t.c.scene_key, t.c.agent_key))]
            for name, t in (("predictions", predictions), ("quarantine", quarantine))
        }
    engine.dispose()
    for path in files.spill_files([work]):
        found[path.name.split("-")[1]] = [
            (r.get("client_key"), r.get("scene_key"), r.get("agent_key"))
            for r in (files.log_row(json.loads(line)) for line in path.read_text().splitlines())
        ]
    return found


def _audits(work: Path) -> list[dict[str, Any]]:
    engine = _engine(work)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(admin_audit)).mappings()]
    engine.dispose()
    return rows


def test_erasing_a_client_leaves_nothing_of_it_and_everything_of_the_others(
    world: dict[str, Any],
) -> None:
    work, jobs = world["work"], world["jobs"]
    report = erase(work, _settings(work), Subject.client(KEYS, "alice"))
    alice, bob = KEYS.client("alice"), KEYS.client("bob")
    assert report["counts"] == {
        "predictions": 2, "predictions_quarantine": 2, "spill_rows": 4, "batch_jobs": 2,
        "batch_folders": 2, "batch_result_rows": 0,
    }
    for place, keys in _keys(work).items():
        clients = [k[0] for k in keys]
        assert alice not in clients, place
        assert clients.count(bob) == 4 and clients.count(None) == 2, place
    assert not (work / "batch" / jobs["alice"]).exists()
    assert not (work / "batch" / jobs["running"]).exists()
    assert (work / "batch" / jobs["bob"]).is_dir() and (work / "batch" / "scored.csv").is_file()
    engine = _engine(work)
    with engine.connect() as conn:
        owners = set(conn.execute(select(batch_jobs.c.client_key)).scalars())
    engine.dispose()
    assert owners == {bob}
    audit = _audits(work)[-1]
    assert audit["action"] == "privacy-erase" and audit["outcome"] == "ok"
    assert audit["detail"]["counts"] == report["counts"]
    assert audit["detail"]["subject"] == {"kind": "client", "client_key": alice}
    assert "alice" not in json.dumps(audit["detail"])  # the audit names the pseudonym only

    again = erase(work, _settings(work), Subject.client(KEYS, "alice"))
    assert set(again["counts"].values()) == {0}


def test_erasing_an_agent_cuts_it_from_the_log_spills_and_batch_results(
    world: dict[str, Any],
) -> None:
    work, jobs = world["work"], world["jobs"]
    report = erase(work, _settings(work), Subject.agent(KEYS, "hotel", 7))
    gone = (KEYS.scene("hotel"), KEYS.agent("hotel", 7))
    assert report["counts"]["predictions"] == 4  # alice's and the anonymous client's, old and new
    assert report["counts"]["batch_result_rows"] == 2 * len(jobs)
    assert report["counts"]["batch_jobs"] == 0
    for place, keys in _keys(work).items():
        assert gone not in [k[1:] for k in keys], place
        assert len(keys) == world["rows"] - 4, place  # the other agents' rows all remain
    for job_id in jobs.values():
        assert _read_result(work / "batch" / job_id) == [("hotel", 8)] * 2 + [("zara1", 7)] * 2
    assert _audits(work)[-1]["detail"]["subject"]["agent_key"] == KEYS.agent("hotel", 7)


def test_erasing_an_agent_matches_raw_ids_in_spills_of_a_v1_service(tmp_path: Path) -> None:
    work = tmp_path
    v1 = [{"scene": "hotel", "agent_id": 7, "request_id": "a"},
          {"scene": "hotel", "agent_id": 8, "request_id": "b"}]
    (work / "predictions-spill-9.jsonl").write_text("".join(json.dumps(r) + "\n" for r in v1))
    report = erase(work, _settings(work), Subject.agent(KEYS, "hotel", 7))
    assert report["counts"]["spill_rows"] == 1 and report["audited"] is False  # no database
    lines = (work / "predictions-spill-9.jsonl").read_text().splitlines()
    assert [json.loads(x)["agent_id"] for x in lines] == [8]


def test_purge_deletes_what_is_past_retention_in_batches_once(world: dict[str, Any]) -> None:
    work, jobs = world["work"], world["jobs"]
    old_files = [work / "batch" / jobs["old"] / files.RESULT_CSV]
    os.utime(old_files[0], (OLD.timestamp(), OLD.timestamp()))
    orphan = work / "batch" / ("e" * 32)  # a folder with no row (jobs kept in memory)
    _write_result(orphan, [("hotel", 7)])
    for path in [orphan / files.RESULT_CSV, orphan]:
        os.utime(path, (OLD.timestamp(), OLD.timestamp()))
    settings = _settings(work, log_retention_days=30, batch_retention_s=86_400 * 7,
                         monitoring_retention_days=30)
    report = purge(work, settings, now=NOW)
    half = world["rows"] // 2
    assert report["counts"] == {
        "predictions": half, "predictions_quarantine": half, "spill_rows": 2 * half,
        "batch_folders": 2, "batch_jobs": 1, "monitoring_folders": 1,
    }
    assert report["audited"] is True
    engine = _engine(work)
    with engine.connect() as conn:
        created = conn.execute(select(predictions.c.created_at)).scalars().all()
        left_jobs = set(conn.execute(select(batch_jobs.c.id)).scalars())
    engine.dispose()
    assert len(created) == half and all(c.replace(tzinfo=UTC) > NOW - timedelta(days=30)
                                        for c in created)
    assert left_jobs == {jobs["alice"], jobs["bob"], jobs["running"]}
    assert not (work / "batch" / jobs["old"]).exists() and not orphan.exists()
    assert (work / "batch" / jobs["running"]).is_dir()  # never touched while active
    assert [p.name for p in (work / "monitoring").iterdir()] == [RECENT.strftime("%Y%m%dT%H%M%S")]
    for keys in _keys(work).values():
        assert len(keys) == half
    audit = _audits(work)[-1]
    assert audit["action"] == "privacy-purge" and audit["outcome"] == "ok"
    assert audit["detail"]["counts"] == report["counts"]
    assert audit["source"] == "cli" and audit["key_fingerprint"] == "-"

    again = purge(work, settings, now=NOW)
    assert set(again["counts"].values()) == {0}


def test_a_failed_purge_is_audited_as_failed(world: dict[str, Any],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from trajectory.privacy import retention

    def broken(*_: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(retention, "_purge_spills", broken)
    with pytest.raises(OSError, match="disk gone"):
        purge(world["work"], _settings(world["work"]), now=NOW)
    audit = _audits(world["work"])[-1]
    assert audit["outcome"] == "failed" and audit["detail"]["error"] == "OSError"
    assert audit["detail"]["counts"]["predictions"] == world["rows"] // 2  # done before it failed


def test_erasure_never_makes_up_a_key(tmp_path: Path) -> None:
    settings = _settings(tmp_path, pseudonym_key=None)
    with pytest.raises(ConfigError, match="TRAJ_PSEUDONYM_KEY"):
        settings.pseudonymiser(tmp_path)
    assert not (tmp_path / KEY_FILE).exists()
    (tmp_path / KEY_FILE).write_text(KEY)  # the service's generated key file
    assert settings.pseudonymiser(tmp_path).key_id == KEYS.key_id


def test_result_rewrite_is_atomic_and_keeps_other_rows(tmp_path: Path) -> None:
    folder = tmp_path / "job"
    _write_result(folder, [("hotel", 7), ("hotel", 70), ("hotel7", 0)])
    assert files.drop_result_rows(folder / files.RESULT_CSV, "hotel", 7) == 2
    assert _read_result(folder) == [("hotel", 70)] * 2 + [("hotel7", 0)] * 2
    assert files.drop_result_rows(folder / files.RESULT_CSV, "hotel", 7) == 0
    assert [p.name for p in folder.iterdir()] == [files.RESULT_CSV]  # no temp file left


def test_cli_erase_and_purge(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from trajectory.cli import app

    work = world["work"]
    monkeypatch.setenv("TRAJ_PSEUDONYM_KEY", KEY)
    monkeypatch.setenv("SERVING_DATABASE_URL", f"sqlite:///{work / 'serving.db'}")
    monkeypatch.setenv("TRAJ_PRIVACY_SERVING_WORK_DIRS", json.dumps([str(work)]))
    runner = CliRunner()
    done = runner.invoke(app, ["privacy", "erase", "--scene", "zara1", "--agent-id", "7",
                               "--work-dir", str(work)])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["counts"]["predictions"] == 2
    done = runner.invoke(app, ["privacy", "erase", "--client-id", "bob", "--work-dir", str(work)])
    assert done.exit_code == 0 and json.loads(done.output)["counts"]["predictions"] == 2
    for bad in (["--client-id", "bob", "--agent-id", "1"], [], ["--scene", "hotel"]):
        refused = runner.invoke(app, ["privacy", "erase", *bad, "--work-dir", str(work)])
        assert refused.exit_code == 2 and "error:" in refused.output, bad
    purged = runner.invoke(app, ["privacy", "purge", "--work-dir", str(work)])
    assert purged.exit_code == 0, purged.output
    assert "predictions" in json.loads(purged.output)["counts"]
