"""Fuzzing the raw-file reader and batch scoring with generated files: valid rows, garbage,
huge and non-finite numbers, missing fields, odd encodings, blank lines.

Whatever the file, the only exception is the project's DataError for a whole-file problem;
otherwise every non-blank data line is either a valid row or a rejected one, no kept or
scored number is non-finite or beyond the bound, and batch scoring rejects exactly the
lines the reader rejects.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.batch import score_csv
from serving.config import ServingSettings
from serving.registry import ServedModel
from trajectory.config import Settings
from trajectory.data.io import read_tracks
from trajectory.data.windows import WindowSpec
from trajectory.exceptions import DataError
from trajectory.files import FORMULA_STARTS
from trajectory.models.constant_velocity import ConstantVelocity

SETTINGS = Settings(frame_seconds=0.4, max_speed=12.0)
SPEC = WindowSpec(obs_len=4, pred_len=3, neighbour_radius=5.0, max_neighbours=2)
WHOLE_FILE = ("empty", "header only", "not a text file", "CSV header", "only blank lines")
FUZZ = settings(max_examples=50, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ODD_NUMBERS = ["1e308", "-1e308", "1e309", "nan", "NaN", "inf", "-inf", "1e5", "100000.5",
               "-0", "0x1A", "1_0", "١٢", "", " ", "abc", "=1+1", "@SUM(A1)", "+1", "-1.5e-320"]
LAYOUTS = {
    ".txt": None,
    ".csv": "frame,agent_id,x,y",
    "scene.csv": "scene,frame,agent_id,x,y",
    "time.csv": "scene,timestamp,agent_id,x,y",
}


@dataclass
class RawFile:
    name: str
    data: bytes

    def write(self, folder: Path) -> Path:
        path = folder / self.name
        path.write_bytes(self.data)
        return path

    def data_rows(self) -> int:
        """Non-blank data lines, as the reader counts them."""
        lines = self.data.decode("utf-8", errors="replace").split("\n")
        if self.name.endswith(".csv"):
            lines = lines[1:]
        return sum(bool(line.rstrip("\r").strip()) for line in lines)


@st.composite
def raw_files(draw: st.DrawFn) -> RawFile:
    kind = draw(st.sampled_from(sorted(LAYOUTS)))
    header = LAYOUTS[kind]
    sep = "," if header else draw(st.sampled_from(["\t", " ", "  "]))
    scene = draw(st.sampled_from(["s", "zara", "é" * 50, "=cmd|' /C calc'!A0", "-1", "a b"]))
    number = st.one_of(st.floats(width=64).map(repr), st.sampled_from(ODD_NUMBERS),
                       st.integers(-10**20, 10**20).map(str))

    def row(frame: str, agent: str, x: str, y: str) -> str:
        fields = [frame, agent, x, y]
        if header and header.startswith("scene"):
            fields.insert(0, scene)
        return sep.join(fields)

    lines = []
    for agent in range(draw(st.integers(0, 3))):  # walkers: many valid rows
        vx = draw(st.floats(-2, 2))
        for f in range(draw(st.integers(0, 14))):
            t = f * 10 if kind != "time.csv" else f
            time = f"{0.4 * t:.1f}" if kind == "time.csv" else str(t)
            lines.append(row(time, str(agent), f"{vx * f:.3f}", f"{agent:.1f}"))
    junk = st.one_of(
        st.builds(row, number, number, number, number),  # every field odd
        st.lists(number, max_size=6).map(sep.join),  # missing or extra fields
        st.text(max_size=30).map(lambda s: s.replace("\n", " ")),  # any text
        st.just(""),  # blank
    )
    for _ in range(draw(st.integers(0, 8))):
        lines.insert(draw(st.integers(0, len(lines))), draw(junk))
    text = "\n".join(([header] if header else []) + lines)
    text += draw(st.sampled_from(["", "\n"]))
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.integers(0, 9)) == 0:
        data = draw(st.binary(max_size=200))
    return RawFile("in" + (kind if kind.startswith(".") else "." + kind.split(".")[1]), data)


def whole_file_error(err: DataError, raw: RawFile) -> None:
    """A DataError must be a whole-file one; an empty one must really hold no rows."""
    message = str(err)
    assert raw.name in message and any(w in message for w in WHOLE_FILE), message
    if "empty" in message or "header only" in message:
        assert raw.data_rows() == 0, message


@FUZZ
@given(raw=raw_files())
def test_the_reader_accounts_for_every_line(raw: RawFile) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = raw.write(Path(tmp))
        try:
            result = read_tracks(path, settings=SETTINGS)
        except DataError as err:
            whole_file_error(err, raw)
            return
    assert result.rows_in == raw.data_rows() == len(result.tracks) + len(result.rejects)
    assert result.rejects["line"].is_unique
    assert not set(result.rejects["line"]) & set(result.tracks.index)
    xy = result.tracks[["x", "y"]].to_numpy()
    assert np.isfinite(xy).all() and (np.abs(xy) <= SETTINGS.max_abs_coordinate).all()
    assert all(len(r) < 400 for r in result.rejects["reason"])


def cv_model() -> ServedModel:
    model = ConstantVelocity(obs_len=SPEC.obs_len, pred_len=SPEC.pred_len).eval()
    return ServedModel("cv", "1", "builtin", SPEC, model, "builtin:cv")


@FUZZ
@given(raw=raw_files())
def test_batch_scoring_accounts_for_every_line(raw: RawFile) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path, out = raw.write(folder), folder / "out" / "scored.csv"
        config = ServingSettings(work_dir=folder, auth_required=False, batch_chunk_rows=100)
        try:
            report = score_csv(path, out, cv_model(), config)
        except DataError as err:
            whole_file_error(err, raw)
            assert not (folder / "out").exists() or not any((folder / "out").iterdir())
            return
        errors = pd.read_csv(report.errors_path, dtype={"reason": str}, keep_default_na=False)
        scored = pd.read_csv(out, dtype={"scene": str}, keep_default_na=False)
        expected = read_tracks(path, settings=config.trajectory_settings())
    assert report.rows == raw.data_rows()
    rejected = errors.loc[errors["line"] > 0, "line"]
    assert len(rejected) == report.rows_rejected and rejected.is_unique
    assert set(rejected) == set(expected.rejects["line"])
    assert report.rows - report.rows_rejected == len(expected.tracks)
    assert len(scored) == report.output_rows
    numbers = scored[["x", "y", "weight"]].to_numpy(np.float64)
    assert np.isfinite(numbers).all()
    texts = [*scored["scene"], *errors["reason"]]  # the text cells (numbers may be negative)
    assert not any(c.startswith(FORMULA_STARTS) for c in texts)
    assert all(math.isfinite(v) for v in scored["frame"])
