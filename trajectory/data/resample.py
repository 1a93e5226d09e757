"""Tracks onto a model's time grid: linear interpolation per agent, never across long gaps.

The time of a track row, in seconds, is its `time` where the input gave timestamps, else
`frame * frame_seconds / step`: `step` is the scene's frame step (`windows.frame_step`) and
`frame_seconds` how long it lasts, known per dataset (TRAJ_FRAME_SECONDS; ETH/UCY: frame ids
step by 10 per 0.4 s).

`resample` puts each agent's points on the grid t = k * dt. A grid time between two points of
an agent at most `max_gap` seconds apart is interpolated linearly between them; a longer gap
ends a segment, and the grid times inside it get no point, so no window spans it. A grid time
within `TOLERANCE` of a point takes that point exactly, so a track already at dt comes out
unchanged. The ETL (`resample_tracks`) and the prediction service (`serving.inference`) both
call `resample`: one code path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trajectory.data import schema as S
from trajectory.data.windows import frame_step

TOLERANCE = 1e-6  # seconds: times closer than this are the same time


@dataclass(frozen=True)
class Resampled:
    """Grid points, sorted by (group, k)."""

    k: np.ndarray  # (m,) int64: the point is at k * dt seconds
    group: np.ndarray  # (m,) int64: the group (agent) of the point
    segment: np.ndarray  # (m,) int64: index of the input's segment it lies in
    xy: np.ndarray  # (m, 2) float64


def same_step(a: float, b: float) -> bool:
    """Whether two time steps (seconds) are the same, to within `TOLERANCE`."""
    return abs(a - b) <= TOLERANCE


def segment_starts(t: np.ndarray, group: np.ndarray, max_gap: float) -> np.ndarray:
    """(n,) bool: where a segment starts in points sorted by (group, t): at a new group, or
    after a gap longer than `max_gap` seconds."""
    starts = np.ones(len(t), bool)
    starts[1:] = (group[1:] != group[:-1]) | (np.diff(t) > max_gap + TOLERANCE)
    return starts


def resample(
    t: np.ndarray, xy: np.ndarray, group: np.ndarray, *, dt: float, max_gap: float
) -> Resampled:
    """Points sorted by (group, t), times increasing within a group -> the grid t = k * dt.

    t (n,) seconds, xy (n, 2), group (n,) int. Every grid time inside a segment (see
    `segment_starts`) gets one point; a segment shorter than dt may get none.
    """
    n = len(t)
    t = np.asarray(t, np.float64)
    xy = np.asarray(xy, np.float64).reshape(n, 2)
    if n == 0:
        none = np.zeros(0, np.int64)
        return Resampled(k=none, group=none, segment=none, xy=np.zeros((0, 2)))
    starts = np.flatnonzero(segment_starts(t, group, max_gap))  # (s,) first point of each
    ends = np.append(starts[1:], n) - 1  # (s,) last point of each
    k0 = np.ceil((t[starts] - TOLERANCE) / dt).astype(np.int64)  # (s,)
    k1 = np.floor((t[ends] + TOLERANCE) / dt).astype(np.int64)  # (s,)
    counts = np.maximum(k1 - k0 + 1, 0)  # (s,) grid points per segment
    seg = np.repeat(np.arange(len(starts)), counts)  # (m,)
    k = k0[seg] + np.arange(len(seg)) - np.repeat(np.cumsum(counts) - counts, counts)  # (m,)
    tau = k * dt  # (m,) grid times

    # the last point at or before each grid time: merge points and grid times by (segment, t)
    point_seg = np.repeat(np.arange(len(starts)), ends - starts + 1)  # (n,)
    kind = np.concatenate([np.zeros(n, np.int8), np.ones(len(seg), np.int8)])
    order = np.lexsort((kind, np.concatenate([t, tau]), np.concatenate([point_seg, seg])))
    is_point = kind[order] == 0
    left = (np.cumsum(is_point) - 1)[~is_point]  # (m,) grid entries keep their order
    left = np.clip(left, starts[seg], ends[seg])
    right = np.minimum(left + 1, ends[seg])
    span = t[right] - t[left]
    w = np.divide(tau - t[left], span, out=np.zeros(len(seg)), where=span > 0)
    w = np.clip(w, 0.0, 1.0)
    w[np.abs(tau - t[left]) <= TOLERANCE] = 0.0
    w[np.abs(t[right] - tau) <= TOLERANCE] = 1.0
    out = (1.0 - w)[:, None] * xy[left] + w[:, None] * xy[right]  # exact at w = 0 or 1
    return Resampled(k=k, group=np.asarray(group)[starts][seg], segment=seg, xy=out)


def scene_steps(rows: pd.DataFrame) -> np.ndarray:
    """(n,) each row's scene frame step (see `windows.frame_step`), in row order."""
    steps = np.ones(len(rows), np.float64)
    codes = scene_codes(rows)
    f = rows[S.FRAME].to_numpy(np.int64)
    a = rows[S.AGENT].to_numpy(np.int64)
    for code in np.unique(codes):
        mask = codes == code
        steps[mask] = frame_step(f[mask], a[mask])
    return steps


def track_seconds(rows: pd.DataFrame, frame_seconds: float) -> np.ndarray:
    """(n,) each row's time in seconds: its `time`, else its frame at `frame_seconds` per
    scene frame step (the step is found among the rows without a `time`)."""
    given = rows[S.TIME].to_numpy(np.float64) if S.TIME in rows else None
    if given is not None and not np.isnan(given).any():
        return given
    by_frame = np.ones(len(rows), bool) if given is None else np.isnan(given)
    framed = rows[by_frame] if given is not None else rows
    seconds = framed[S.FRAME].to_numpy(np.float64) * (frame_seconds / scene_steps(framed))
    if given is None:
        return seconds
    out = given.copy()
    out[by_frame] = seconds
    return out


def needs_resampling(rows: pd.DataFrame, frame_seconds: float, dt: float) -> bool:
    """Whether rows are off the grid of dt: timed by timestamps, or frames of another step."""
    return S.TIME in rows or not same_step(frame_seconds, dt)


def resample_tracks(
    tracks: pd.DataFrame, *, frame_seconds: float, dt: float, max_gap: float
) -> pd.DataFrame:
    """Valid track rows -> TRACK_COLUMNS rows at dt, frame = k for time k * dt (frame step 1).

    Rows without `time` whose frame step already lasts dt are returned unchanged (frames
    and all), so data recorded at the model's step, such as ETH/UCY, is untouched.
    """
    if not needs_resampling(tracks, frame_seconds, dt):
        return tracks
    t = track_seconds(tracks, frame_seconds)
    agent = tracks[S.AGENT].to_numpy(np.int64)
    codes = scene_codes(tracks)
    order = np.lexsort((t, agent, codes))
    new = np.ones(len(order), bool)
    new[1:] = (codes[order][1:] != codes[order][:-1]) | (agent[order][1:] != agent[order][:-1])
    group = np.cumsum(new) - 1  # (n,) one group per (scene, agent), in sorted order
    xy = tracks[[S.X, S.Y]].to_numpy(np.float64)[order]
    r = resample(t[order], xy, group, dt=dt, max_gap=max_gap)
    row = order[np.flatnonzero(new)][r.group]  # (m,) an input row of each point's agent
    out = pd.DataFrame(
        {
            S.SCENE: tracks[S.SCENE].to_numpy()[row],
            S.FRAME: r.k,
            S.AGENT: agent[row],
            S.X: r.xy[:, 0],
            S.Y: r.xy[:, 1],
        }
    )
    return out.astype({c: S.TRACK_DTYPES[c] for c in S.TRACK_COLUMNS})


def scene_codes(rows: pd.DataFrame) -> np.ndarray:
    """(n,) an integer code per row's scene."""
    column = rows[S.SCENE]
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy()
    return pd.factorize(column)[0]
