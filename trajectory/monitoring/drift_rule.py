"""Our drift decision: per-feature thresholds calibrated on the training data's own variation.

A fixed distance threshold means different things at 30 and at 3,000 rows, and served traffic
arrives in time order (runs of correlated windows of a few scenes), so it differs from the
pooled training set even when nothing changed. The threshold of each feature is therefore the
`quantile` (0.99) of its score over time-ordered A/A samples of the training data itself, at
the current sample size:

- the training features, in time order within each scene, are split: the first `ref_share` of
  every scene is the calibration reference, the rest the pool of "later traffic";
- an A/A sample is `n` windows drawn as runs of `run_windows` consecutive windows from random
  places in that pool (as a routing key's requests are), scored against the reference.

Score = Wasserstein-1 distance / reference standard deviation (Evidently's normalised
Wasserstein, computed here with scipy so calibration and decision use one definition). A
window drifts when `speed` (the feature the models lean on most) is over its threshold, or
when at least `share` of the features are; retraining needs that in `persistence` consecutive
evaluations. Evidently still writes the report; it does not decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from trajectory.exceptions import DataError


@dataclass(frozen=True)
class DriftVerdict:
    """Scores, calibrated thresholds and the rule's outcome for one evaluation window."""

    n_current: int
    scores: dict[str, float]
    thresholds: dict[str, float]
    drifted: dict[str, bool]
    flagged: bool  # this window alone meets the rule
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score(reference: np.ndarray, current: np.ndarray) -> float:
    """Normalised Wasserstein-1: W1(reference, current) / std(reference)."""
    ref, cur = reference[~np.isnan(reference)], current[~np.isnan(current)]
    if len(ref) < 2 or len(cur) == 0:
        return float("nan")
    std = float(ref.std())
    return float(stats.wasserstein_distance(ref, cur) / (std if std > 0 else 1.0))


def scores(reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str]) -> dict[str, float]:
    return {c: score(reference[c].to_numpy(float), current[c].to_numpy(float)) for c in columns}


def time_split(features: pd.DataFrame, groups: np.ndarray, ref_share: float
               ) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Rows already in time order within each group (scene) -> (earlier, later, later's group)."""
    earlier, later = [], []
    for g in pd.unique(groups):
        idx = np.flatnonzero(groups == g)
        cut = int(len(idx) * ref_share)
        earlier.append(idx[:cut])
        later.append(idx[cut:])
    e, late = np.concatenate(earlier), np.concatenate(later)
    return features.iloc[e], features.iloc[late], groups[late]


def run_sample(groups: np.ndarray, n: int, run_windows: int, rng: np.random.Generator,
               mix: float | None = None) -> np.ndarray:
    """Row indices of `n` windows drawn as runs of `run_windows` consecutive rows. With `mix`,
    each sample's share of every group (site) is drawn from Dirichlet(mix * its share), as the
    hour-to-hour site mix of traffic varies; without it runs start anywhere uniformly."""
    runs = max(1, -(-n // run_windows))
    n_rows = len(groups)
    if mix is None:
        starts = rng.integers(0, max(1, n_rows - run_windows), runs)
    else:
        names, first, sizes = np.unique(groups, return_index=True, return_counts=True)
        probs = rng.dirichlet(mix * sizes / sizes.sum())
        pick = rng.choice(len(names), runs, p=probs)
        starts = first[pick] + (rng.random(runs) * sizes[pick]).astype(np.int64)
    idx = (starts[:, None] + np.arange(run_windows)[None]).ravel()[:n]
    return np.minimum(idx, n_rows - 1)


def calibrate(features: pd.DataFrame, groups: np.ndarray, n: int, columns: Sequence[str], *,
              quantile: float = 0.99, blocks: int = 200, run_windows: int = 10,
              ref_share: float = 0.7, mix: float | None = 10.0, seed: int = 0
              ) -> dict[str, float]:
    """Per-feature thresholds for a sample of `n` served windows (see the module docstring).
    `features` are training windows in time order within each `groups` value."""
    if len(features) < 4 * run_windows:
        raise DataError(f"too few training windows ({len(features)}) to calibrate drift")
    reference, pool, pool_groups = time_split(features, groups, ref_share)
    rng = np.random.default_rng(seed)
    ref = {c: np.sort(reference[c].to_numpy(float)) for c in columns}
    values = {c: pool[c].to_numpy(float) for c in columns}
    table = np.empty((blocks, len(columns)))
    for b in range(blocks):
        idx = run_sample(pool_groups, n, run_windows, rng, mix)
        table[b] = [score(ref[c], values[c][idx]) for c in columns]
    return {c: float(np.nanquantile(table[:, j], quantile)) for j, c in enumerate(columns)}


def judge(current_scores: dict[str, float], thresholds: dict[str, float], n_current: int,
          key_features: Sequence[str], share: float) -> DriftVerdict:
    """The rule on one window: a key feature over its threshold, or `share` of all of them."""
    drifted = {c: bool(s > thresholds[c]) for c, s in current_scores.items() if not np.isnan(s)}
    if not drifted:
        raise DataError("no feature could be scored for drift")
    over = sorted(c for c, v in drifted.items() if v)
    keys = [c for c in key_features if drifted.get(c)]
    flagged = bool(keys) or len(over) / len(drifted) >= share
    detail = ", ".join(f"{c} {current_scores[c]:.2f}>{thresholds[c]:.2f}" for c in over)
    reason = (f"drift at n={n_current}: {detail or 'none'}"
              f" ({'key feature' if keys else f'{len(over)}/{len(drifted)} features'})")
    return DriftVerdict(n_current, current_scores, thresholds, drifted, flagged, reason)


def persistent(flags: Sequence[bool], k: int) -> bool:
    """True when the last `k` flags (oldest first, the current one last) are all set."""
    return len(flags) >= k and all(flags[-k:])
