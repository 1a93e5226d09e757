"""Score a model on windows: K=1 (the most likely sample) and best-of-K."""

from __future__ import annotations

import torch

from trajectory import metrics
from trajectory.data.windows import Windows
from trajectory.exceptions import DataError
from trajectory.models.base import TrajectoryModel, predict


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
    if windows.fut is None:
        raise DataError("evaluation needs windows with a future")
    if len(windows) == 0:
        raise DataError("no windows to evaluate")
    model.to(device)
    traj, _ = predict(model, windows.obs, windows.nbr, k=k, batch_size=batch_size, device=device)
    out = metrics.summarize(traj, windows.fut)
    if k == 1:
        out |= {"min_ade": out["ade"], "min_fde": out["fde"]}
    return out | {"k": float(k), "n": float(len(windows))}
