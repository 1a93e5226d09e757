"""Slicing of per-window errors (trajectory.fairness): bands, counts, flags, missing slices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trajectory import fairness


def test_observed_motion_speed_and_heading_change() -> None:
    straight = np.stack([np.arange(8) * 0.5, np.zeros(8)], axis=-1)  # 0.5 m per 0.4 s step
    corner = np.concatenate([straight[:4], straight[3] + np.stack(
        [np.zeros(4), np.arange(1, 5) * 0.5], axis=-1)])  # a 90-degree turn
    still = np.zeros((8, 2))
    motion = fairness.observed_motion(np.stack([straight, corner, still]), dt=0.4)
    assert motion["speed"].tolist() == pytest.approx([1.25, 1.25, 0.0])
    assert motion["heading_change"].tolist() == pytest.approx([0.0, 90.0, 0.0])
    with pytest.raises(ValueError):
        fairness.observed_motion(np.zeros((3, 1, 2)), dt=0.4)


def test_neighbours_within_counts_only_the_same_group_inside_the_radius() -> None:
    last = np.array([[0, 0], [1, 0], [10, 0], [0.5, 0]])
    groups = np.array(["r1", "r1", "r1", "r2"])
    assert fairness.neighbours_within(last, groups, radius=5.0).tolist() == [1, 1, 0, 0]


def test_bands_follow_the_fixed_edges() -> None:
    frame = fairness.add_bands(pd.DataFrame({
        "speed": [0.0, 0.29, 0.3, 1.6, 2.4],
        "heading_change": [0, 14.9, 15, 45, 180],
        "neighbours": [0, 1, 3, 6, 20],
        "served_at": pd.to_datetime(["2026-12-01T05:59Z", "2026-12-01T06:00Z",
                                     "2026-12-01T12:30Z", "2026-12-01T18:00Z",
                                     "2026-12-01T23:59Z"]),
    }))
    assert frame[fairness.SPEED].tolist() == ["standing <0.3", "standing <0.3", "slow 0.3-1.0",
                                              "fast >=1.6", "fast >=1.6"]
    assert frame[fairness.CURVE].tolist() == ["straight <15°", "straight <15°", "curving 15-45°",
                                              "turning >=45°", "turning >=45°"]
    assert frame[fairness.CROWD].tolist() == ["alone", "1-2", "3-5", "6+", "6+"]
    assert frame[fairness.TIME].tolist() == ["night 00-06", "morning 06-12", "afternoon 12-18",
                                             "evening 18-24", "evening 18-24"]


def test_slices_count_every_window_and_flag_only_judged_groups() -> None:
    frame = pd.DataFrame({
        "variant": ["a"] * 20 + ["b"] * 20 + ["c"] * 2,
        "ade": [1.0] * 20 + [1.5] * 20 + [9.0] * 2,
        "fde": [2.0] * 42,
    })
    table = fairness.slice_errors(frame, flag_share=0.2, min_windows=10)
    overall = (20 * 1.0 + 20 * 1.5 + 2 * 9.0) / 42
    assert table.iloc[0][["slice", "group", "windows"]].tolist() == ["overall", "all", 42]
    assert table.iloc[0]["ade"] == pytest.approx(overall)
    rows = table.set_index("group")
    assert rows.loc[["a", "b", "c"], "windows"].tolist() == [20, 20, 2]
    assert rows.loc["b", "ratio"] == pytest.approx(1.5 / overall)
    assert bool(rows.loc["b", "flagged"]) is (1.5 / overall > 1.2)
    assert not rows.loc["c", "flagged"] and not rows.loc["c", "judged"]  # 2 windows: not judged
    assert fairness.flagged(table)["group"].tolist() == (["b"] if 1.5 / overall > 1.2 else [])
    assert set(table["slice"]) == {"overall", "variant"}  # slices absent from the frame: left out


def test_slices_of_nothing_and_without_errors() -> None:
    assert fairness.slice_errors(pd.DataFrame({"ade": []})).empty
    with pytest.raises(ValueError, match="ade"):
        fairness.slice_errors(pd.DataFrame({"fde": [1.0]}))
