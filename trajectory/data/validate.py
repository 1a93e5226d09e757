"""Row checks on parsed tracks: pure functions on DataFrames, shared by the ETL and serving.

`validate_tracks` takes parsed rows (`scene, frame, agent_id, x, y`, numbers as floats) in
file order and returns the valid rows plus one reason per rejected row, keyed by the input's
index (the reader uses 1-based line numbers as the index). Every reason starts with a stable
tag from `REASONS`, then says which field and value were wrong.

Checks, in order, each on the rows the previous ones kept:
  not finite / not an integer  NaN or inf in any number, or a fractional frame or agent id
  out of range                 |x| or |y| above `max_abs_coordinate` (checked before any
                               speed, so one absurd point cannot make its neighbours jumps)
  out of order                 a frame lower than an earlier frame of the same agent
  duplicate                    a second row for the same (scene, agent_id, frame)
  impossible jump              faster than `max_speed` from the agent's last kept point, over
                               the real elapsed time (`resample.track_seconds`: timestamps, or
                               frames at `frame_seconds` per frame step); only the later point
                               is rejected, and the next point is compared with the last kept
                               one (a single spike costs one row, not two). A track's first
                               point has no earlier point to vouch for it: when the points
                               after it agree with each other but not with it, the first
                               point is the one rejected, not the rest of the track.
Numbers in reasons are printed with `%.6g`: short whatever the input.
Rows read from timestamps keep their `time` column (seconds) in the valid rows.
Everything is vectorised, except that the jump check walks, point by point, the tracks that
have a violation (from their first one on).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable

import numpy as np
import pandas as pd

from trajectory.data import schema as S
from trajectory.data.resample import scene_codes, track_seconds

REASONS = (
    "column count",
    "not a number",
    "nan",
    "inf",
    "not an integer",
    "out of range",
    "out of order",
    "duplicate",
    "impossible jump",
    "empty scene",
)
NUMERIC = [S.FRAME, S.AGENT, S.X, S.Y]
_NONE = pd.Series([], dtype=object)


def validate_tracks(
    rows: pd.DataFrame,
    *,
    max_speed: float,
    frame_seconds: float,
    max_abs_coordinate: float = math.inf,
    check_order: bool = True,
    where: Callable[[Hashable], str] | None = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """(valid rows in TRACK_DTYPES, reasons indexed like `rows`) for parsed rows in file order.

    `max_abs_coordinate`: metres; a row with a larger |x| or |y| is rejected (the readers
    pass TRAJ_MAX_ABS_COORDINATE).
    `check_order=False` skips the file-order check: for rows gathered from several files.
    `where(label)` names a row in messages (default: "line <label>").
    """
    checks: list[Callable[[pd.DataFrame], pd.Series]] = [
        check_values,
        lambda df: check_range(df, max_abs_coordinate),
        check_order_in_file if check_order else (lambda _: _NONE),
        lambda df: check_duplicates(df, where=where),
        lambda df: check_jumps(df, max_speed=max_speed, frame_seconds=frame_seconds),
    ]
    ok, reasons = rows.astype({S.SCENE: "category"}), []  # one factorize serves every check
    for check in checks:
        found = check(ok)
        if len(found):
            reasons.append(found)
            ok = ok[~ok.index.isin(found.index)]
    columns = S.TRACK_COLUMNS + ([S.TIME] if S.TIME in ok else [])
    valid = ok.astype({c: S.TRACK_DTYPES.get(c, np.float64) for c in columns})[columns]
    all_reasons = pd.concat(reasons) if reasons else _NONE
    return valid, all_reasons.rename("reason")


def check_values(rows: pd.DataFrame) -> pd.Series:
    """NaN, inf, or a fractional frame / agent id (the first bad field of each row)."""
    out: dict[object, str] = {}
    for col in NUMERIC:
        v = rows[col].to_numpy(np.float64)
        for mask, tag in ((np.isnan(v), "nan"), (np.isinf(v), "inf")):
            for label, value in zip(rows.index[mask], v[mask], strict=True):
                out.setdefault(label, f"{tag}: field {col!r} is {value:.6g}")
    for col in (S.FRAME, S.AGENT):
        v = rows[col].to_numpy(np.float64)
        with np.errstate(invalid="ignore"):
            bad = np.isfinite(v) & ((v != np.round(v)) | (np.abs(v) > 2**53))
        for label, value in zip(rows.index[bad], v[bad], strict=True):
            out.setdefault(label, f"not an integer: field {col!r} is {value:.6g}")
    return _reasons(out)


def check_range(rows: pd.DataFrame, max_abs: float) -> pd.Series:
    """Rows with |x| or |y| above `max_abs` metres (the first such field of each row)."""
    out: dict[object, str] = {}
    for col in (S.X, S.Y):
        v = rows[col].to_numpy(np.float64)
        bad = np.abs(v) > max_abs
        for label, value in zip(rows.index[bad], v[bad], strict=True):
            out.setdefault(label, f"out of range: field {col!r} is {value:.6g} (|v| > {max_abs:g} m)")
    return _reasons(out)


def check_order_in_file(rows: pd.DataFrame) -> pd.Series:
    """Rows whose frame is lower than an earlier (in row order) frame of the same agent."""
    order, same = _agent_order(rows, by_frame=False)
    f = rows[S.FRAME].to_numpy(np.float64)[order]
    prev_max = _group_cummax_exclusive(f, same)
    bad = same & (f < prev_max)
    labels = rows.index[order[bad]]
    msg = [
        f"out of order: frame {int(a)} after frame {int(b)} for agent {int(c)}"
        for a, b, c in zip(f[bad], prev_max[bad], rows[S.AGENT].to_numpy()[order[bad]], strict=True)
    ]
    return pd.Series(msg, index=labels, dtype=object)


def check_duplicates(
    rows: pd.DataFrame, *, where: Callable[[Hashable], str] | None = None
) -> pd.Series:
    """Every row after the first with the same (scene, agent_id, frame)."""
    where = where or _line
    order, same = _agent_order(rows, by_frame=True)
    f = rows[S.FRAME].to_numpy(np.float64)[order]
    dup = np.zeros(len(order), bool)
    dup[1:] = same[1:] & (f[1:] == f[:-1])
    first = np.maximum.accumulate(np.where(dup, 0, np.arange(len(order))))  # start of each run
    labels = rows.index[order[dup]]
    msg = [
        f"duplicate: same scene, agent and frame as {where(lb)}"
        for lb in rows.index[order[first[dup]]]
    ]
    return pd.Series(msg, index=labels, dtype=object)


def check_jumps(rows: pd.DataFrame, *, max_speed: float, frame_seconds: float) -> pd.Series:
    """Points reached faster than `max_speed` m/s from the agent's last kept point.

    Speeds divide by the real elapsed time (`resample.track_seconds`): a row's `time`, else
    its frame at `frame_seconds` per scene frame step. Rows must hold no duplicate (scene,
    agent_id, frame). Speeds are vectorised; only the tracks with a violation are walked
    point by point, from their first violation on.
    """
    if len(rows) < 2:
        return _NONE
    order, same = _agent_order(rows, by_frame=True)
    t = track_seconds(rows, frame_seconds)[order]  # (n,) seconds
    xy = rows[[S.X, S.Y]].to_numpy(np.float64)[order]
    speed = np.zeros(len(order))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # dt <= 0: between agents
        speed[1:] = np.linalg.norm(np.diff(xy, axis=0), axis=1) / np.diff(t)
    viol = same & (speed > max_speed)
    if not viol.any():
        return _NONE
    group = np.cumsum(~same)  # (n,) agent run id, in sorted order
    ends = np.searchsorted(group, group, side="right")
    rejected: dict[int, tuple[float, str]] = {}

    def speed_between(i: int, j: int) -> float:
        with np.errstate(over="ignore", invalid="ignore"):  # inf speeds are rejected anyway
            return float(np.hypot(*(xy[j] - xy[i])) / (t[j] - t[i]))

    for first in _first_per_group(np.flatnonzero(viol), group):
        kept, end = first - 1, ends[first]
        vouched = bool(same[kept])  # the track's first point has no earlier one to vouch for it
        for i in range(first, end):
            v = speed_between(kept, i)
            if v <= max_speed:
                kept, vouched = i, True
            elif not vouched and i + 1 < end and speed_between(i, i + 1) <= max_speed:
                rejected[kept] = (v, "to the next")  # a lone first point: it is the outlier
                kept, vouched = i, True
            else:
                rejected[i] = (v, "from the previous")
    msg = [
        f"impossible jump: {_speed(v)} m/s {which} point (max {max_speed:g} m/s)"
        for v, which in rejected.values()
    ]
    return pd.Series(msg, index=rows.index[order[list(rejected)]], dtype=object)


def _speed(v: float) -> str:
    """One decimal for a plausible speed, `%.6g` for an absurd one (never 300 digits)."""
    return f"{v:.1f}" if v < 1e6 else f"{v:.6g}"


def _first_per_group(positions: np.ndarray, group: np.ndarray) -> np.ndarray:
    """The first of `positions` (sorted) in each group."""
    keep = np.ones(len(positions), bool)
    keep[1:] = group[positions[1:]] != group[positions[:-1]]
    return positions[keep]


def _agent_order(rows: pd.DataFrame, *, by_frame: bool) -> tuple[np.ndarray, np.ndarray]:
    """Row positions sorted by (scene, agent[, frame]) keeping row order in ties, and a mask
    that is True where a sorted row has the same scene and agent as the row before it."""
    scene = scene_codes(rows)
    agent = rows[S.AGENT].to_numpy(np.float64)
    keys = (rows[S.FRAME].to_numpy(np.float64), agent, scene) if by_frame else (agent, scene)
    order = np.lexsort(keys)  # stable: ties keep row order
    same = np.zeros(len(order), bool)
    same[1:] = (scene[order][1:] == scene[order][:-1]) & (agent[order][1:] == agent[order][:-1])
    return order, same


def _group_cummax_exclusive(values: np.ndarray, same: np.ndarray) -> np.ndarray:
    """For each position, the max of the earlier values in its group (-inf for the first)."""
    running = pd.Series(values).groupby(np.cumsum(~same)).cummax().to_numpy()
    out = np.full(len(values), -np.inf)
    out[1:] = np.where(same[1:], running[:-1], -np.inf)
    return out


def _line(label: Hashable) -> str:
    return f"line {label}"


def _reasons(out: dict[object, str]) -> pd.Series:
    return pd.Series(list(out.values()), index=list(out.keys()), dtype=object)
