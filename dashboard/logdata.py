"""The prediction log as the dashboard reads it, and the true futures later rows bring.

Ground truth comes from the log itself: a later request for the same agent (same `scene_key`
and `agent_key`) observes the positions an earlier forecast predicted, at frames
`last_frame + j * frame_step`. This needs no ETL output and no pseudonym key, so the dashboard
works on the log alone; a forecast is scored once all of its `T` future frames were observed
by later requests (the evaluation job's ETL join, `trajectory.monitoring.live`, stays the
reference for decisions). Rows without frames (`last_frame` null) cannot be placed in time
and are never scored.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import Engine, MetaData, Table, func, select

from trajectory import fairness
from trajectory import metrics as M

TABLE = "predictions"
COLUMNS = [
    "id", "created_at", "request_id", "routing_key_hash", "variant", "assignment", "shadow",
    "model_name", "model_version", "scene_key", "agent_key", "last_frame", "frame_step", "k",
    "observed", "predicted", "weights", "latency_ms", "cache_hit",
]  # fmt: skip
_POINT = ["scene_key", "agent_key", "frame"]


def _table(engine: Engine) -> Table:
    return Table(TABLE, MetaData(), autoload_with=engine)


def log_span(engine: Engine) -> tuple[datetime, datetime] | None:
    """First and last `created_at` of the log, None while it is empty."""
    table = _table(engine)
    with engine.connect() as conn:
        first, last = conn.execute(
            select(func.min(table.c.created_at), func.max(table.c.created_at))
        ).one()
    return None if first is None else (_utc(first), _utc(last))


def read_log(engine: Engine, start: datetime | None = None, end: datetime | None = None,
             limit: int = 50_000) -> pd.DataFrame:
    """The newest `limit` rows with start <= created_at < end, oldest first."""
    table = _table(engine)
    query = select(*(table.c[c] for c in COLUMNS)).order_by(table.c.id.desc()).limit(limit)
    if start is not None:
        query = query.where(table.c.created_at >= start)
    if end is not None:
        query = query.where(table.c.created_at < end)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    frame = pd.DataFrame(rows[::-1], columns=COLUMNS)
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    frame["model_version"] = frame["model_version"].astype(str)
    return frame


def _utc(value: datetime) -> datetime:
    return pd.Timestamp(value).tz_localize("UTC").to_pydatetime() if value.tzinfo is None \
        else value


def observed_points(rows: pd.DataFrame) -> pd.DataFrame:
    """Every logged observed point placed in its scene's frames: scene_key, agent_key, frame,
    x, y (one row per point; repeats across requests and shadow rows dropped)."""
    placed = rows[rows["last_frame"].notna() & rows["scene_key"].notna()]
    if placed.empty:
        return pd.DataFrame(columns=[*_POINT, "x", "y"])
    obs = [np.asarray(o, np.float64).reshape(-1, 2) for o in placed["observed"]]
    length = np.array([len(o) for o in obs])
    row_of = np.repeat(np.arange(len(placed)), length)
    back = np.concatenate([np.arange(n - 1, -1, -1) for n in length])
    last = placed["last_frame"].to_numpy(np.int64)[row_of]
    step = placed["frame_step"].to_numpy(np.int64)[row_of]
    xy = np.concatenate(obs)
    points = pd.DataFrame({
        "scene_key": placed["scene_key"].astype(str).to_numpy()[row_of],
        "agent_key": placed["agent_key"].astype(str).to_numpy()[row_of],
        "frame": last - back * step,
        "x": xy[:, 0],
        "y": xy[:, 1],
    })
    return points.drop_duplicates(_POINT, ignore_index=True)


def true_futures(rows: pd.DataFrame, points: pd.DataFrame | None = None) -> list[np.ndarray]:
    """Per row, the observed positions at its predicted frames: (T, 2) with NaN where no later
    request has observed that frame yet (all NaN for rows without frames)."""
    points = observed_points(rows) if points is None else points
    horizons = [np.asarray(p, np.float64).shape[1] for p in rows["predicted"]]
    out = [np.full((h, 2), np.nan) for h in horizons]
    placed = np.flatnonzero((rows["last_frame"].notna() & rows["scene_key"].notna()).to_numpy())
    if not len(placed) or points.empty:
        return out
    h = np.array([horizons[i] for i in placed])
    row_of = np.repeat(placed, h)
    step_no = np.concatenate([np.arange(1, n + 1) for n in h])
    wanted = pd.DataFrame({
        "row": row_of,
        "scene_key": rows["scene_key"].astype(str).to_numpy()[row_of],
        "agent_key": rows["agent_key"].astype(str).to_numpy()[row_of],
        "frame": (rows["last_frame"].to_numpy(dtype=float)[row_of].astype(np.int64)
                  + step_no * rows["frame_step"].to_numpy(np.int64)[row_of]),
        "step": step_no - 1,
    })
    found = wanted.merge(points, on=_POINT, how="inner")
    for row, part in found.groupby("row"):
        out[int(row)][part["step"].to_numpy()] = part[["x", "y"]].to_numpy()
    return out


def live_errors(rows: pd.DataFrame, dt: float, radius: float) -> pd.DataFrame:
    """One row per logged forecast whose whole future has arrived: the log's columns (without
    the point lists) plus ade/fde of the first (most likely) mode, min_ade over the K modes, and
    the fairness features (speed, heading change, neighbours in the request, served_at)."""
    keep = [c for c in COLUMNS if c not in ("observed", "predicted", "weights")]
    extra = ["ade", "fde", "min_ade", "speed", "heading_change", "neighbours", "served_at"]
    if rows.empty:
        return pd.DataFrame(columns=keep + extra)
    truth = true_futures(rows)
    done = [i for i, t in enumerate(truth) if len(t) and not np.isnan(t).any()]
    if not done:
        return pd.DataFrame(columns=keep + extra)
    scored = rows.iloc[done].reset_index(drop=True)
    gt = np.stack([truth[i] for i in done])  # (N, T, 2)
    first = np.stack([np.asarray(p, np.float64)[0] for p in scored["predicted"]])  # (N, T, 2)
    best = [M.best_of_k(np.asarray(p, np.float64)[None], t[None])[0][0]
            for p, t in zip(scored["predicted"], gt, strict=True)]
    obs = [np.asarray(o, np.float64).reshape(-1, 2) for o in scored["observed"]]
    motion = pd.concat([fairness.observed_motion(o[None], dt) for o in obs], ignore_index=True)
    everyone = rows.drop_duplicates(["request_id", "agent_key"])
    crowd = fairness.neighbours_within(
        np.stack([np.asarray(o, np.float64).reshape(-1, 2)[-1] for o in everyone["observed"]]),
        everyone["request_id"].to_numpy(), radius)
    lookup = dict(zip(zip(everyone["request_id"], everyone["agent_key"], strict=True), crowd,
                      strict=True))
    out = scored[keep].copy()
    out["ade"] = M.ade(first, gt)
    out["fde"] = M.fde(first, gt)
    out["min_ade"] = np.asarray(best, float)
    out["speed"] = motion["speed"].to_numpy()
    out["heading_change"] = motion["heading_change"].to_numpy()
    out["neighbours"] = [lookup[(r, a)] for r, a in zip(scored["request_id"],
                                                        scored["agent_key"], strict=True)]
    out["served_at"] = out["created_at"]
    return out


def error_over_time(errors: pd.DataFrame, metric: str = "ade",
                    freq: str | None = None) -> pd.DataFrame:
    """Per variant and time bin: windows, mean `metric` and a 95% normal confidence band
    (mean +- 1.96 standard errors over the bin's windows; no band for a single window)."""
    columns = ["variant", "time", "windows", "mean", "low", "high"]
    if errors.empty:
        return pd.DataFrame(columns=columns)
    freq = freq or bin_width(errors["created_at"])
    times = pd.to_datetime(errors["created_at"], utc=True).dt.floor(freq)
    grouped = errors.assign(time=times).groupby(["variant", "time"])[metric]
    table = grouped.agg(windows="size", mean="mean", std="std").reset_index()
    half = 1.96 * table["std"].fillna(0.0) / np.sqrt(table["windows"])
    table["low"], table["high"] = table["mean"] - half, table["mean"] + half
    return table[columns]


def bin_width(times: pd.Series) -> str:
    """A bin that gives roughly 12-100 points over the span of `times`."""
    span = pd.to_datetime(times, utc=True).max() - pd.to_datetime(times, utc=True).min()
    if span <= pd.Timedelta(hours=6):
        return "5min"
    if span <= pd.Timedelta(days=3):
        return "1h"
    return "1D"
