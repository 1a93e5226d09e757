"""Windowing on tiny in-memory tracks: counts, gaps, neighbours and the no-leak property."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trajectory.data.features import motion_features
from trajectory.data.windows import Windows, WindowSpec, frame_step, make_windows

SPEC = WindowSpec(obs_len=3, pred_len=2, stride=1, neighbour_radius=2.0, max_neighbours=2)


def tracks(rows: list[tuple[int, int, float, float]], scene: str = "s") -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["frame", "agent_id", "x", "y"])
    df.insert(0, "scene", scene)
    return df


def line(agent: int, frames: range, y: float = 0.0, vx: float = 1.0) -> list:
    return [(f, agent, vx * f / 10, y) for f in frames]


def test_sliding_windows_count_and_content() -> None:
    w = make_windows(tracks(line(1, range(0, 80, 10))), SPEC)  # 8 frames, window 5
    assert len(w) == 4
    assert w.obs.shape == (4, 3, 2) and w.fut.shape == (4, 2, 2)
    np.testing.assert_allclose(w.obs[0, :, 0], [0, 1, 2])
    np.testing.assert_allclose(w.fut[0, :, 0], [3, 4])
    assert list(w.start_frame) == [0, 10, 20, 30]


def test_a_gap_breaks_windows() -> None:
    frames = [f for f in range(0, 100, 10) if f != 40]  # 0..30 and 50..90
    w = make_windows(tracks(line(1, frames)), SPEC)
    assert list(w.start_frame) == [50]


def test_stride_and_observation_only() -> None:
    rows = tracks(line(1, range(0, 100, 10)))
    assert len(make_windows(rows, WindowSpec(3, 2, stride=2, max_neighbours=0))) == 3
    obs_only = make_windows(rows, SPEC, with_future=False)
    assert obs_only.fut is None and len(obs_only) == 8


def test_neighbours_nearest_first_within_radius_at_last_observed_frame() -> None:
    rows = line(1, range(0, 50, 10)) + line(2, range(0, 50, 10), y=1.5)
    rows += line(3, range(0, 50, 10), y=0.5) + line(4, range(0, 50, 10), y=3.0)
    w = make_windows(tracks(rows), SPEC)
    first = w.take(np.flatnonzero(w.agent_id == 1))
    np.testing.assert_allclose(first.nbr[0, 0, :, 1], 0.5)  # agent 3, nearest
    np.testing.assert_allclose(first.nbr[0, 1, :, 1], 1.5)  # agent 2
    assert len(first.nbr[0]) == 2  # agent 4 is outside the radius (and M = 2)


def test_neighbour_missing_frames_are_nan_and_future_never_enters() -> None:
    # agent 2 appears only at the last observed frame and in the future
    rows = line(1, range(0, 50, 10)) + line(2, range(20, 50, 10), y=1.0)
    w = make_windows(tracks(rows), SPEC)
    win = w.take(np.flatnonzero(w.agent_id == 1))
    assert np.isnan(win.nbr[0, 0, :2]).all() and not np.isnan(win.nbr[0, 0, 2]).any()
    # changing the future of every agent changes nothing in the inputs
    moved = tracks(rows)
    moved.loc[moved.frame >= 30, ["x", "y"]] += 100.0
    w2 = make_windows(moved, SPEC)
    win2 = w2.take(np.flatnonzero(w2.agent_id == 1))
    np.testing.assert_array_equal(win.obs, win2.obs)
    np.testing.assert_array_equal(win.nbr, win2.nbr)
    f1 = motion_features(win.obs, win.nbr, 0.4)
    f2 = motion_features(win2.obs, win2.nbr, 0.4)
    pd.testing.assert_frame_equal(f1, f2)


def test_scenes_do_not_mix() -> None:
    a = tracks(line(1, range(0, 50, 10)), scene="a")
    b = tracks(line(2, range(0, 50, 10), y=0.1), scene="b")
    w = make_windows(pd.concat([a, b]), SPEC)
    assert sorted(w.scene) == ["a", "b"]
    assert np.isnan(w.nbr).all()


def test_frame_round_trip() -> None:
    w = make_windows(tracks(line(1, range(0, 80, 10)) + line(2, range(0, 80, 10), y=1)), SPEC)
    back = Windows.from_frame(w.to_frame(), SPEC)
    np.testing.assert_array_equal(back.obs, w.obs)
    np.testing.assert_array_equal(back.fut, w.fut)
    np.testing.assert_array_equal(back.nbr, w.nbr)


def test_frame_step_is_the_common_gap() -> None:
    assert frame_step(np.array([0, 10, 20, 40, 6, 16]), np.array([1, 1, 1, 1, 2, 2])) == 10


@pytest.mark.parametrize("speed", [0.0, 1.3])
def test_features_of_a_straight_walk(speed: float) -> None:
    obs = np.stack([np.arange(8) * speed * 0.4, np.zeros(8)], -1)[None].astype(np.float32)
    nbr = np.full((1, 2, 8, 2), np.nan, np.float32)
    f = motion_features(obs, nbr, 0.4).iloc[0]
    assert f.speed == pytest.approx(speed, abs=1e-5)
    assert f.heading_change == 0 and f.curvature == 0 and f.neighbour_count == 0
    assert np.isnan(f.nearest_neighbour_distance)
