"""Resampling tracks to the model's time step, and timing rows by their real elapsed time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trajectory.config import Settings
from trajectory.data.dataset import load_windows
from trajectory.data.etl import run_etl
from trajectory.data.resample import resample, resample_tracks, track_seconds
from trajectory.data.validate import validate_tracks
from trajectory.data.windows import WindowSpec, make_windows

SPEC = WindowSpec(obs_len=8, pred_len=12, max_neighbours=2, dt=0.4, max_gap=1.0)


def curve(t: np.ndarray, agent: int) -> np.ndarray:
    """(n, 2): agent 0 walks straight at 1.3 m/s, the others on gentle arcs (radius 40 m)."""
    if agent == 0:
        return np.stack([1.3 * t, 0.2 * t + 1.0], axis=1)
    angle = 1.2 * t / 40.0 + agent  # 1.2 m/s on a circle of radius 40 m
    return np.stack([40.0 * np.cos(angle) + 3 * agent, 40.0 * np.sin(angle)], axis=1)


def rows_at(step: float, how: str, seconds: float = 20.0, agents: int = 3) -> pd.DataFrame:
    """Tracks sampled every `step` seconds: frames of step 10 per 0.4 s ("eth"), frames of
    step 1 ("frames", frame_seconds = step) or timestamps ("timestamps")."""
    t = np.arange(0.0, seconds + 1e-9, step)
    parts = []
    for agent in range(agents):
        xy = curve(t, agent)
        part = pd.DataFrame({"scene": "s", "agent_id": float(agent), "x": xy[:, 0], "y": xy[:, 1]})
        if how == "eth":
            part.insert(1, "frame", np.round(t / 0.04))
        elif how == "frames":
            part.insert(1, "frame", np.round(t / step))
        else:
            part.insert(1, "frame", np.round(t * 1000.0))
            part["time"] = t
        parts.append(part)
    return pd.concat(parts, ignore_index=True).sort_values(["frame", "agent_id"], kind="stable")


def cv_forecast(obs: np.ndarray, pred_len: int) -> np.ndarray:
    """(N, T_obs, 2) -> (N, T_pred, 2): the last observed step repeated (Constant Velocity)."""
    step = obs[:, -1] - obs[:, -2]
    return obs[:, -1, None] + np.arange(1, pred_len + 1)[None, :, None] * step[:, None]


def test_linear_motion_is_resampled_exactly() -> None:
    t = np.arange(0.0, 6.01, 0.5)  # 0.5 s steps
    xy = np.stack([1.3 * t - 2.0, 0.7 * t + 1.0], axis=1)
    r = resample(t, xy, np.zeros(len(t), np.int64), dt=0.4, max_gap=1.0)
    assert r.k.tolist() == list(range(16))  # 0.0 .. 6.0 s
    grid = r.k * 0.4
    np.testing.assert_allclose(r.xy, np.stack([1.3 * grid - 2.0, 0.7 * grid + 1.0], 1), atol=1e-12)


def test_a_track_at_the_grid_step_comes_out_unchanged() -> None:
    t = np.arange(25) * 0.4 + 2.0  # float noise such as 1.2000000000000002 is tolerated
    xy = np.random.default_rng(0).normal(size=(25, 2))
    r = resample(t, xy, np.zeros(25, np.int64), dt=0.4, max_gap=1.0)
    assert r.k.tolist() == list(range(5, 30))
    np.testing.assert_array_equal(r.xy, xy)  # bit for bit


def test_frames_at_the_model_step_are_returned_untouched() -> None:
    rows = rows_at(0.4, "eth").astype({"frame": np.int64, "agent_id": np.int64})
    assert resample_tracks(rows, frame_seconds=0.4, dt=0.4, max_gap=1.0) is rows


def test_gaps_longer_than_max_gap_split_a_track() -> None:
    t = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.5, 4.0, 4.5])  # 1.5 s gap after 2.0 s
    xy = np.stack([t, np.zeros_like(t)], axis=1)
    group = np.zeros(len(t), np.int64)
    r = resample(t, xy, group, dt=0.4, max_gap=1.0)
    assert r.k.tolist() == [0, 1, 2, 3, 4, 5, 9, 10, 11]  # nothing in (2.0 s, 3.5 s)
    assert r.segment.tolist() == [0] * 6 + [1] * 3
    bridged = resample(t, xy, group, dt=0.4, max_gap=2.0)
    assert bridged.k.tolist() == list(range(12))
    np.testing.assert_allclose(bridged.xy[:, 0], bridged.k * 0.4, atol=1e-12)


def test_agents_are_resampled_apart_and_windows_never_span_a_gap() -> None:
    t = np.arange(0.0, 20.01, 0.5)
    keep = (t < 6.0) | (t > 7.9)  # agent 1 unseen for 2 s
    rows = pd.DataFrame(
        {
            "scene": "s",
            "frame": np.concatenate([np.round(t * 1000), np.round(t[keep] * 1000)]),
            "agent_id": np.repeat([1, 2], [len(t), keep.sum()]),
            "x": np.concatenate([t, 10 + t[keep]]),
            "y": 0.0,
            "time": np.concatenate([t, t[keep]]),
        }
    )
    out = resample_tracks(rows, frame_seconds=0.4, dt=0.4, max_gap=1.0)
    assert out.columns.tolist() == ["scene", "frame", "agent_id", "x", "y"]
    mine = out[out["agent_id"] == 1]
    assert mine["frame"].tolist() == list(range(51))
    np.testing.assert_allclose(mine["x"], mine["frame"] * 0.4, atol=1e-12)
    other = out[out["agent_id"] == 2]["frame"].to_numpy()
    assert not ((other > 14) & (other < 20)).any()  # 5.5 s .. 8.0 s is a gap: no points
    w = make_windows(out, SPEC)
    for agent, start in zip(w.agent_id, w.start_frame, strict=True):
        if agent == 2:
            assert start + 19 <= 14 or start >= 20


def test_track_seconds_from_timestamps_or_frames() -> None:
    eth = rows_at(0.4, "eth", seconds=2.0, agents=1)
    np.testing.assert_allclose(track_seconds(eth, 0.4), np.arange(6) * 0.4, atol=1e-12)
    timed = rows_at(0.5, "timestamps", seconds=2.0, agents=1)
    np.testing.assert_array_equal(track_seconds(timed, 0.4), timed["time"].to_numpy())


@pytest.mark.parametrize("how", ["frames", "timestamps"])
def test_speed_check_uses_real_elapsed_time(how: str) -> None:
    # 1.5 m/s walkers every 0.1 s (frames of step 1 lasting 0.1 s, or timestamps)
    rows = rows_at(0.1, how, seconds=4.0, agents=2)
    t = track_seconds(rows, 0.1)
    rows["x"], rows["y"] = np.where(rows["agent_id"] == 0, 1.5 * t, 0.0), 1.0
    valid, reasons = validate_tracks(rows, max_speed=12.0, frame_seconds=0.1)
    assert reasons.empty and len(valid) == len(rows)
    # 1.35 m more in one 0.1 s step: 15 m/s, a jump (at an assumed 0.4 s a step, 3.75 m/s)
    jump = rows.index[rows["agent_id"] == 0][20]
    rows.loc[jump, "x"] += 1.35
    _, reasons = validate_tracks(rows, max_speed=12.0, frame_seconds=0.1)
    assert reasons.index.tolist() == [jump]
    assert reasons.iloc[0].startswith("impossible jump: 15.0 m/s")


def test_a_runner_recorded_every_half_second_is_kept_and_a_real_jump_is_not() -> None:
    # 5.5 m/s at 0.5 s a step: taken as 0.4 s a step it was 6.9 m/s, over a 6 m/s limit
    t = np.arange(0.0, 5.01, 0.5)
    rows = pd.DataFrame({"scene": "s", "frame": np.arange(len(t), dtype=float),
                         "agent_id": 1.0, "x": 5.5 * t, "y": 0.0})
    valid, reasons = validate_tracks(rows, max_speed=6.0, frame_seconds=0.5)
    assert reasons.empty and len(valid) == len(t)
    rows.loc[4, "x"] += 2.25  # from point 3: 5.0 m in 0.5 s = 10 m/s
    _, reasons = validate_tracks(rows, max_speed=6.0, frame_seconds=0.5)
    assert reasons.index.tolist() == [4] and "10.0 m/s" in reasons.iloc[0]


def test_same_tracks_at_three_rates_give_the_same_forecast() -> None:
    """0.4 s (frame step 10, as ETH/UCY), 0.5 s (timestamps) and 0.1 s (frame step 1):
    validated, resampled to 0.4 s and windowed as by the ETL; Constant Velocity forecasts
    of the windows starting at the same time agree within 0.05 m."""
    forecasts = {}
    for step, how, unit in ((0.4, "eth", 0.04), (0.5, "timestamps", 0.4), (0.1, "frames", 0.4)):
        rows = rows_at(step, how)
        valid, reasons = validate_tracks(rows, max_speed=12.0, frame_seconds=step)
        assert reasons.empty
        tracks = resample_tracks(valid, frame_seconds=step, dt=SPEC.dt, max_gap=SPEC.max_gap)
        w = make_windows(tracks, SPEC)
        start = np.round(w.start_frame * unit, 6)  # seconds
        fc = cv_forecast(w.obs.astype(np.float64), SPEC.pred_len)
        forecasts[step] = {(int(a), s): f for a, s, f in zip(w.agent_id, start, fc, strict=True)}
    ref = forecasts[0.4]
    assert len(ref) == 3 * (51 - 19)  # 20 s at 0.4 s: 51 points, windows of 20
    for step in (0.5, 0.1):
        assert forecasts[step].keys() == ref.keys()
        worst = max(np.abs(forecasts[step][key] - ref[key]).max() for key in ref)
        assert worst < 0.05, (step, worst)


def test_etl_of_the_same_tracks_at_three_rates_gives_the_same_forecast(tmp_path: Path) -> None:
    """Files at 0.4 s (frame ids, step 10), 0.5 s (CSV timestamps) and 0.1 s (frame ids,
    step 1, TRAJ_FRAME_SECONDS=0.1) through `run_etl`: the same windows, the same forecast."""
    inputs = {
        0.4: ("walk.txt", rows_at(0.4, "eth"), Settings(), 0.04),
        0.5: ("walk.csv", rows_at(0.5, "timestamps"), Settings(), 0.4),
        0.1: ("walk.txt", rows_at(0.1, "frames"), Settings(frame_seconds=0.1), 0.4),
    }
    forecasts = {}
    for step, (name, rows, settings, unit) in inputs.items():
        path = tmp_path / str(step) / "test" / name
        path.parent.mkdir(parents=True)
        if name.endswith(".csv"):
            rows[["time", "agent_id", "x", "y"]].rename(columns={"time": "timestamp"}).to_csv(
                path, index=False
            )
        else:
            rows[["frame", "agent_id", "x", "y"]].to_csv(path, sep="\t", header=False, index=False)
        result = run_etl(path.parent.parent, tmp_path / f"w{step}", settings, engine="pandas",
                         progress=False)
        assert result.rows_rejected == 0
        w = load_windows(result.output_dir, WindowSpec.from_settings(settings), split="test")
        start = np.round(w.start_frame * unit, 6)
        fc = cv_forecast(w.obs.astype(np.float64), 12)
        forecasts[step] = {(int(a), s): f for a, s, f in zip(w.agent_id, start, fc, strict=True)}
    ref = forecasts[0.4]
    assert len(ref) == 3 * (51 - 19)
    for step in (0.5, 0.1):
        assert forecasts[step].keys() == ref.keys()
        assert max(np.abs(forecasts[step][key] - ref[key]).max() for key in ref) < 0.05
