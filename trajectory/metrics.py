"""Forecast metrics: pure functions over arrays of positions (metres) and mode weights.

Shapes: `gt` (N, T, 2) true futures; `pred` (N, T, 2) one track per window; `traj` / `samples`
(N, K, T, 2) K tracks per window, most likely first; `weights` (N, K), each row summing to 1.

Identical tracks in one window (a single-track model asked for K outputs returns K copies) are
one mode whose probability is the sum of their weights: `merge_duplicate_modes`. The brier
score and the reliability table use the merged weights; the NLL needs no merging, since a
mixture of copies is the same distribution.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

MISS_THRESHOLD = 2.0  # metres: a window is missed when its best final point is farther
WEIGHT_BINS = (0.0, 0.05, 0.1, 0.2, 0.4, 1.0)  # reliability bins of a mode's weight, [lo, hi)
NLL_SCALES = np.geomspace(0.01, 10.0, 60)  # metres: the grid `fit_nll_scale` searches


def ade(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Average displacement error per window: pred, gt (N, T, 2) -> (N,)."""
    return np.linalg.norm(pred - gt, axis=-1).mean(axis=-1)


def fde(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Final displacement error per window: pred, gt (N, T, 2) -> (N,)."""
    return np.linalg.norm(pred[:, -1] - gt[:, -1], axis=-1)


def best_of_k(samples: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min-over-K ADE and FDE per window, each minimised on its own (the Social-GAN protocol).

    samples (N, K, T, 2), gt (N, T, 2) -> ((N,), (N,)).
    """
    err = np.linalg.norm(samples - gt[:, None], axis=-1)  # (N, K, T)
    return err.mean(axis=-1).min(axis=1), err[..., -1].min(axis=1)


def miss_rate(samples: np.ndarray, gt: np.ndarray, threshold: float = MISS_THRESHOLD) -> float:
    """Share of windows whose best final point over K is farther than `threshold` metres."""
    return float((best_of_k(samples, gt)[1] > threshold).mean())


def closest_mode(traj: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N,) index of the mode with the lowest final error (the first one on a tie)."""
    return np.linalg.norm(traj[:, :, -1] - gt[:, None, -1], axis=-1).argmin(axis=1)


def merge_duplicate_modes(traj: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(merged weights (N, K), first (N, K) bool): at the first copy of each distinct track the
    summed weight of all its copies, 0 at the other copies; `first` marks the first copies."""
    n, k = weights.shape
    flat = traj.reshape(n, k, -1)  # (N, K, T*2)
    owner = np.tile(np.arange(k), (n, 1))  # (N, K): index of each mode's first copy
    for m in range(1, k):
        same = (flat[:, :m] == flat[:, m : m + 1]).all(axis=-1)  # (N, m)
        has = same.any(axis=1)  # (N,)
        owner[has, m] = same[has].argmax(axis=1)
    merged = np.zeros_like(weights, dtype=np.float64)  # (N, K)
    np.add.at(merged, (np.repeat(np.arange(n), k), owner.ravel()), weights.ravel())
    return merged, owner == np.arange(k)


def brier_min_fde(traj: np.ndarray, weights: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per window minFDE + (1 - p)^2, p the probability of the mode with the lowest final
    error (Argoverse 2's brier-minFDE); copies of one track count as one mode. -> (N,)."""
    best = closest_mode(traj, gt)  # (N,)
    rows = np.arange(len(gt))
    merged, _ = merge_duplicate_modes(traj, weights)
    p = merged[rows, best]  # the first copy is the closest: argmin returns it
    return fde(traj[rows, best], gt) + (1.0 - p) ** 2


def _scaled_sq_error(traj: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N, K) sum over t of |y_t - mu_t|^2 / (t / T)^2, the error the NLL's scale divides."""
    t = np.arange(1, gt.shape[1] + 1) / gt.shape[1]  # (T,)
    sq = ((traj.astype(np.float64) - gt[:, None]) ** 2).sum(axis=-1)  # (N, K, T)
    return (sq / t**2).sum(axis=-1)


def _nll_given(scaled: np.ndarray, log_w: np.ndarray, scale: float, steps: int) -> np.ndarray:
    """(N,) per-point NLL from `_scaled_sq_error` and log weights, for sigma_t = scale*t/T."""
    from scipy.special import logsumexp  # scipy is in the train extra, not the service's

    t = np.arange(1, steps + 1) / steps  # (T,)
    log_norm = np.log(2 * np.pi * (scale * t) ** 2).sum()  # sum_t log(2 pi sigma_t^2)
    log_comp = log_w - log_norm - scaled / (2 * scale**2)  # (N, K)
    return -logsumexp(log_comp, axis=1) / steps


def _log_weights(weights: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(weights.astype(np.float64))  # a zero weight is -inf: its mode drops out


def mixture_nll(traj: np.ndarray, weights: np.ndarray, gt: np.ndarray, scale: float) -> np.ndarray:
    """Negative log-likelihood of the true future under the predicted mixture, in nats per
    predicted point: -log sum_m w_m prod_t N(y_t; mu_mt, sigma_t^2 I) / T, with an isotropic 2-D
    Gaussian per mode and point whose std grows linearly, sigma_t = scale * t / T (t = 1..T).
    A single-track model is a mixture of one. -> (N,)."""
    return _nll_given(_scaled_sq_error(traj, gt), _log_weights(weights), scale, gt.shape[1])


def fit_nll_scale(
    traj: np.ndarray, weights: np.ndarray, gt: np.ndarray, scales: np.ndarray = NLL_SCALES
) -> float:
    """The scale (metres at the last step) of `scales` with the lowest mean `mixture_nll`: the
    maximum-likelihood choice on a log-spaced grid."""
    scaled, log_w = _scaled_sq_error(traj, gt), _log_weights(weights)
    mean = [_nll_given(scaled, log_w, float(s), gt.shape[1]).mean() for s in scales]
    return float(scales[int(np.argmin(mean))])


def reliability(
    traj: np.ndarray, weights: np.ndarray, gt: np.ndarray, bins: tuple[float, ...] = WEIGHT_BINS
) -> list[dict[str, float | int | None]]:
    """How often a mode with a predicted weight in each bin [lo, hi) (the last bin includes 1)
    is the closest one by final error. Per bin: mode count, mean weight, closest rate (None for
    an empty bin). Copies of one track count once, with their summed weight."""
    merged, first = merge_duplicate_modes(traj, weights)
    closest = np.zeros(first.shape, bool)  # (N, K)
    closest[np.arange(len(gt)), closest_mode(traj, gt)] = True
    w, hit = merged[first], closest[first]  # (P,) over distinct modes
    which = np.digitize(w, bins[1:-1])  # 0..len(bins)-2
    out: list[dict[str, float | int | None]] = []
    for b, (lo, hi) in enumerate(pairwise(bins)):
        sel = which == b
        count = int(sel.sum())
        out.append({
            "lo": lo,
            "hi": hi,
            "count": count,
            "mean_weight": float(w[sel].mean()) if count else None,
            "closest_rate": float(hit[sel].mean()) if count else None,
        })
    return out


def summarize(samples: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """ADE/FDE of the first (most likely) sample and, when K > 1, best-of-K."""
    out = {"ade": float(ade(samples[:, 0], gt).mean()), "fde": float(fde(samples[:, 0], gt).mean())}
    if samples.shape[1] > 1:
        a, f = best_of_k(samples, gt)
        out |= {"min_ade": float(a.mean()), "min_fde": float(f.mean())}
    return out
