"""Synthetic windows shared by the MLflow integration tests: agents walking at constant velocity,
so the `cv` model is exact on them and a briefly trained mixture is worse."""

from __future__ import annotations

import numpy as np

from trajectory.data.windows import Windows, WindowSpec

SPEC = WindowSpec(obs_len=8, pred_len=12, max_neighbours=2)


def walking_windows(n: int, seed: int, spec: WindowSpec = SPEC) -> Windows:
    """Constant-velocity agents; neighbour slot 0 present with gaps, any other slots empty."""
    rng = np.random.default_rng(seed)
    velocity = rng.normal(0, 0.5, (n, 1, 2)).astype(np.float32)  # (N, 1, 2) metres per frame
    start = rng.uniform(-5, 5, (n, 1, 2)).astype(np.float32)  # (N, 1, 2)
    t = np.arange(spec.obs_len + spec.pred_len, dtype=np.float32)[None, :, None]  # (1, T, 1)
    pos = start + velocity * t  # (N, T, 2)
    nbr = np.full((n, spec.max_neighbours, spec.obs_len, 2), np.nan, np.float32)
    nbr[:, 0] = pos[:, : spec.obs_len] + 1.0
    nbr[::2, 0, :3] = np.nan  # neighbour seen late in half of the windows
    return Windows(
        obs=pos[:, : spec.obs_len], nbr=nbr, fut=pos[:, spec.obs_len :],
        scene=np.full(n, "walk", object), agent_id=np.arange(n, dtype=np.int64),
        start_frame=np.zeros(n, np.int64),
    )
