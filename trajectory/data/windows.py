"""Sliding observation/prediction windows with neighbour context.

The one windowing code path: the ETL, training, batch scoring and the real-time service all
call `make_windows`, so what a model sees at training time is what it sees when serving.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from trajectory.data import schema as S
from trajectory.exceptions import DataError


@dataclass(frozen=True)
class WindowSpec:
    """How windows are cut: lengths in steps of `dt` seconds, neighbour search radius and
    count, and the longest gap (seconds) that resampling to `dt` may interpolate across.

    A model's checkpoint stores its spec, so the model records its time step; a spec saved
    before `dt` existed reads as 0.4 s, the ETH/UCY step every such model was trained on.
    """

    obs_len: int = 8
    pred_len: int = 12
    stride: int = 1
    neighbour_radius: float = 5.0
    max_neighbours: int = 8
    dt: float = 0.4
    max_gap: float = 1.0

    @classmethod
    def from_settings(cls, settings) -> WindowSpec:
        return cls(
            obs_len=settings.obs_len,
            pred_len=settings.pred_len,
            stride=settings.stride,
            neighbour_radius=settings.neighbour_radius,
            max_neighbours=settings.max_neighbours,
            dt=settings.dt,
            max_gap=settings.max_gap_seconds,
        )

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> WindowSpec:
        """A spec saved with `asdict`; unknown keys are ignored, missing ones take defaults."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})


@dataclass
class Windows:
    """A batch of windows as arrays. `fut` is None for observation-only windows (serving)."""

    obs: np.ndarray  # (N, T_obs, 2) float32, absolute positions
    nbr: np.ndarray  # (N, M, T_obs, 2) float32, NaN where a neighbour slot or frame is empty
    scene: np.ndarray  # (N,) str
    agent_id: np.ndarray  # (N,) int64
    start_frame: np.ndarray  # (N,) int64, first observed frame
    fut: np.ndarray | None = None  # (N, T_pred, 2) float32
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. split

    def __len__(self) -> int:
        return len(self.obs)

    @property
    def last_obs_frame_offset(self) -> int:
        return self.obs.shape[1] - 1

    def take(self, index: np.ndarray | slice) -> Windows:
        return Windows(
            obs=self.obs[index],
            nbr=self.nbr[index],
            scene=self.scene[index],
            agent_id=self.agent_id[index],
            start_frame=self.start_frame[index],
            fut=None if self.fut is None else self.fut[index],
            extra={k: v[index] for k, v in self.extra.items()},
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per window; arrays are flattened into fixed-length list columns."""
        n = len(self)
        df = pd.DataFrame(
            {
                S.SCENE: self.scene.astype(str),
                S.AGENT: self.agent_id,
                S.START_FRAME: self.start_frame,
                S.OBS: list(self.obs.reshape(n, -1)),
                S.NBR: list(self.nbr.reshape(n, -1)),
            }
        )
        if self.fut is not None:
            df[S.FUT] = list(self.fut.reshape(n, -1))
        for name, values in self.extra.items():
            df[name] = values
        return df

    @classmethod
    def from_frame(cls, df: pd.DataFrame, spec: WindowSpec) -> Windows:
        """Inverse of `to_frame` (extra columns other than the arrays are kept in `extra`)."""
        n = len(df)
        t_obs, t_pred, m = spec.obs_len, spec.pred_len, spec.max_neighbours
        obs = _stack(df[S.OBS], n).reshape(n, t_obs, 2)
        nbr = _stack(df[S.NBR], n).reshape(n, m, t_obs, 2)
        fut = _stack(df[S.FUT], n).reshape(n, t_pred, 2) if S.FUT in df else None
        known = {S.SCENE, S.AGENT, S.START_FRAME, S.OBS, S.NBR, S.FUT}
        return cls(
            obs=obs,
            nbr=nbr,
            scene=df[S.SCENE].astype(str).to_numpy(),
            agent_id=df[S.AGENT].to_numpy(np.int64),
            start_frame=df[S.START_FRAME].to_numpy(np.int64),
            fut=fut,
            extra={c: df[c].to_numpy() for c in df.columns if c not in known},
        )

    @staticmethod
    def concat(parts: list[Windows]) -> Windows:
        if not parts:
            raise DataError("no windows to concatenate")
        has_fut = all(p.fut is not None for p in parts)
        keys = set.intersection(*(set(p.extra) for p in parts))
        return Windows(
            obs=np.concatenate([p.obs for p in parts]),
            nbr=np.concatenate([p.nbr for p in parts]),
            scene=np.concatenate([p.scene for p in parts]),
            agent_id=np.concatenate([p.agent_id for p in parts]),
            start_frame=np.concatenate([p.start_frame for p in parts]),
            fut=np.concatenate([p.fut for p in parts]) if has_fut else None,
            extra={k: np.concatenate([p.extra[k] for p in parts]) for k in keys},
        )


def _stack(column: pd.Series, n: int) -> np.ndarray:
    if n == 0:
        return np.zeros((0,), np.float32)
    return np.stack(column.to_numpy()).astype(np.float32, copy=False)


def frame_step(frames: np.ndarray, agents: np.ndarray) -> int:
    """The scene's frame step: the most common gap between an agent's consecutive frames."""
    order = np.lexsort((frames, agents))
    f, a = frames[order], agents[order]
    gaps = np.diff(f)[a[1:] == a[:-1]]
    gaps = gaps[gaps > 0]
    if len(gaps) == 0:
        return 1
    values, counts = np.unique(gaps, return_counts=True)
    return int(values[np.argmax(counts)])


def make_windows(
    tracks: pd.DataFrame,
    spec: WindowSpec,
    *,
    with_future: bool = True,
    step: int | None = None,
) -> Windows:
    """Cut every window in which an agent is present at every frame, stride `spec.stride`.

    `tracks` holds validated rows (scene, frame, agent_id, x, y) of one or more scenes.
    With `with_future=False` a window is only the observed part (for scoring new data).
    Neighbours are the other agents within `neighbour_radius` of the agent at its last
    observed frame, nearest first; their positions are taken at the observed frames only,
    so nothing from the future enters a window's inputs.
    """
    parts = [
        _scene_windows(g, spec, with_future, step)
        for _, g in tracks.groupby(S.SCENE, sort=True, observed=True)
    ]
    parts = [p for p in parts if len(p)]
    if not parts:
        return _empty(spec, with_future)
    return Windows.concat(parts) if len(parts) > 1 else parts[0]


def _empty(spec: WindowSpec, with_future: bool) -> Windows:
    t, m = spec.obs_len, spec.max_neighbours
    return Windows(
        obs=np.zeros((0, t, 2), np.float32),
        nbr=np.zeros((0, m, t, 2), np.float32),
        scene=np.zeros((0,), object),
        agent_id=np.zeros((0,), np.int64),
        start_frame=np.zeros((0,), np.int64),
        fut=np.zeros((0, spec.pred_len, 2), np.float32) if with_future else None,
    )


def _scene_windows(
    g: pd.DataFrame, spec: WindowSpec, with_future: bool, step: int | None
) -> Windows:
    length = spec.obs_len + (spec.pred_len if with_future else 0)
    g = g.sort_values([S.AGENT, S.FRAME], kind="stable")
    a = g[S.AGENT].to_numpy(np.int64)
    f = g[S.FRAME].to_numpy(np.int64)
    xy = g[[S.X, S.Y]].to_numpy(np.float64)
    n = len(a)
    if n < length:
        return _empty(spec, with_future)
    step = step or frame_step(f, a)

    # a window starts at row i when the next length-1 gaps are all one step of the same agent
    ok = np.zeros(n, np.int64)
    ok[1:] = (a[1:] == a[:-1]) & (np.diff(f) == step)
    run = np.concatenate([[0], np.cumsum(ok)])  # run[j] = ok[0..j-1] summed
    starts = np.arange(n - length + 1)
    valid = (run[starts + length] - run[starts + 1]) == length - 1
    starts = starts[valid]
    if spec.stride > 1:
        starts = starts[((f[starts] - f.min()) // step) % spec.stride == 0]
    if len(starts) == 0:
        return _empty(spec, with_future)

    idx = starts[:, None] + np.arange(length)  # (N, L)
    pos = xy[idx].astype(np.float32)  # (N, L, 2)
    obs = pos[:, : spec.obs_len]
    fut = pos[:, spec.obs_len :] if with_future else None
    nbr = _neighbours(a, f, xy, starts, spec, step)
    scene = np.full(len(starts), str(g[S.SCENE].iloc[0]), dtype=object)
    return Windows(
        obs=obs, nbr=nbr, scene=scene, agent_id=a[starts], start_frame=f[starts], fut=fut
    )


def _neighbours(
    a: np.ndarray,
    f: np.ndarray,
    xy: np.ndarray,
    starts: np.ndarray,
    spec: WindowSpec,
    step: int,
) -> np.ndarray:
    """(N, M, T_obs, 2): nearest agents at the last observed frame, their observed positions."""
    n_win, m, t_obs = len(starts), spec.max_neighbours, spec.obs_len
    out = np.full((n_win, m, t_obs, 2), np.nan, np.float32)
    if m == 0:
        return out
    last = starts + t_obs - 1  # row of each window's last observed point
    by_frame = np.argsort(f, kind="stable")
    f_sorted = f[by_frame]
    lo = np.searchsorted(f_sorted, f[last], "left")
    hi = np.searchsorted(f_sorted, f[last], "right")
    counts = hi - lo
    win = np.repeat(np.arange(n_win), counts)  # candidate pairs (window, row)
    offsets = np.cumsum(counts) - counts
    cand = by_frame[np.repeat(lo - offsets, counts) + np.arange(counts.sum())]
    x, y, lw = xy[:, 0], xy[:, 1], last[win]
    dx, dy = x[cand] - x[lw], y[cand] - y[lw]  # one column at a time: a third of the time
    dist = np.sqrt(dx * dx + dy * dy)  # bit for bit np.linalg.norm
    keep = (a[cand] != a[lw]) & (dist <= spec.neighbour_radius)
    win, cand, dist = win[keep], cand[keep], dist[keep]
    if len(win) == 0:
        return out
    # nearest first: a stable sort of each window's row in a padded (N, most) matrix, which
    # is several times faster than one lexsort of all pairs by (window, distance)
    n = np.bincount(win, minlength=n_win)  # (N,) agents within the radius
    first = np.cumsum(n) - n  # (N,) each window's first pair
    padded = np.full((n_win, n.max()), np.inf)
    padded[win, np.arange(len(win)) - first[win]] = dist
    nearest = np.argsort(padded, axis=1, kind="stable")[:, :m]  # (N, <=M)
    win, rank = np.nonzero(nearest < n[:, None])  # (P,) each, P chosen neighbours
    cand = cand[first[win] + nearest[win, rank]]

    # positions of each chosen neighbour at the window's observed frames, where present: the
    # row `back` rows before its last one when its rows are one step apart (nearly always,
    # and a cache-friendly look-up), else a search of the (agent, frame) keys
    key = _agent_frame_key(a, f)  # rows are sorted by (agent, frame), as is key
    back = np.arange(t_obs - 1, -1, -1)  # (T_obs,)
    before = key - (f - f.min() + 1)  # (n,) the key of "before the agent's first row"
    want = np.maximum(key[cand, None] - step * back, before[cand, None])  # (P, T_obs)
    pos = np.maximum(cand[:, None] - back, 0)  # (P, T_obs)
    first_of_key = (pos == 0) | (key[pos - 1] != want)  # as a search finds it
    miss = (key[pos] != want) | ~first_of_key
    pos[miss] = np.minimum(np.searchsorted(key, want[miss]), len(key) - 1)
    vals = np.take(xy.astype(np.float32), pos, axis=0)  # (P, T_obs, 2)
    vals[key[pos] != want] = np.nan
    out[win, rank] = vals
    return out


def _agent_frame_key(a: np.ndarray, f: np.ndarray) -> np.ndarray:
    """A sortable int64 key for (agent, frame) pairs, consistent with rows sorted that way;
    an agent's keys lie apart from the next agent's, one below its first frame left free."""
    f_min = int(f.min())
    span = int(f.max()) - f_min + 2  # rows use 1..span-1; 0 means "before"
    if (int(a.max()) - int(a.min()) + 1) * span >= 2**62:
        raise DataError("agent ids and frame numbers span too wide a range to index")
    return (a - int(a.min())) * span + (f - f_min + 1)
