"""Per-window motion features, computed from observed points only.

These describe what a model was given (training) or is given (serving), and are the columns
the drift report compares. Differences are backward, never central: a central difference at
the last observed point would look one step into the future.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trajectory.data.schema import FEATURE_COLUMNS


def motion_features(obs: np.ndarray, nbr: np.ndarray, frame_seconds: float) -> pd.DataFrame:
    """obs (N, T, 2), nbr (N, M, T, 2) with NaN gaps -> one row of FEATURE_COLUMNS per window."""
    vel = np.diff(obs, axis=1) / frame_seconds  # (N, T-1, 2)
    speed = np.linalg.norm(vel, axis=-1)  # (N, T-1)
    accel = np.abs(np.diff(speed, axis=1)) / frame_seconds if speed.shape[1] > 1 else speed * 0
    heading = np.arctan2(vel[..., 1], vel[..., 0])  # (N, T-1)
    turn = np.angle(np.exp(1j * np.diff(heading, axis=1)))  # wrapped to (-pi, pi]
    moving = speed[:, 1:] > 0.1  # headings of a standing agent are noise
    turn = np.where(moving, np.abs(turn), 0.0)
    path = speed.sum(axis=1) * frame_seconds
    curvature = np.divide(turn.sum(axis=1), path, out=np.zeros(len(obs)), where=path > 1e-6)

    last = obs[:, -1]  # (N, 2)
    nbr_last = nbr[:, :, -1]  # (N, M, 2)
    d = np.linalg.norm(nbr_last - last[:, None], axis=-1)  # (N, M), NaN where empty
    present = ~np.isnan(d)
    count = present.sum(axis=1)
    nearest = np.where(present, d, np.inf).min(axis=1) if d.shape[1] else np.full(len(obs), np.inf)
    return pd.DataFrame(
        {
            FEATURE_COLUMNS[0]: speed.mean(axis=1),
            FEATURE_COLUMNS[1]: accel.mean(axis=1) if accel.size else np.zeros(len(obs)),
            FEATURE_COLUMNS[2]: turn.mean(axis=1) if turn.size else np.zeros(len(obs)),
            FEATURE_COLUMNS[3]: curvature,
            FEATURE_COLUMNS[4]: count.astype(np.int64),
            # no neighbour within the radius: report the radius-free sentinel as NaN, not inf
            FEATURE_COLUMNS[5]: np.where(np.isfinite(nearest), nearest, np.nan),
        }
    )
