"""Batch CSV scoring: line errors on the input's lines, chunking that changes nothing, the API."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from serving_testkit import PREDICT, SPEC, FakeRegistry, ShiftedCV, TestClient, make_settings

from serving import engine
from serving.batch import score_csv
from serving.main import create_app
from serving.registry import ServedModel
from trajectory.exceptions import DataError, TrajectoryError
from trajectory.models.base import Prediction


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


def test_rows_out_of_frame_order_across_agents_are_scored_as_if_sorted(
    tmp_path: Path, model: ServedModel
) -> None:
    """Partitions read a scene's rows by frame, wherever they are in the file: an agent whose
    rows come after the rest of its scene is scored, with the same windows as sorted input."""
    src = crowd_csv(tmp_path / "in.csv")
    late = [f"s0,{f * 10},77,{0.5 * f:.2f},5.0" for f in range(10)]  # after all of s0 and s1
    src.write_text(src.read_text() + "\n".join(late) + "\n")
    lines = src.read_text().splitlines()
    body = pd.read_csv(src).sort_values(["scene", "frame"], kind="stable")
    sorted_src = tmp_path / "sorted.csv"
    body.to_csv(sorted_src, index=False)
    settings = make_settings(tmp_path, batch_chunk_rows=100)
    report = score_csv(src, tmp_path / "out.csv", model, settings)
    assert report.windows == windows_expected() + 10 - SPEC.obs_len + 1 and not report.first_errors
    assert report.rows == len(lines) - 1
    score_csv(sorted_src, tmp_path / "ref.csv", model, settings)
    keys = ["scene", "agent_id", "last_obs_frame", "step", "sample"]
    got, ref = (pd.read_csv(tmp_path / n).sort_values(keys).reset_index(drop=True)
                for n in ("out.csv", "ref.csv"))
    pd.testing.assert_frame_equal(got, ref)


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    """Names in `folder` other than `keep` (outputs, .part files, chunk folders)."""
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("empty.csv", b"", "empty"),
        ("empty.txt", b"", "empty"),
        ("header.csv", b"scene,frame,agent_id,x,y\n", "header only, no data rows"),
        ("blob.csv", bytes(range(256)) * 40, "not a text file (binary)"),
        ("bad_header.csv", b"a,b,c\n1,2,3\n", "must name agent_id"),
    ],
)
def test_an_input_without_rows_fails_naming_the_file_and_leaves_no_output(
    tmp_path: Path, model: ServedModel, name: str, content: bytes, why: str
) -> None:
    src = tmp_path / name
    src.write_bytes(content)
    with pytest.raises(DataError) as err:
        score_csv(src, tmp_path / "out" / "scored.csv", model, make_settings(tmp_path))
    assert name in str(err.value) and why in str(err.value)
    assert not (tmp_path / "out").exists() or leftovers(tmp_path / "out", set()) == []


def test_a_failure_midway_leaves_no_part_or_errors_file(
    tmp_path: Path, model: ServedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = crowd_csv(tmp_path / "in.csv")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("model crashed")

    monkeypatch.setattr(engine.Engine, "predict", broken)
    with pytest.raises(RuntimeError):
        score_csv(src, tmp_path / "out.csv", model, make_settings(tmp_path, batch_chunk_rows=100))
    assert leftovers(tmp_path, {"in.csv", "serving.db"}) == []


def test_blank_lines_filling_a_whole_chunk_are_no_error(
    tmp_path: Path, model: ServedModel
) -> None:
    src = crowd_csv(tmp_path / "in.csv")
    lines = src.read_text().splitlines()
    src.write_text("\n".join(lines[:60] + [""] * 250 + lines[60:]) + "\n")
    report = score_csv(src, tmp_path / "out.csv", model, make_settings(tmp_path, batch_chunk_rows=100))
    assert report.windows == windows_expected() and report.rows_rejected == 0


def test_formula_cells_are_neutralised_in_the_result(tmp_path: Path, model: ServedModel) -> None:
    attacks = ["=cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "+1+HYPERLINK(\"http://x\")",
               "-1.5"]
    lines = ["scene,frame,agent_id,x,y"]
    for f in range(10):
        lines += [f"{s},{f * 10},{a},{-0.5 * f:.2f},{-1.0 * a}" for a, s in enumerate(attacks)]
    lines.append("=bad,1,2,abc,1")  # a reject: its reason goes to the errors CSV
    src = tmp_path / "in.csv"
    src.write_text("\n".join(lines) + "\n")
    report = score_csv(src, tmp_path / "out.csv", model, make_settings(tmp_path))
    out = pd.read_csv(tmp_path / "out.csv", dtype={"scene": str})
    assert set(out["scene"]) == {"'" + a for a in attacks}
    assert (out["x"] < 0).any()  # numbers stay numbers
    text = (tmp_path / "out.csv").read_text() + report.errors_path.read_text()
    for cell in csv.reader(io.StringIO(text)):
        assert not any(c.startswith(("=", "+", "@", "\t", "\r")) for c in cell)


class NanForFarAgents(ShiftedCV):
    """Constant velocity, but NaN for any window observed beyond x = 1000 m."""

    def forward(self, obs: torch.Tensor, nbr: torch.Tensor, k: int = 1) -> Prediction:
        out = super().forward(obs, nbr, k)
        far = obs[:, -1, 0] > 1000  # (B,)
        traj = out.traj.clone()
        traj[far] = float("nan")
        return Prediction(traj=traj, weights=out.weights)


def test_a_non_finite_model_output_is_an_error_for_that_window_only(tmp_path: Path) -> None:
    src = crowd_csv(tmp_path / "in.csv", scenes=1, agents=2, frames=12)
    far = [f"s0,{f * 10},9,{5000 + 0.5 * f:.2f},0" for f in range(12)]
    src.write_text(src.read_text() + "\n".join(far) + "\n")
    nan_model = NanForFarAgents(obs_len=SPEC.obs_len, pred_len=SPEC.pred_len).eval()
    served = ServedModel("nan", "1", "run1", SPEC, nan_model, "builtin:nan")
    report = score_csv(src, tmp_path / "out.csv", served, make_settings(tmp_path))
    out = pd.read_csv(tmp_path / "out.csv")
    assert np.isfinite(out[["x", "y", "weight"]].to_numpy()).all()
    assert 9 not in set(out["agent_id"]) and {0, 1} <= set(out["agent_id"])
    bad = [e for e in report.first_errors if "not finite" in e.reason]
    assert len(bad) == 12 - SPEC.obs_len + 1
    assert all("agent 9" in e.reason and "'s0'" in e.reason for e in bad)
    assert report.windows == len(out) // SPEC.pred_len


def test_output_path_mistakes_are_one_clear_error(tmp_path: Path, model: ServedModel) -> None:
    src = crowd_csv(tmp_path / "in.csv")
    with pytest.raises(TrajectoryError, match="in.csv"):
        score_csv(src, src / "out.csv", model, make_settings(tmp_path))
    with pytest.raises(TrajectoryError, match="is the input"):
        score_csv(src, src, model, make_settings(tmp_path))
    with pytest.raises(TrajectoryError, match="folder"):
        score_csv(tmp_path, tmp_path / "o.csv", model, make_settings(tmp_path))
    assert src.read_text().startswith("scene,frame")
