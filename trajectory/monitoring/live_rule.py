"""Live accuracy judged like with like: model ADE relative to constant velocity on the same
windows, with a cluster-bootstrap interval.

Raw live ADE moves with the scenes being served (a crowded or fast scene is harder for every
model), so comparing it with the validation ADE fires whenever traffic is harder. Constant
velocity (CV) needs no training and sees exactly the same windows, so the ratio
sum(model ADE) / sum(CV ADE) cancels most of the scene's difficulty. The reference is the same
ratio on the validation windows. An hour is degraded when the lower bound of the
cluster-bootstrap interval (routing keys resampled, a key's windows are correlated) of
ratio / reference is above 1 + `degradation`; retraining needs `persistence` degraded hours in a
row. Pure functions of arrays.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from trajectory.exceptions import DataError


@dataclass(frozen=True)
class LiveRatio:
    """One version's live ADE / CV ADE against its reference ratio, with the bootstrap CI."""

    version: str
    windows: int
    keys: int
    ade: float
    cv_ade: float
    ratio: float  # ade / cv_ade
    reference: float
    relative: float  # ratio / reference
    low: float  # bootstrap interval of `relative`
    high: float
    degraded: bool  # low > 1 + degradation

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def key_sums(model_ade: np.ndarray, cv_ade: np.ndarray, keys: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-key sums of model ADE, CV ADE and window counts."""
    codes, _ = pd.factorize(np.asarray(keys))
    k = codes.max() + 1 if len(codes) else 0
    return (np.bincount(codes, np.asarray(model_ade, float), k),
            np.bincount(codes, np.asarray(cv_ade, float), k),
            np.bincount(codes, minlength=k).astype(float))


def bootstrap_ratio(model: np.ndarray, cv: np.ndarray, alpha: float, resamples: int,
                    rng: np.random.Generator) -> tuple[float, float]:
    """Percentile interval of sum(model)/sum(cv) with keys (rows here) resampled."""
    k = len(model)
    weights = rng.multinomial(k, np.full(k, 1 / k), size=resamples)  # (R, K) draws per key
    ratios = (weights @ model) / np.maximum(weights @ cv, 1e-12)
    lo, hi = np.quantile(ratios, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def live_ratio(version: str, model_ade: np.ndarray, cv_ade: np.ndarray, keys: np.ndarray,
               reference: float, degradation: float, *, alpha: float = 0.05,
               resamples: int = 500, seed: int = 0) -> LiveRatio:
    """The hour's verdict for one served version (reference: its validation ratio)."""
    if reference <= 0:
        raise DataError(f"reference ratio must be positive, got {reference}")
    model, cv, counts = key_sums(model_ade, cv_ade, keys)
    if len(model) < 2 or cv.sum() <= 0:
        raise DataError(f"live ratio needs 2+ keys with a moving CV baseline, got {len(model)}")
    ratio = float(model.sum() / cv.sum())
    lo, hi = bootstrap_ratio(model, cv, alpha, resamples, np.random.default_rng(seed))
    return LiveRatio(version, int(counts.sum()), len(model), float(model.sum() / counts.sum()),
                     float(cv.sum() / counts.sum()), ratio, reference, ratio / reference,
                     lo / reference, hi / reference, lo / reference > 1 + degradation)


def cv_ade(obs: np.ndarray, fut: np.ndarray) -> np.ndarray:
    """ADE of constant velocity (last observed step repeated): obs (N, T_obs, 2), fut (N, T, 2)."""
    step = obs[:, -1] - obs[:, -2]  # (N, 2)
    t = np.arange(1, fut.shape[1] + 1)[None, :, None]  # (1, T, 1)
    pred = obs[:, -1, None] + t * step[:, None]  # (N, T, 2)
    return np.linalg.norm(pred - fut, axis=-1).mean(axis=1)
