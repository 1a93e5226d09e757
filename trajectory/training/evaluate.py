"""Score a model on windows.

`score_model` is the one full scoring: `trajectory evaluate`, `trajectory bench eth-ucy`, the
main job's val/test scores (and through them the model card) all call it. `evaluate` is the
light check the training loop runs after every epoch (K=1 and best-of-K ADE/FDE only).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trajectory import metrics
from trajectory.data.windows import Windows
from trajectory.exceptions import DataError
from trajectory.models.base import TrajectoryModel, predict

BEST_OF = 20
METRIC_KEYS = (
    "ade", "fde", "min_ade_20", "min_fde_20", "brier_min_fde_20", "nll", "miss_rate_20"
)  # fmt: skip


def evaluate(
    model: TrajectoryModel,
    windows: Windows,
    k: int = 20,
    device: str | torch.device = "cpu",
    batch_size: int = 4096,
) -> dict[str, float]:
    """ade/fde of the first (most likely) sample; min_ade/min_fde over k samples when k > 1.

    The model is moved to `device` and left there; windows stay on the host between batches.
    """
    gt = _check(windows)
    model.to(device)
    traj, _ = predict(model, windows.obs, windows.nbr, k=k, batch_size=batch_size, device=device)
    out = metrics.summarize(traj, gt)
    if k == 1:
        out |= {"min_ade": out["ade"], "min_fde": out["fde"]}
    return out | {"k": float(k), "n": float(len(windows))}


def score_model(
    model: TrajectoryModel,
    windows: Windows,
    *,
    val: Windows | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 4096,
) -> dict[str, Any]:
    """Every metric of `model` on `windows` (metres; NLL in nats per predicted point).

    -> {"windows": N, "metrics": {METRIC_KEYS}, "nll_scale": {"c", "fitted_on"},
    "reliability": [...]}. ade/fde score the k=1 output (what the service returns for k=1);
    the rest score the 20 outputs as a weighted mixture (see `trajectory.metrics`). The NLL's
    one scale c is fitted by maximum likelihood on `val` when given ("val"), else on `windows`
    themselves ("scored"). The model is moved to `device` and left there.
    """
    gt = _check(windows)
    model.to(device)

    def run(w: Windows, k: int) -> tuple[np.ndarray, np.ndarray]:
        return predict(model, w.obs, w.nbr, k=k, batch_size=batch_size, device=device)

    one, _ = run(windows, 1)  # (N, 1, T, 2)
    traj, weights = run(windows, BEST_OF)  # (N, K, T, 2), (N, K)
    if val is not None:
        scale = metrics.fit_nll_scale(*run(val, BEST_OF), _check(val))
    else:
        scale = metrics.fit_nll_scale(traj, weights, gt)
    min_ade, min_fde = metrics.best_of_k(traj, gt)
    values = {
        "ade": metrics.ade(one[:, 0], gt).mean(),
        "fde": metrics.fde(one[:, 0], gt).mean(),
        "min_ade_20": min_ade.mean(),
        "min_fde_20": min_fde.mean(),
        "brier_min_fde_20": metrics.brier_min_fde(traj, weights, gt).mean(),
        "nll": metrics.mixture_nll(traj, weights, gt, scale).mean(),
        "miss_rate_20": metrics.miss_rate(traj, gt),
    }
    return {
        "windows": len(windows),
        "metrics": {key: float(values[key]) for key in METRIC_KEYS},
        "nll_scale": {"c": scale, "fitted_on": "scored" if val is None else "val"},
        "reliability": metrics.reliability(traj, weights, gt),
    }


def run_metrics(scores: dict[str, Any]) -> dict[str, float]:
    """`score_model`'s scalars for an MLflow run: the metrics, `nll_scale`, `n`, and
    `min_ade`/`min_fde` (the best-of-20 values under the names older runs used)."""
    m = scores["metrics"]
    return m | {
        "min_ade": m["min_ade_20"],
        "min_fde": m["min_fde_20"],
        "nll_scale": float(scores["nll_scale"]["c"]),
        "n": float(scores["windows"]),
    }


def _check(windows: Windows) -> np.ndarray:
    """The windows' futures (N, T, 2); DataError when there are none to score."""
    if windows.fut is None:
        raise DataError("evaluation needs windows with a future")
    if len(windows) == 0:
        raise DataError("no windows to evaluate")
    return windows.fut
