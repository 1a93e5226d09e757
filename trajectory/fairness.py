"""Performance and fairness slices: error by scene, crowd, speed, curvature, time and variant.

Pure functions of per-window errors and observed points: the dashboard's fairness card (live
windows of the prediction log) and the model card's bias section (a version scored on its test
split) call the same code, so the two can be compared cell by cell.

A group is flagged when its mean error is more than `flag_share` above the overall mean and it
holds at least `min_windows` windows; a smaller group is shown with its count but not judged,
as its mean is too noisy to call a bias. Bands are fixed, so cells stay comparable over time:

- crowd density: neighbours within the window radius at the last observed point;
- walking speed: mean observed speed (m/s); ETH's resampled `eth` scene lands in `fast`;
- path curvature: total absolute heading change over the observed path (degrees), counted
  only while the agent moves (a standing agent's heading is noise);
- time of day: the hour (UTC) the prediction was served; offline windows have none.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

SCENE, VARIANT = "scene", "variant"
CROWD, SPEED, CURVE, TIME = "crowd_density", "walking_speed", "path_curvature", "time_of_day"
SLICES = (SCENE, CROWD, SPEED, CURVE, TIME, VARIANT)
TABLE_COLUMNS = ["slice", "group", "windows", "ade", "fde", "ratio", "flagged", "judged"]

CROWD_BANDS = ((0, "alone"), (1, "1-2"), (3, "3-5"), (6, "6+"))  # lower bound, label
SPEED_BANDS = ((0.0, "standing <0.3"), (0.3, "slow 0.3-1.0"), (1.0, "normal 1.0-1.6"),
               (1.6, "fast >=1.6"))  # m/s
CURVE_BANDS = ((0.0, "straight <15°"), (15.0, "curving 15-45°"), (45.0, "turning >=45°"))
TIME_BANDS = ((0, "night 00-06"), (6, "morning 06-12"), (12, "afternoon 12-18"),
              (18, "evening 18-24"))
MOVING_SPEED = 0.1  # m/s: below it a step's heading is not counted


def observed_motion(obs: np.ndarray, dt: float) -> pd.DataFrame:
    """obs (N, T, 2) metres, `dt` seconds apart -> mean speed (m/s) and heading change (deg)."""
    obs = np.asarray(obs, np.float64)
    if obs.ndim != 3 or obs.shape[1] < 2:
        raise ValueError(f"obs must be (N, T>=2, 2), got {obs.shape}")
    vel = np.diff(obs, axis=1) / dt  # (N, T-1, 2)
    speed = np.linalg.norm(vel, axis=-1)  # (N, T-1)
    heading = np.arctan2(vel[..., 1], vel[..., 0])  # (N, T-1)
    turn = np.abs(np.angle(np.exp(1j * np.diff(heading, axis=1))))  # (N, T-2), wrapped
    moving = (speed[:, 1:] > MOVING_SPEED) & (speed[:, :-1] > MOVING_SPEED)
    turned = np.degrees(np.where(moving, turn, 0.0).sum(axis=1))
    return pd.DataFrame({"speed": speed.mean(axis=1), "heading_change": turned})


def neighbours_within(last: np.ndarray, groups: np.ndarray, radius: float) -> np.ndarray:
    """last (N, 2) positions, groups (N,) ids of who was observed together -> how many others
    of the same group stand within `radius` metres (the windows' neighbour rule)."""
    last = np.asarray(last, np.float64)
    out = np.zeros(len(last), np.int64)
    codes = pd.factorize(pd.Series(groups).astype(str))[0]
    for code in np.unique(codes):
        idx = np.flatnonzero(codes == code)
        d = np.linalg.norm(last[idx, None] - last[None, idx], axis=-1)  # (n, n)
        out[idx] = (d < radius).sum(axis=1) - 1
    return out


def _band(values: pd.Series, bands: Sequence[tuple[float, str]]) -> pd.Series:
    edges = [b for b, _ in bands]
    labels = [name for _, name in bands]
    codes = np.searchsorted(np.asarray(edges, float), values.to_numpy(float), side="right") - 1
    out = pd.Series(np.asarray(labels, dtype=object)[np.clip(codes, 0, len(labels) - 1)],
                    index=values.index)
    return out.where(values.notna())


def add_bands(frame: pd.DataFrame) -> pd.DataFrame:
    """Band columns from raw ones where present: `neighbours` -> crowd density, `speed` ->
    walking speed, `heading_change` -> path curvature, `served_at` (UTC) -> time of day."""
    out = frame.copy()
    if "neighbours" in out:
        out[CROWD] = _band(out["neighbours"].astype(float), CROWD_BANDS)
    if "speed" in out:
        out[SPEED] = _band(out["speed"].astype(float), SPEED_BANDS)
    if "heading_change" in out:
        out[CURVE] = _band(out["heading_change"].astype(float), CURVE_BANDS)
    if "served_at" in out:
        hours = pd.to_datetime(out["served_at"], utc=True).dt.hour.astype(float)
        out[TIME] = _band(hours, TIME_BANDS)
    return out


def slice_errors(
    frame: pd.DataFrame,
    slices: Sequence[str] = SLICES,
    *,
    flag_share: float = 0.2,
    min_windows: int = 10,
) -> pd.DataFrame:
    """One row per (slice, group) with windows, mean ade/fde, ratio of its ade to the overall
    and whether it is flagged; the first row is the overall. Slices missing from `frame` (or
    empty in it) are left out. Groups are in band order, scenes and variants by name."""
    if "ade" not in frame:
        raise ValueError(f"no 'ade' column to slice; have {list(frame.columns)}")
    frame = frame[frame["ade"].notna()]
    if frame.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    has_fde = "fde" in frame
    overall = float(frame["ade"].mean())
    rows = [("overall", "all", len(frame), overall,
             float(frame["fde"].mean()) if has_fde else np.nan, 1.0, False, True)]
    for name in slices:
        if name not in frame or frame[name].notna().sum() == 0:
            continue
        grouped = frame.groupby(frame[name].astype(str), sort=False)
        stats = grouped["ade"].agg(["size", "mean"])
        fde = grouped["fde"].mean() if has_fde else pd.Series(np.nan, index=stats.index)
        for group in _order(name, list(stats.index)):
            n, ade = int(stats.at[group, "size"]), float(stats.at[group, "mean"])
            ratio = ade / overall if overall > 0 else np.nan
            judged = n >= min_windows
            rows.append((name, group, n, ade, float(fde[group]), ratio,
                         bool(judged and ratio > 1 + flag_share), judged))
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _order(name: str, groups: list[str]) -> list[str]:
    bands = {CROWD: CROWD_BANDS, SPEED: SPEED_BANDS, CURVE: CURVE_BANDS, TIME: TIME_BANDS}
    if name in bands:
        rank = {label: i for i, (_, label) in enumerate(bands[name])}
        return sorted(groups, key=lambda g: rank.get(g, len(rank)))
    return sorted(groups)


def flagged(table: pd.DataFrame) -> pd.DataFrame:
    """The flagged rows of a `slice_errors` table."""
    return table[table["flagged"].astype(bool)]
