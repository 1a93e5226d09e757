"""A/B statistics over routing keys.

Requests of one routing key are correlated (the same client, scene and model), so the unit of
analysis is the key: its windows are averaged first, and the tests compare per-key means.
Assignment is by key too, so the sample-ratio check counts distinct keys per variant. The log
holds each key as a keyed pseudonym (`routing_key_hash`): stable under one pseudonym key, so the
analysis never needs the raw client id; after a key rotation old and new rows of one client are
different keys (compare windows within one `pseudonym_key_id`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from trajectory.exceptions import DataError

KEY, VARIANT = "routing_key_hash", "variant"


@dataclass(frozen=True)
class Comparison:
    """B against A on one metric (lower is better); diff = mean_b - mean_a over keys."""

    metric: str
    a: str
    b: str
    n_a: int  # routing keys
    n_b: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float  # Welch confidence interval of diff at 1 - alpha
    ci_high: float
    alpha: float
    welch_t: float
    welch_p: float
    mannwhitney_u: float
    mannwhitney_p: float
    cohens_d: float
    rank_biserial: float  # P(b > a) - P(b < a) over key pairs; > 0 means b errs more

    @property
    def significant(self) -> bool:
        """Both tests agree at `alpha`."""
        return self.welch_p < self.alpha and self.mannwhitney_p < self.alpha

    @property
    def b_better(self) -> bool:
        return self.significant and self.diff < 0

    @property
    def b_worse(self) -> bool:
        return self.significant and self.diff > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"significant": self.significant}


@dataclass(frozen=True)
class SampleRatio:
    """Chi-square of observed key counts per variant against the configured weights."""

    counts: dict[str, int]
    expected: dict[str, float]
    chi2: float
    p_value: float
    alpha: float

    @property
    def mismatch(self) -> bool:
        return self.p_value < self.alpha

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"mismatch": self.mismatch}


def compare(a: np.ndarray, b: np.ndarray, metric: str, names: tuple[str, str],
            alpha: float = 0.05) -> Comparison:
    """Welch's t-test and Mann-Whitney U of per-key values b vs a, with effect sizes and CI: a
    fixed-horizon test, valid at one planned look. The job decides with `sequential`; this is
    the old rule, kept as the baseline `benchmarks/monitoring_sim.py` measures it against."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        raise DataError(f"need at least 2 keys per variant, got {len(a)} and {len(b)}")
    diff = float(b.mean() - a.mean())
    welch = stats.ttest_ind(b, a, equal_var=False)
    ci = welch.confidence_interval(confidence_level=1 - alpha)
    mw = stats.mannwhitneyu(b, a, alternative="two-sided")
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1))
                       / (len(a) + len(b) - 2))
    return Comparison(
        metric=metric,
        a=names[0],
        b=names[1],
        n_a=len(a),
        n_b=len(b),
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        diff=diff,
        ci_low=float(ci.low),
        ci_high=float(ci.high),
        alpha=alpha,
        welch_t=float(welch.statistic),
        welch_p=float(welch.pvalue),
        mannwhitney_u=float(mw.statistic),
        mannwhitney_p=float(mw.pvalue),
        cohens_d=diff / pooled if pooled > 0 else 0.0,
        rank_biserial=float(2 * mw.statistic / (len(a) * len(b)) - 1),
    )


def sample_ratio(counts: dict[str, int], weights: dict[str, float],
                 alpha: float = 0.001) -> SampleRatio:
    """Sample-ratio mismatch: observed keys per variant vs `weights` (which sum to 1)."""
    names = [n for n, w in weights.items() if w > 0]
    observed = np.array([counts.get(n, 0) for n in names], float)
    total = observed.sum()
    if total == 0 or len(names) < 2:
        raise DataError(f"sample-ratio check needs keys in 2+ weighted variants, got {counts}")
    shares = np.array([weights[n] for n in names]) / sum(weights[n] for n in names)
    expected = shares * total
    chi2, p = stats.chisquare(observed, expected)
    return SampleRatio(
        counts={n: int(c) for n, c in zip(names, observed)},
        expected={n: float(e) for n, e in zip(names, expected)},
        chi2=float(chi2),
        p_value=float(p),
        alpha=alpha,
    )


def key_counts(errors: pd.DataFrame, by: str = VARIANT) -> dict[str, int]:
    """Distinct routing keys per variant: the unit that assignment randomises."""
    return {str(k): int(v) for k, v in errors.groupby(by, observed=True)[KEY].nunique().items()}


def join_balance(logged: dict[str, int], joined: dict[str, int],
                 alpha: float = 0.001) -> SampleRatio:
    """Whether each variant's logged rows found their ground truth at the same rate: a
    chi-square of joined rows per variant against the pooled join rate. A variant whose
    predictions join less often (a logging or pseudonym bug) would bias its ADE."""
    names = sorted(n for n in logged if logged[n] > 0)
    if len(names) < 2:
        raise DataError(f"join balance needs logged rows of 2+ variants, got {logged}")
    table = np.array([[joined.get(n, 0), logged[n] - joined.get(n, 0)] for n in names], float)
    if table[:, 0].sum() == 0 or table[:, 1].sum() == 0:
        p = 1.0 if table[:, 1].sum() == 0 else 0.0  # all joined: balanced; none: nothing to act on
        chi2 = 0.0
    else:
        chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    rate = table[:, 0].sum() / table.sum()
    return SampleRatio(
        counts={n: int(c) for n, c in zip(names, table[:, 0])},
        expected={n: float(logged[n] * rate) for n in names},
        chi2=float(chi2),
        p_value=float(p),
        alpha=alpha,
    )
