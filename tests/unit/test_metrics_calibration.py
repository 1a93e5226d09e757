"""Calibration-aware metrics on tiny hand-made arrays whose answers are known, and the one
scoring function on hand-made windows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trajectory import metrics
from trajectory.data.windows import Windows
from trajectory.exceptions import DataError
from trajectory.models import build_model
from trajectory.training.evaluate import METRIC_KEYS, run_metrics, score_model


def _line(end: tuple[float, float], steps: int = 2) -> np.ndarray:
    """A straight track from the origin to `end` in `steps` equal steps: (T, 2)."""
    return np.linspace(0, 1, steps + 1)[1:, None] * np.array(end)


def test_closest_mode_is_by_final_error_first_on_ties() -> None:
    gt = np.zeros((1, 2, 2))
    a = np.array([[0.0, 0.0], [3.0, 0.0]])  # ade 1.5, fde 3
    b = np.array([[9.0, 0.0], [1.0, 0.0]])  # ade 5, fde 1: closest by FDE
    assert metrics.closest_mode(np.stack([a, b])[None], gt).tolist() == [1]
    assert metrics.closest_mode(np.stack([b, b])[None], gt).tolist() == [0]


def test_duplicate_tracks_merge_into_their_first_copy() -> None:
    a, b = _line((1, 0)), _line((0, 1))
    traj = np.stack([a, b, a, a])[None]  # (1, 4, T, 2)
    merged, first = metrics.merge_duplicate_modes(traj, np.array([[0.4, 0.3, 0.2, 0.1]]))
    assert merged[0].tolist() == pytest.approx([0.7, 0.3, 0.0, 0.0])
    assert first[0].tolist() == [True, True, False, False]


def test_brier_min_fde_adds_one_minus_p_squared_of_the_closest_mode() -> None:
    gt = _line((2, 0))[None]  # (1, T, 2)
    near, far = _line((2.5, 0)), _line((0, 5))  # final errors 0.5 and ~5.4
    traj = np.stack([far, near])[None]
    # p of the closest (near) is 0.25: 0.5 + 0.75^2
    got = metrics.brier_min_fde(traj, np.array([[0.75, 0.25]]), gt)
    assert got.tolist() == pytest.approx([0.5 + 0.75**2])
    # one track asked for 20 times is one mode with p = 1: brier-minFDE == FDE
    copies = np.repeat(near[None, None], 20, axis=1)
    assert metrics.brier_min_fde(copies, np.full((1, 20), 0.05), gt).tolist() == pytest.approx(
        [0.5]
    )


def test_miss_rate_counts_best_final_errors_beyond_two_metres() -> None:
    gt = np.zeros((3, 1, 2))
    samples = np.array([[[1.9, 0]], [[2.0, 0]], [[2.1, 0]]])[:, :, None]  # (3, 1, 1, 2)
    assert metrics.miss_rate(samples, gt) == pytest.approx(1 / 3)  # exactly 2 m is not a miss


def test_nll_of_a_perfect_single_mode_is_the_gaussian_normaliser() -> None:
    gt = _line((2, 0))[None]  # T = 2: sigma = c/2, then c
    c = 1.0
    want = (math.log(2 * math.pi * (c / 2) ** 2) + math.log(2 * math.pi * c**2)) / 2
    got = metrics.mixture_nll(gt[:, None], np.ones((1, 1)), gt, c)
    assert got.tolist() == pytest.approx([want])


def test_nll_of_an_offset_mode_adds_the_squared_error_term() -> None:
    gt = np.zeros((1, 1, 2))  # T = 1: sigma = c
    traj = np.array([[[[3.0, 4.0]]]])  # 5 m off
    got = metrics.mixture_nll(traj, np.ones((1, 1)), gt, 2.0)
    assert got.tolist() == pytest.approx([math.log(2 * math.pi * 4) + 25 / (2 * 4)])


def test_nll_mixes_the_modes_by_weight_and_ignores_zero_weights() -> None:
    gt = np.zeros((1, 1, 2))
    exact, far = np.zeros((1, 2)), np.full((1, 2), 50.0)
    traj = np.stack([exact, far])[None]  # (1, 2, 1, 2)
    half = metrics.mixture_nll(traj, np.array([[0.5, 0.5]]), gt, 1.0)
    assert half.tolist() == pytest.approx([math.log(2 * math.pi) + math.log(2)])
    only = metrics.mixture_nll(traj, np.array([[1.0, 0.0]]), gt, 1.0)
    assert only.tolist() == pytest.approx([math.log(2 * math.pi)])


def test_nll_stays_finite_far_from_every_mode() -> None:
    gt = np.zeros((1, 12, 2))
    traj = np.full((1, 2, 12, 2), 1000.0)
    got = metrics.mixture_nll(traj, np.array([[0.5, 0.5]]), gt, 0.01)
    assert np.isfinite(got).all() and got[0] > 1e9


def test_one_mode_and_its_copies_have_the_same_nll() -> None:
    gt = _line((2, 0), 12)[None]
    one = _line((2.4, 0.3), 12)[None, None]
    copies = np.repeat(one, 20, axis=1)
    single = metrics.mixture_nll(one, np.ones((1, 1)), gt, 0.5)
    assert metrics.mixture_nll(copies, np.full((1, 20), 0.05), gt, 0.5) == pytest.approx(single)


def test_fit_nll_scale_finds_the_maximum_likelihood_scale() -> None:
    # T = 1, 2-D residual d: NLL(c) = log(2 pi c^2) + d^2 / (2 c^2), minimal at c = d / sqrt 2
    gt = np.zeros((1, 1, 2))
    traj = np.array([[[[1.0, 1.0]]]])  # d = sqrt 2 -> c = 1
    assert metrics.fit_nll_scale(traj, np.ones((1, 1)), gt, np.array([0.5, 1.0, 2.0])) == 1.0
    default = metrics.fit_nll_scale(traj, np.ones((1, 1)), gt)
    assert default == pytest.approx(1.0, rel=0.07)  # the 60-point grid's resolution
    assert len(metrics.NLL_SCALES) == 60 and metrics.NLL_SCALES[0] == pytest.approx(0.01)


def test_reliability_bins_weights_against_how_often_the_mode_is_closest() -> None:
    gt = np.zeros((2, 1, 2))
    good, bad = np.zeros((1, 2)), np.ones((1, 2))
    traj = np.stack([np.stack([good, bad]), np.stack([bad, good])])  # (2, 2, 1, 2)
    weights = np.array([[0.7, 0.3], [0.7, 0.3]])  # the 0.7 mode is closest once in two
    table = metrics.reliability(traj, weights, gt)
    assert [(b["lo"], b["hi"]) for b in table] == list(
        zip(metrics.WEIGHT_BINS[:-1], metrics.WEIGHT_BINS[1:], strict=True)
    )
    by_lo = {b["lo"]: b for b in table}
    assert by_lo[0.4] == {"lo": 0.4, "hi": 1.0, "count": 2, "mean_weight": pytest.approx(0.7),
                          "closest_rate": 0.5}
    assert by_lo[0.2]["count"] == 2 and by_lo[0.2]["closest_rate"] == 0.5
    assert by_lo[0.0] == {"lo": 0.0, "hi": 0.05, "count": 0, "mean_weight": None,
                          "closest_rate": None}


def _walkers(n: int = 6) -> Windows:
    """Agents walking straight at constant speed: Constant Velocity is exact."""
    t = np.arange(20, dtype=np.float32)  # (T_obs + T_pred,)
    step = np.stack([np.linspace(0.2, 1.2, n), np.linspace(-0.5, 0.5, n)], 1)  # (N, 2)
    pos = (step[:, None] * t[None, :, None]).astype(np.float32)  # (N, 20, 2)
    return Windows(
        obs=pos[:, :8], nbr=np.full((n, 2, 8, 2), np.nan, np.float32),
        scene=np.full(n, "walk", object), agent_id=np.arange(n), start_frame=np.zeros(n, int),
        fut=pos[:, 8:],
    )


def test_score_model_gives_every_metric_and_its_nll_scale() -> None:
    windows = _walkers()
    scores = score_model(build_model("cv"), windows)
    m = scores["metrics"]
    assert tuple(m) == METRIC_KEYS and scores["windows"] == 6
    for key in ("ade", "fde", "min_ade_20", "min_fde_20", "miss_rate_20"):
        assert m[key] == pytest.approx(0, abs=1e-5), key
    assert m["brier_min_fde_20"] == pytest.approx(0, abs=1e-5)  # copies: one sure mode
    assert scores["nll_scale"] == {"c": pytest.approx(0.01), "fitted_on": "scored"}
    val = score_model(build_model("cv"), windows, val=windows)
    assert val["nll_scale"]["fitted_on"] == "val"
    flat = run_metrics(val)
    assert flat["min_ade"] == flat["min_ade_20"] and all(type(v) is float for v in flat.values())


def test_score_model_refuses_windows_without_a_future() -> None:
    windows = _walkers()
    windows.fut = None
    with pytest.raises(DataError, match="future"):
        score_model(build_model("cv"), windows)
