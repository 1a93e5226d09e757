"""`make_windows` neighbours against a brute-force reading of their definition, on random
tracks with gaps and off-step frames (so both the row-offset look-up and the search run)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from trajectory.data import schema as S
from trajectory.data.windows import WindowSpec, make_windows


def brute_force_neighbours(
    rows: pd.DataFrame, w_agent: int, start: int, spec: WindowSpec, step: int
) -> np.ndarray:
    """(M, T_obs, 2) for the window of `w_agent` starting at frame `start`."""
    at = {(int(r.agent_id), int(r.frame)): (r.x, r.y) for r in rows.itertuples()}
    last = start + (spec.obs_len - 1) * step
    me = np.array(at[(w_agent, last)])
    others = sorted(
        (float(np.linalg.norm(np.array(at[(a, last)]) - me)), a)
        for a in sorted({int(a) for a in rows.agent_id})
        if a != w_agent and (a, last) in at
    )
    chosen = [a for d, a in others if d <= spec.neighbour_radius][: spec.max_neighbours]
    out = np.full((spec.max_neighbours, spec.obs_len, 2), np.nan, np.float32)
    for slot, a in enumerate(chosen):
        for t in range(spec.obs_len):
            out[slot, t] = at.get((a, start + t * step), (np.nan, np.nan))
    return out


def test_neighbours_match_a_brute_force_reading() -> None:
    rng = np.random.default_rng(7)
    spec = WindowSpec(obs_len=4, pred_len=2, neighbour_radius=3.0, max_neighbours=3)
    for _ in range(20):
        n = 300
        frames = rng.integers(0, 40, n) * 10 + np.where(rng.random(n) < 0.1, 5, 0)  # off-step
        rows = pd.DataFrame(
            {
                S.SCENE: "s",
                S.FRAME: frames,
                S.AGENT: rng.integers(0, 8, n),
                S.X: rng.normal(0, 2, n),
                S.Y: rng.normal(0, 2, n),
            }
        ).drop_duplicates([S.AGENT, S.FRAME])
        w = make_windows(rows, spec, step=10)
        assert len(w) > 0
        for i in range(len(w)):
            want = brute_force_neighbours(rows, int(w.agent_id[i]), int(w.start_frame[i]), spec, 10)
            np.testing.assert_array_equal(w.nbr[i], want)
