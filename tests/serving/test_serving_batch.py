"""Batch CSV scoring: line errors on the input's lines, chunking that changes nothing, the API."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pandas as pd
import pytest
from serving_testkit import PREDICT, SPEC, FakeRegistry, TestClient, make_settings

from serving.batch import score_csv
from serving.main import create_app
from serving.registry import ServedModel


def crowd_csv(path: Path, scenes: int = 2, agents: int = 4, frames: int = 30) -> Path:
    """Agents walking at constant velocity, sorted by scene then frame (frame step 10)."""
    lines = ["scene,frame,agent_id,x,y"]
    for s in range(scenes):
        for f in range(frames):
            for a in range(agents):
                if a == 3 and f < 10:  # one agent arrives late: fewer windows
                    continue
                lines.append(f"s{s},{f * 10},{a},{0.5 * f:.2f},{1.0 * a + s}")
    path.write_text("\n".join(lines) + "\n")
    return path


def windows_expected(scenes: int = 2, agents: int = 4, frames: int = 30) -> int:
    per_agent = [(frames - (10 if a == 3 else 0)) - SPEC.obs_len + 1 for a in range(agents)]
    return scenes * sum(per_agent)


@pytest.fixture
def model() -> ServedModel:
    return FakeRegistry().load("models:/fake/1")


def test_scores_every_window_and_lists_bad_lines(tmp_path: Path, model: ServedModel) -> None:
    src = crowd_csv(tmp_path / "in.csv")
    lines = src.read_text().splitlines()
    lines.insert(5, "s0,40,9,abc,1")  # line 6: not a number
    lines.insert(8, "s0,40,9")  # line 9: too few fields
    lines.append("s1,300,0,nan,1")  # last line: NaN
    src.write_text("\n".join(lines) + "\n")
    settings = make_settings(tmp_path, batch_chunk_rows=100)
    seen = []
    report = score_csv(src, tmp_path / "out.csv", model, settings, lambda p, e: seen.append(p))
    assert report.windows == windows_expected()
    errors = {e.line: e.reason for e in report.first_errors}
    assert set(errors) == {6, 9, len(lines)}
    assert errors[6].startswith("not a number") and errors[9].startswith("column count")
    assert pd.read_csv(report.errors_path)["line"].tolist() == sorted(errors)
    out = pd.read_csv(tmp_path / "out.csv")
    assert len(out) == report.output_rows == report.windows * SPEC.pred_len
    assert list(out.columns) == ["scene", "agent_id", "last_obs_frame", "step", "frame",
                                 "sample", "weight", "x", "y"]
    first = out[(out.scene == "s0") & (out.agent_id == 0)].iloc[0]
    assert (first.last_obs_frame, first.step, first.frame) == (70, 1, 80)
    assert first.x == pytest.approx(4.0 + 1.0)  # CV from x = 3.5, then the fake's +1 m shift
    assert seen[-1].windows == report.windows and seen[-1].bytes_read == src.stat().st_size


def test_chunk_size_does_not_change_the_result(tmp_path: Path, model: ServedModel) -> None:
    src = crowd_csv(tmp_path / "in.csv", scenes=3, agents=5, frames=40)
    outputs = []
    for chunk_rows in (100, 137, 100_000):
        out = tmp_path / f"out-{chunk_rows}.csv"
        score_csv(src, out, model, make_settings(tmp_path, batch_chunk_rows=chunk_rows), k=2)
        outputs.append(pd.read_csv(out).sort_values(["scene", "agent_id", "frame", "sample"])
                       .reset_index(drop=True))
    pd.testing.assert_frame_equal(outputs[0], outputs[1])
    pd.testing.assert_frame_equal(outputs[0], outputs[2])
    assert set(outputs[0]["sample"]) == {0, 1}


def test_eth_text_and_unsorted_rows(tmp_path: Path, model: ServedModel) -> None:
    rows = [f"{f * 10}\t{a}\t{0.4 * f:.2f}\t{float(a)}" for f in range(20) for a in range(2)]
    rows.append("30\t0\t1.2\t0.0")  # back in time after frame 190: out of order
    src = tmp_path / "biwi_eth.txt"
    src.write_text("\n".join(rows) + "\n")
    report = score_csv(src, tmp_path / "out.csv", model, make_settings(tmp_path))
    assert report.windows == 2 * (20 - SPEC.obs_len + 1)
    assert report.first_errors[0].line == 41 and "out of order" in report.first_errors[0].reason
    assert set(pd.read_csv(tmp_path / "out.csv")["scene"]) == {"biwi_eth"}


def wait_done(client: TestClient, job_id: str) -> dict:
    for _ in range(200):
        status = client.get(f"/v1/batch/{job_id}", headers=PREDICT).json()
        if status["status"] in {"done", "failed"}:
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {status}")


def test_batch_api_upload_status_and_streamed_result(tmp_path: Path) -> None:
    src = crowd_csv(tmp_path / "in.csv")
    text = src.read_text().replace("s0,50,1,2.50,1.0", "s0,50,1,2.50,oops")
    settings = make_settings(tmp_path, max_csv_bytes=50_000)
    with TestClient(create_app(settings, model_source=FakeRegistry())) as client:
        r = client.post("/v1/batch", content=text, headers=PREDICT | {"content-type": "text/csv"})
        assert r.status_code == 202, r.text
        status = wait_done(client, r.json()["job_id"])
        assert status["status"] == "done" and status["model"] == {"name": "fake", "version": "1"}
        assert [e["reason"].split(":")[0] for e in status["errors"]] == ["not a number"]
        assert status["progress"]["rows"] == len(text.splitlines()) - 1
        result = client.get(status["result_url"], headers=PREDICT)
        assert result.status_code == 200 and result.headers["content-type"].startswith("text/csv")
        assert result.text.count("\n") - 1 == status["progress"]["windows"] * SPEC.pred_len

        multipart = client.post("/v1/batch", files={"file": ("x.csv", src.read_bytes())},
                                headers=PREDICT)
        assert wait_done(client, multipart.json()["job_id"])["progress"]["windows"] == (
            windows_expected())
        eth = "\n".join(f"{f * 10} {a} {0.4 * f:.2f} {float(a)}" for f in range(12) for a in (1, 2))
        r = client.post("/v1/batch?scene=zara", content=eth,
                        headers=PREDICT | {"content-type": "text/plain"})
        assert wait_done(client, r.json()["job_id"])["progress"]["windows"] == 2 * 5
        result = client.get(f"/v1/batch/{r.json()['job_id']}/result", headers=PREDICT).text
        assert set(pd.read_csv(io.StringIO(result))["scene"]) == {"zara"}
        big = client.post("/v1/batch", content=b"x" * 60_000, headers=PREDICT)
        assert big.status_code == 413
        assert client.get("/v1/batch/nope", headers=PREDICT).status_code == 404
        assert client.post("/v1/batch", content=text).status_code == 401
        assert (tmp_path / "serving.db").exists()


def test_rows_arriving_after_their_frames_were_scored_are_reported(
    tmp_path: Path, model: ServedModel
) -> None:
    src = crowd_csv(tmp_path / "in.csv")
    with src.open("a") as f:
        f.write("s0,0,77,0.0,5.0\n")  # a new agent at frame 0, after all of scene s0 and s1
    report = score_csv(src, tmp_path / "out.csv", model, make_settings(tmp_path, batch_chunk_rows=100))
    assert report.windows == windows_expected()
    late = [e for e in report.first_errors if e.line == 0]
    assert len(late) == 1 and "sort the input by frame" in late[0].reason
