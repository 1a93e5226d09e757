"""Always-valid A/B inference on per-key error sums: the test behind promotion and rollback.

The evaluation job looks at an experiment every hour, so a fixed-horizon p-value is wrong from
the second look on. The test here is a mixture sequential probability ratio test (Johari et al.
2017, "Peeking at A/B tests"), written as its confidence sequence: with the estimate's variance
V and a normal mixture of standard deviation `tau` over the effect, the interval

    diff +- sqrt(V (V + tau^2) / tau^2 * (2 log(1/alpha) + log((V + tau^2) / V)))

covers the true difference at every look at once with probability >= 1 - alpha (Ville's
inequality; with V estimated from the data it holds asymptotically, which the Monte Carlo test
and `benchmarks/monitoring_sim.py` check on real traffic shapes).

The unit is the routing key (assignment is by key, and a key's windows are correlated): a
variant's mean is the ratio estimator sum(errors) / sum(windows) over its keys, so keys count in
proportion to their windows, and its variance is the delta-method (cluster-robust) one,
sum_k (y_k - m n_k)^2 / N^2 * K / (K - 1). Three designs share it:

- paired: shadow scoring logs both variants' predictions for one request and agent, and the
  error does not depend on which prediction was served, so the per-window difference removes
  the scene's difficulty (`paired_estimate`);
- CUPED: without pairs, each key's error before the experiment (its own scenes, the champion
  model) is a covariate that removes most between-key variance (`cuped_sums`);
- unpaired: plain ratio estimators of the two arms (`unpaired_estimate`).

All functions are pure: arrays in, numbers out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from trajectory.exceptions import DataError


@dataclass(frozen=True)
class Estimate:
    """diff = mean_b - mean_a (lower error is better) with its variance, over routing keys."""

    design: str  # paired | cuped | unpaired
    diff: float
    variance: float
    mean_a: float
    keys: int  # routing keys that contribute (both arms)
    windows: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SequentialTest:
    """One look at an experiment: the always-valid interval and what it allows."""

    estimate: Estimate
    alpha: float
    tau: float
    low: float  # always-valid bounds of diff at 1 - alpha
    high: float
    margin: float  # minimum worthwhile improvement (absolute, metric units)
    planned_keys: int  # no decision before this many keys
    b_better: bool  # high < -margin, at or after planned_keys
    b_worse: bool  # low > 0, at or after planned_keys

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ratio_mean_variance(sums: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
    """Ratio estimator sum(sums)/sum(counts) over clusters and its delta-method variance."""
    sums, counts = np.asarray(sums, float), np.asarray(counts, float)
    k, total = len(sums), counts.sum()
    if k < 2 or total <= 0:
        raise DataError(f"a ratio estimate needs 2+ keys with windows, got {k}")
    mean = sums.sum() / total
    resid = sums - mean * counts
    return float(mean), float((resid @ resid) / total**2 * k / (k - 1))


def unpaired_estimate(sums_a: np.ndarray, counts_a: np.ndarray, sums_b: np.ndarray,
                      counts_b: np.ndarray, design: str = "unpaired") -> Estimate:
    """b - a from per-key error sums and window counts of two disjoint sets of keys."""
    mean_a, var_a = ratio_mean_variance(sums_a, counts_a)
    mean_b, var_b = ratio_mean_variance(sums_b, counts_b)
    return Estimate(design, mean_b - mean_a, var_a + var_b, mean_a,
                    len(sums_a) + len(sums_b), int(np.sum(counts_a) + np.sum(counts_b)))


def paired_estimate(diff_sums: np.ndarray, counts: np.ndarray, sums_a: np.ndarray) -> Estimate:
    """b - a from per-key sums of per-window differences (both variants scored each window)."""
    diff, variance = ratio_mean_variance(diff_sums, counts)
    mean_a = float(np.sum(sums_a) / np.sum(counts))
    return Estimate("paired", diff, variance, mean_a, len(counts), int(np.sum(counts)))


def cuped_sums(sums: np.ndarray, counts: np.ndarray, pre_means: np.ndarray) -> np.ndarray:
    """Per-key error sums adjusted by each key's pre-experiment mean error (NaN: none known).

    y'_k = y_k - theta n_k (x_k - x_bar), theta fitted on the ratio estimator's residuals of
    all keys of both arms together (assignment is random, so the adjustment has mean zero in
    each arm); keys without a pre-period get x_k = x_bar and are left as they are."""
    sums, counts = np.asarray(sums, float), np.asarray(counts, float)
    pre = np.asarray(pre_means, float)
    known = ~np.isnan(pre)
    if known.sum() < 2:
        return sums
    x_bar = float(np.sum(pre[known] * counts[known]) / np.sum(counts[known]))
    c = np.where(known, counts * (np.nan_to_num(pre) - x_bar), 0.0)
    resid = sums - sums.sum() / counts.sum() * counts
    theta = float(resid @ c / (c @ c)) if c @ c > 0 else 0.0
    return sums - theta * c


def cs_radius(variance: float, alpha: float, tau: float) -> float:
    """Half-width of the normal-mixture confidence sequence (see the module docstring)."""
    if variance <= 0:
        return 0.0
    t2 = tau * tau
    return math.sqrt(variance * (variance + t2) / t2
                     * (2 * math.log(1 / alpha) + math.log((variance + t2) / variance)))


def planned_keys(estimate: Estimate, alpha: float, tau: float, effect: float, margin: float,
                 power: float, floor: int) -> int:
    """Keys at which a true improvement of `effect` clears `margin` with probability `power`,
    given this look's per-key variance (variance * keys, assumed to shrink as 1/keys)."""
    if effect <= margin:
        raise DataError(f"the effect to detect ({effect:g}) must exceed the margin ({margin:g})")
    unit = estimate.variance * estimate.keys
    if unit <= 0:
        return floor
    z = float(stats.norm.ppf(power))

    def enough(n: float) -> bool:
        v = unit / n
        return cs_radius(v, alpha, tau) + z * math.sqrt(v) <= effect - margin

    lo, hi = 2.0, 4.0
    while not enough(hi):
        lo, hi = hi, hi * 2
        if hi > 1e9:
            return 10**9
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return max(floor, math.ceil(hi))


def sequential_test(estimate: Estimate, alpha: float, margin_rel: float, effect_rel: float,
                    power: float, min_keys: int) -> SequentialTest:
    """The pre-registered one-sided decision at this look.

    b is better only when the always-valid upper bound of b - a is below -margin (the minimum
    worthwhile improvement, `margin_rel` of a's mean) and the experiment has its planned keys;
    worse when the lower bound is above 0 with the planned keys. The mixture width `tau` is
    the effect worth detecting (`effect_rel` of a's mean), where the test is most powerful."""
    scale = abs(estimate.mean_a)
    tau = max(effect_rel * scale, 1e-9)
    margin = margin_rel * scale
    radius = cs_radius(estimate.variance, alpha, tau)
    planned = planned_keys(estimate, alpha, tau, effect_rel * scale, margin, power, min_keys)
    ready = estimate.keys >= planned
    low, high = estimate.diff - radius, estimate.diff + radius
    return SequentialTest(estimate, alpha, tau, low, high, margin, planned,
                          b_better=ready and high < -margin, b_worse=ready and low > 0)


def fixed_horizon_p(estimate: Estimate) -> float:
    """One-sided z-test p-value of b < a, valid at one pre-planned look only (for comparison)."""
    if estimate.variance <= 0:
        return 1.0
    return float(stats.norm.cdf(estimate.diff / math.sqrt(estimate.variance)))
