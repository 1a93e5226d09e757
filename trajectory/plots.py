"""Figures for run artifacts: sample predictions against ground truth, and learning curves.

Figures are built on matplotlib's Agg canvas without pyplot, so nothing needs a display and no
global figure state is touched; save them with `fig.savefig(path)` or `mlflow.log_figure`.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from trajectory.exceptions import DataError


def sample_figure(
    obs: np.ndarray,
    fut: np.ndarray,
    traj: np.ndarray,
    weights: np.ndarray | None = None,
    nbr: np.ndarray | None = None,
    title: str = "",
    cols: int = 3,
) -> Figure:
    """One panel per window: observed track, ground-truth future, K predictions.

    obs (N, T_obs, 2), fut (N, T_pred, 2), traj (N, K, T_pred, 2) with the most likely first,
    weights (N, K) set the line alpha of the other samples, nbr (N, M, T_obs, 2) NaN-padded.
    """
    n = len(obs)
    if n == 0 or len(fut) != n or len(traj) != n:
        raise DataError(f"need as many futures and predictions as windows, got {n}")
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4 * min(n, cols), 4 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    for i in range(n):
        ax = fig.add_subplot(rows, min(n, cols), i + 1)
        if nbr is not None:
            last = nbr[i, :, -1]  # (M, 2)
            last = last[~np.isnan(last).any(-1)]
            ax.scatter(last[:, 0], last[:, 1], s=12, c="0.6", label="neighbours")
        w = weights[i] if weights is not None else np.full(traj.shape[1], 1 / traj.shape[1])
        for j in range(traj.shape[1] - 1, 0, -1):  # other samples underneath
            alpha = float(np.clip(0.15 + 0.85 * w[j] / max(w.max(), 1e-9), 0.15, 1.0))
            ax.plot(traj[i, j, :, 0], traj[i, j, :, 1], c="tab:orange", lw=0.8, alpha=alpha)
        ax.plot(obs[i, :, 0], obs[i, :, 1], "o-", c="tab:blue", ms=3, label="observed")
        track = np.concatenate([obs[i, -1:], fut[i]])  # (1 + T_pred, 2)
        ax.plot(track[:, 0], track[:, 1], "o-", c="tab:green", ms=3, label="ground truth")
        best = np.concatenate([obs[i, -1:], traj[i, 0]])  # (1 + T_pred, 2)
        ax.plot(best[:, 0], best[:, 1], "x--", c="tab:red", ms=4, label="most likely")
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(f"window {i}", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.axes[0].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    return fig


def history_figure(history: list[dict[str, float]], title: str = "") -> Figure:
    """Training loss and validation ADE/FDE (K=1 and best-of-K) per epoch."""
    if not history:
        raise DataError("no epochs to plot")
    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, err_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [row["train_loss"] for row in history], c="tab:blue")
    loss_ax.set(xlabel="epoch", ylabel="train loss")
    for key in ("val_ade", "val_fde", "val_min_ade", "val_min_fde"):
        if key in history[0]:
            err_ax.plot(epochs, [row[key] for row in history], label=key)
    err_ax.set(xlabel="epoch", ylabel="metres")
    err_ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig
