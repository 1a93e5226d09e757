"""Always-valid A/B statistics: type-I error under repeated looks, power, CUPED, pairing."""

from __future__ import annotations

import numpy as np
import pytest

from trajectory.exceptions import DataError
from trajectory.monitoring import sequential as seq


def _keys(n: int, mean: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
    """Per-key error sums, window counts and the key's own level (windows correlated)."""
    counts = rng.geometric(0.1, n).astype(float)
    level = rng.gamma(4, mean / 4, n)  # scene difficulty of the key
    sums = np.array([rng.normal(lv, 0.3 * lv, int(c)).sum() for lv, c in zip(level, counts)])
    return sums, counts, level


def _aa_looks(rng: np.random.Generator, looks: int = 24, per_look: int = 20) -> tuple[bool, bool]:
    """One A/A experiment looked at `looks` times: (always-valid fired, fixed-horizon fired)."""
    sa, na, _ = _keys(looks * per_look, 1.0, rng)
    sb, nb, _ = _keys(looks * per_look, 1.0, rng)
    valid = naive = False
    for h in range(1, looks + 1):
        m = h * per_look
        est = seq.unpaired_estimate(sa[:m], na[:m], sb[:m], nb[:m])
        radius = seq.cs_radius(est.variance, 0.05, 0.1 * est.mean_a)
        valid |= est.diff + radius < 0
        naive |= seq.fixed_horizon_p(est) < 0.05
    return valid, naive


def test_always_valid_interval_keeps_type_one_error_under_repeated_looks() -> None:
    rng = np.random.default_rng(7)
    runs = [_aa_looks(rng) for _ in range(200)]
    valid = np.mean([v for v, _ in runs])
    naive = np.mean([n for _, n in runs])
    assert valid <= 0.05  # the confidence sequence holds at every look at once
    assert naive > 0.10  # the fixed-horizon p-value at every look does not: the test can fail


def test_ratio_estimator_weights_keys_by_windows_and_matches_a_direct_formula() -> None:
    sums, counts = np.array([2.0, 9.0, 4.0]), np.array([2.0, 6.0, 4.0])
    mean, var = seq.ratio_mean_variance(sums, counts)
    assert mean == pytest.approx(15 / 12)
    resid = sums - mean * counts
    assert var == pytest.approx((resid ** 2).sum() / 144 * 3 / 2)
    with pytest.raises(DataError):
        seq.ratio_mean_variance(np.array([1.0]), np.array([1.0]))


def test_cuped_removes_between_key_variance_without_moving_the_difference() -> None:
    rng = np.random.default_rng(0)
    sums, counts, level = _keys(400, 1.0, rng)
    arm = rng.random(400) < 0.5
    plain = seq.unpaired_estimate(sums[arm], counts[arm], sums[~arm], counts[~arm])
    pre = level + rng.normal(0, 0.05, 400)  # the key's earlier error tracks its difficulty
    pre[:20] = np.nan  # keys never seen before stay as they are
    adj = seq.cuped_sums(sums, counts, pre)
    cuped = seq.unpaired_estimate(adj[arm], counts[arm], adj[~arm], counts[~arm], "cuped")
    assert cuped.variance < plain.variance / 3
    assert abs(cuped.diff) < 3 * np.sqrt(cuped.variance)
    assert np.allclose(seq.cuped_sums(sums, counts, np.full(400, np.nan)), sums)


def test_paired_identical_models_never_decide() -> None:
    counts = np.full(50, 10.0)
    est = seq.paired_estimate(np.zeros(50), counts, np.full(50, 5.0))
    test = seq.sequential_test(est, 0.05, 0.02, 0.10, 0.8, 10)
    assert est.design == "paired" and est.diff == 0 and not test.b_better and not test.b_worse


def test_no_decision_before_the_planned_keys_and_a_real_gain_wins_after() -> None:
    rng = np.random.default_rng(1)
    sa, na, _ = _keys(3000, 1.0, rng)
    sb, nb, _ = _keys(3000, 0.8, rng)  # 20% better
    early = seq.sequential_test(seq.unpaired_estimate(sa[:15], na[:15], sb[:15], nb[:15]),
                                0.05, 0.02, 0.10, 0.8, 100)
    assert early.planned_keys >= 100 and not early.b_better  # 30 keys < plan
    late = seq.sequential_test(seq.unpaired_estimate(sa, na, sb, nb), 0.05, 0.02, 0.10, 0.8, 100)
    assert late.estimate.keys >= late.planned_keys and late.b_better and not late.b_worse
    assert late.high < -late.margin < 0


def test_planned_keys_shrink_with_the_effect_to_detect() -> None:
    est = seq.Estimate("unpaired", 0.0, 0.01, 1.0, 100, 1000)
    small = seq.planned_keys(est, 0.05, 0.05, 0.05, 0.0, 0.8, 2)
    large = seq.planned_keys(est, 0.05, 0.2, 0.20, 0.0, 0.8, 2)
    assert small > 4 * large
    with pytest.raises(DataError):
        seq.planned_keys(est, 0.05, 0.1, 0.02, 0.02, 0.8, 2)


def test_worse_needs_the_lower_bound_above_zero() -> None:
    est = seq.Estimate("unpaired", 0.3, 0.0001, 1.0, 10_000, 100_000)
    assert seq.sequential_test(est, 0.05, 0.02, 0.10, 0.8, 100).b_worse
