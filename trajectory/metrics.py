"""Displacement metrics: pure functions over arrays of positions (metres)."""

from __future__ import annotations

import numpy as np


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


def miss_rate(samples: np.ndarray, gt: np.ndarray, threshold: float = 2.0) -> float:
    """Share of windows whose best final point over K is farther than `threshold` metres."""
    return float((best_of_k(samples, gt)[1] > threshold).mean())


def summarize(samples: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """ADE/FDE of the first (most likely) sample and, when K > 1, best-of-K."""
    out = {"ade": float(ade(samples[:, 0], gt).mean()), "fde": float(fde(samples[:, 0], gt).mean())}
    if samples.shape[1] > 1:
        a, f = best_of_k(samples, gt)
        out |= {"min_ade": float(a.mean()), "min_fde": float(f.mean())}
    return out
