"""Batch jobs of the API: kept in the database (restarts, replicas), owned by a key, capped,
expired; uploads whose names or contents are hostile or empty never end as a 500 or a `done`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from serving_testkit import ADMIN, PREDICT, PREDICT_KEY, FakeRegistry, TestClient, make_settings
from sqlalchemy import insert, select

from serving.config import ServingSettings, hash_api_key
from serving.db import batch_jobs, open_database
from serving.main import create_app

CSV = (
    "\n".join(
        ["scene,frame,agent_id,x,y"]
        + [f"s0,{f * 10},{a},{0.5 * f:.2f},{float(a)}" for f in range(12) for a in range(2)]
    )
    + "\n"
)


def owner_of(key: str) -> str:
    return hash_api_key(key)[:16]


def app_client(settings: ServingSettings) -> TestClient:
    return TestClient(create_app(settings, model_source=FakeRegistry()))


def wait_done(client: TestClient, job_id: str, headers: dict[str, str] = PREDICT) -> dict:
    for _ in range(400):
        status = client.get(f"/v1/batch/{job_id}", headers=headers).json()
        if status["status"] in {"done", "failed"}:
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {status}")


def add_job(settings: ServingSettings, job_id: str, **values: object) -> None:
    """A row written as another (or an earlier) replica would have written it."""
    engine = open_database(settings.resolved_database_url())
    now = datetime.now(UTC)
    row = {
        "id": job_id,
        "owner": owner_of(PREDICT_KEY),
        "client_key": None,
        "status": "done",
        "input_name": "old.csv",
        "created_at": now,
        "started_at": now,
        "finished_at": now,
        "replica": "elsewhere",
        "model": {"name": "fake", "version": "1"},
        "progress": {
            "bytes_read": 1,
            "bytes_total": 1,
            "rows": 1,
            "rows_rejected": 0,
            "windows": 0,
        },
        "errors": [],
        "errors_truncated": False,
        "detail": None,
    } | values
    with engine.begin() as conn:
        conn.execute(insert(batch_jobs), [row])
    engine.dispose()


def job_rows(settings: ServingSettings) -> dict[str, dict]:
    engine = open_database(settings.resolved_database_url())
    with engine.connect() as conn:
        rows = {r["id"]: dict(r) for r in conn.execute(select(batch_jobs)).mappings()}
    engine.dispose()
    return rows


def multipart(
    filename: bytes, data: bytes, content_type: bytes = b"text/csv"
) -> tuple[bytes, dict]:
    """A multipart body written by hand: clients can send bytes no HTTP library would."""
    boundary = b"b0undary"
    body = (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
        b"Content-Type: " + content_type + b"\r\n\r\n" + data + b"\r\n--" + boundary + b"--\r\n"
    )
    return body, {"content-type": "multipart/form-data; boundary=b0undary"}


def test_jobs_survive_a_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with app_client(settings) as client:
        r = client.post("/v1/batch", content=CSV, headers=PREDICT | {"content-type": "text/csv"})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        before = wait_done(client, job_id)
        assert before["status"] == "done", before
        result = client.get(f"/v1/batch/{job_id}/result", headers=PREDICT).text
    with app_client(settings) as client:  # a new process (or another replica) on the same db
        after = client.get(f"/v1/batch/{job_id}", headers=PREDICT)
        assert after.status_code == 200, after.text
        assert after.json() == before
        again = client.get(f"/v1/batch/{job_id}/result", headers=PREDICT)
        assert again.status_code == 200 and again.text == result
    assert job_rows(settings)[job_id]["owner"] == owner_of(PREDICT_KEY)


def test_only_the_key_that_made_a_job_sees_it(tmp_path: Path) -> None:
    with app_client(make_settings(tmp_path)) as client:
        r = client.post("/v1/batch", content=CSV, headers=ADMIN | {"content-type": "text/csv"})
        job_id = r.json()["job_id"]
        assert wait_done(client, job_id, ADMIN)["status"] == "done"
        unknown = "0" * 32
        for path in (f"/v1/batch/{job_id}", f"/v1/batch/{job_id}/result"):
            other = client.get(path, headers=PREDICT)
            missing = client.get(path.replace(job_id, unknown), headers=PREDICT)
            assert other.status_code == missing.status_code == 404
            assert other.json()["detail"].replace(job_id, unknown) == missing.json()["detail"]
        assert client.get(f"/v1/batch/{job_id}/result", headers=ADMIN).status_code == 200


def test_queued_and_running_jobs_per_key_are_capped(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, batch_max_queued_per_key=2)
    with app_client(settings):
        pass  # creates the database
    add_job(settings, "a" * 32, status="running", finished_at=None)
    add_job(settings, "b" * 32, status="queued", finished_at=None)
    add_job(settings, "c" * 32, status="done")
    with app_client(settings) as client:
        r = client.post("/v1/batch", content=CSV, headers=PREDICT | {"content-type": "text/csv"})
        assert r.status_code == 429, r.text
        assert "2 batch jobs" in r.json()["detail"] and int(r.headers["retry-after"]) > 0
        assert len(list((tmp_path / "batch").glob("*"))) == 0  # nothing spooled
        other_key = client.post(
            "/v1/batch", content=CSV, headers=ADMIN | {"content-type": "text/csv"}
        )
        assert other_key.status_code == 202, other_key.text


def test_finished_jobs_past_retention_are_expired_at_start_up(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, batch_retention_s=3600)
    with app_client(settings):
        pass
    old = datetime.now(UTC) - timedelta(hours=2)
    add_job(settings, "d" * 32, created_at=old, finished_at=old)
    add_job(settings, "e" * 32)  # finished just now: kept
    for job_id in ("d" * 32, "e" * 32, "f" * 32):  # f: a folder without a row, old
        (tmp_path / "batch" / job_id).mkdir(parents=True)
        (tmp_path / "batch" / job_id / "result.csv").write_text("x\n")
    stale = old.timestamp()
    os.utime(tmp_path / "batch" / ("f" * 32), (stale, stale))
    with app_client(settings) as client:
        assert client.get(f"/v1/batch/{'d' * 32}", headers=PREDICT).status_code == 404
        assert client.get(f"/v1/batch/{'e' * 32}", headers=PREDICT).status_code == 200
    assert not (tmp_path / "batch" / ("d" * 32)).exists()
    assert not (tmp_path / "batch" / ("f" * 32)).exists()
    assert (tmp_path / "batch" / ("e" * 32) / "result.csv").exists()
    assert set(job_rows(settings)) == {"e" * 32}


def test_jobs_this_replica_left_unfinished_are_failed_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SERVING_REPLICA_NAME", raising=False)
    settings = make_settings(tmp_path)
    with app_client(settings):
        pass
    me = socket.gethostname()
    add_job(settings, "1" * 32, status="running", finished_at=None, replica=me)
    add_job(settings, "2" * 32, status="queued", finished_at=None, started_at=None, replica=me)
    add_job(settings, "3" * 32, status="running", finished_at=None, replica="serving-2")
    with app_client(settings) as client:
        for job_id in ("1" * 32, "2" * 32):
            status = client.get(f"/v1/batch/{job_id}", headers=PREDICT).json()
            assert status["status"] == "failed", status
            assert status["detail"] == "interrupted by a service restart; resubmit"
            assert status["finished_at"] is not None
        assert client.get(f"/v1/batch/{'3' * 32}", headers=PREDICT).json()["status"] == "running"


def test_a_sibling_worker_process_keeps_its_running_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`trajectory serve --workers N`: N processes share the replica name; one restarting
    must not fail the jobs another (still alive) is scoring."""
    monkeypatch.setenv("SERVING_REPLICA_NAME", "serving-1")
    settings = make_settings(tmp_path)
    with app_client(settings):
        pass
    sibling = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        add_job(settings, "5" * 32, status="running", finished_at=None,
                replica=f"serving-1/{sibling.pid}")
        add_job(settings, "6" * 32, status="running", finished_at=None,
                replica="serving-1/999999999")  # a process that is gone
        with app_client(settings) as client:
            assert client.get(f"/v1/batch/{'5' * 32}", headers=PREDICT).json()["status"] == "running"
            assert client.get(f"/v1/batch/{'6' * 32}", headers=PREDICT).json()["status"] == "failed"
    finally:
        sibling.kill()


def test_replica_name_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVING_REPLICA_NAME", "serving-7")
    settings = make_settings(tmp_path)
    with app_client(settings):
        pass
    add_job(settings, "4" * 32, status="running", finished_at=None, replica="serving-7")
    with app_client(settings) as client:
        r = client.post("/v1/batch", content=CSV, headers=PREDICT | {"content-type": "text/csv"})
        wait_done(client, r.json()["job_id"])
        assert client.get(f"/v1/batch/{'4' * 32}", headers=PREDICT).json()["status"] == "failed"
    assert job_rows(settings)[r.json()["job_id"]]["replica"] == f"serving-7/{os.getpid()}"


@pytest.mark.parametrize(
    "filename",
    [b"x." + b"a" * 300, b"a\x00b.csv", b"../../etc/passwd", b"\xe2\x80\xaetxt.csv", b"."],
)
def test_hostile_file_names_are_never_paths(tmp_path: Path, filename: bytes) -> None:
    with app_client(make_settings(tmp_path)) as client:
        body, headers = multipart(filename, CSV.encode())
        r = client.post("/v1/batch", content=body, headers=PREDICT | headers)
        assert r.status_code in {202, 422}, r.text
        if r.status_code == 202:
            status = wait_done(client, r.json()["job_id"])
            assert status["status"] == "done", status
            name = job_rows(make_settings(tmp_path))[r.json()["job_id"]]["input_name"]
            assert len(name) <= 100 and "\x00" not in name and "/" not in name
            assert "\u202e" not in name


def test_a_failed_job_names_the_upload_not_a_server_path(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with app_client(settings) as client:
        body, headers = multipart(
            b"my tracks.csv", b"\x00\x01\x02binary\xff" * 100, b"application/octet-stream"
        )
        r = client.post("/v1/batch", content=body, headers=PREDICT | headers)
        assert r.status_code == 202, r.text
        status = wait_done(client, r.json()["job_id"])
        assert status["status"] == "failed" and status["result_url"] is None
        assert "my tracks.csv" in status["detail"] and "binary" in status["detail"]
        assert str(tmp_path) not in status["detail"] and "chunk" not in status["detail"]
        assert "/" not in status["detail"]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [("scene,frame,agent_id,x,y\n", "text/csv"), ("\n\n", "text/csv"), ("\x00\x01" * 50, None)],
)
def test_an_input_without_rows_fails_and_leaves_no_result(
    tmp_path: Path, content: str, content_type: str | None
) -> None:
    settings = make_settings(tmp_path)
    headers = PREDICT | ({"content-type": content_type} if content_type else {})
    with app_client(settings) as client:
        r = client.post("/v1/batch", content=content, headers=headers)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        status = wait_done(client, job_id)
        assert status["status"] == "failed", status
        assert status["detail"].startswith("request body: "), status["detail"]
        assert client.get(f"/v1/batch/{job_id}/result", headers=PREDICT).status_code == 409
    left = list((tmp_path / "batch").rglob("*"))
    assert not [p for p in left if p.is_file()], left


@pytest.mark.parametrize(
    ("content", "headers", "field"),
    [
        (b'{"agents": []}', {"content-type": "application/json"}, "content-type"),
        (b"", {"content-type": "text/csv"}, "body"),
        (b"", {}, "body"),
        multipart(b"empty.csv", b"") + ("file",),
        multipart(b"x.json", b"{}", b"application/json") + ("file",),
    ],
)
def test_json_and_empty_uploads_are_refused_at_submit(
    tmp_path: Path, content: bytes, headers: dict, field: str
) -> None:
    with app_client(make_settings(tmp_path)) as client:
        r = client.post("/v1/batch", content=content, headers=PREDICT | headers)
        assert r.status_code in {415, 422}, r.text
        assert r.json()["detail"][0]["field"] == field, r.json()
        assert not list((tmp_path / "batch").glob("*"))
        assert job_rows(make_settings(tmp_path)) == {}


def test_forcing_a_variant_needs_the_admin_role(tmp_path: Path) -> None:
    with app_client(make_settings(tmp_path)) as client:
        csv = {"content-type": "text/csv"}
        r = client.post("/v1/batch?variant=challenger", content=CSV, headers=PREDICT | csv)
        assert r.status_code == 403, r.text
        r = client.post("/v1/batch?variant=challenger", content=CSV, headers=ADMIN | csv)
        assert r.status_code == 202, r.text
        assert wait_done(client, r.json()["job_id"], ADMIN)["model"]["version"] == "2"


def test_progress_reaches_the_database_at_most_once_a_second(tmp_path: Path) -> None:
    from serving.jobs import ProgressThrottle

    throttle = ProgressThrottle(every_s=1.0, clock=iter([0.0, 0.2, 0.9, 1.1, 1.5, 2.2]).__next__)
    assert [throttle.due() for _ in range(6)] == [True, False, False, True, False, True]
