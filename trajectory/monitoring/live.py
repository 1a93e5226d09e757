"""Live accuracy: logged predictions joined to the ground truth that later data brought in.

A logged prediction names its scene and agent by keyed pseudonyms (`scene_key`, `agent_key`;
the service never stores the raw ids), its last observed frame and frame step; its ground truth
is the same agent's tracked positions at the next `T` steps of that scene. The tracks are
pseudonymised with the service's key (`trajectory.privacy.pseudonym`) and joined on
(scene_key, agent_key, frame); rows written under another key (`pseudonym_key_id`) cannot be
joined and are left out. Only rows whose every future frame has arrived are scored. The served inputs are rebuilt into windows with the
shared `make_windows`, neighbours from the same request, so drift features match training.
"""

from __future__ import annotations

import logging
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import Engine, MetaData, Table, select

from trajectory import metrics
from trajectory.data import schema as S
from trajectory.data.features import motion_features
from trajectory.data.windows import WindowSpec, make_windows
from trajectory.exceptions import DataError
from trajectory.monitoring.live_rule import cv_ade
from trajectory.privacy.pseudonym import Pseudonymiser

log = logging.getLogger(__name__)

LOG_TABLE = "predictions"
LOG_COLUMNS = [
    "request_id", "created_at", "routing_key_hash", "variant", "assignment", "shadow",
    "model_name", "model_version", "scene_key", "agent_key", "pseudonym_key_id", "last_frame",
    "frame_step", "observed", "predicted",
]
SCENE_KEY, AGENT_KEY = "scene_key", "agent_key"
GROUP = ["variant", "model_name", "model_version"]


def read_prediction_log(engine: Engine, start: datetime, end: datetime) -> pd.DataFrame:
    """Rows of the serving prediction log with start <= created_at < end (the table is owned by
    `serving.db`; it is reflected here so the domain package does not import the service)."""
    table = Table(LOG_TABLE, MetaData(), autoload_with=engine)
    query = (
        select(*(table.c[c] for c in LOG_COLUMNS))
        .where(table.c.created_at >= start, table.c.created_at < end)
        .order_by(table.c.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    log.info("prediction log %s .. %s: %d rows", start, end, len(rows))
    return pd.DataFrame([dict(r) for r in rows], columns=LOG_COLUMNS)


def pseudonymise_tracks(tracks: pd.DataFrame, pseudonyms: Pseudonymiser) -> pd.DataFrame:
    """Tracks with `scene_key` and `agent_key` (the log's pseudonyms) instead of raw ids."""
    pairs = tracks[[S.SCENE, S.AGENT]].drop_duplicates()
    scenes = pairs[S.SCENE].astype(str).to_numpy()
    agents = pairs[S.AGENT].to_numpy(np.int64)
    pairs = pairs.assign(**{
        SCENE_KEY: [pseudonyms.scene(s) for s in scenes],
        AGENT_KEY: [pseudonyms.agent(s, int(a)) for s, a in zip(scenes, agents, strict=True)],
    })
    keyed = tracks.merge(pairs, on=[S.SCENE, S.AGENT], how="left")
    return keyed.drop(columns=[S.SCENE, S.AGENT])


def live_errors(log_rows: pd.DataFrame, tracks: pd.DataFrame,
                pseudonyms: Pseudonymiser) -> pd.DataFrame:
    """Per logged prediction with a complete ground-truth future: ade/fde of the first (most
    likely) sample and min_ade/min_fde over all K; other log columns are kept. `tracks` have
    raw ids; they are pseudonymised with `pseudonyms`, the key the service logged with."""
    rows = log_rows[log_rows[SCENE_KEY].notna() & log_rows["last_frame"].notna()]
    other_key = rows["pseudonym_key_id"] != pseudonyms.key_id
    if other_key.any():
        log.warning("%d logged predictions carry another pseudonym key id than %s: not joined",
                    int(other_key.sum()), pseudonyms.key_id)
        rows = rows[~other_key]
    if rows.empty or tracks.empty:
        return _empty_errors(log_rows)
    pred = [np.asarray(p, np.float64) for p in rows["predicted"]]  # each (K, T, 2)
    horizon = np.array([p.shape[1] for p in pred])
    n = len(rows)
    row_of = np.repeat(np.arange(n), horizon)
    step_no = np.concatenate([np.arange(1, h + 1) for h in horizon])
    wanted = pd.DataFrame({
        "row": row_of,
        SCENE_KEY: rows[SCENE_KEY].astype(str).to_numpy()[row_of],
        AGENT_KEY: rows[AGENT_KEY].astype(str).to_numpy()[row_of],
        S.FRAME: (rows["last_frame"].to_numpy(np.int64)[row_of]
                  + step_no * rows["frame_step"].to_numpy(np.int64)[row_of]),
    })
    truth = pseudonymise_tracks(
        tracks[[S.SCENE, S.AGENT, S.FRAME, S.X, S.Y]].astype(
            {S.SCENE: str, S.AGENT: np.int64, S.FRAME: np.int64}
        ).drop_duplicates([S.SCENE, S.AGENT, S.FRAME]),
        pseudonyms,
    )
    found = wanted.merge(truth, on=[SCENE_KEY, AGENT_KEY, S.FRAME], how="left")
    complete = found.groupby("row")[S.X].count().to_numpy() == horizon
    xy = found[[S.X, S.Y]].to_numpy()
    bounds = np.concatenate([[0], np.cumsum(horizon)])
    out = []
    for i in np.flatnonzero(complete):
        gt = xy[bounds[i]:bounds[i + 1]][None]  # (1, T, 2)
        samples = pred[i][None]  # (1, K, T, 2)
        min_ade, min_fde = metrics.best_of_k(samples, gt)
        out.append((i, metrics.ade(samples[:, 0], gt)[0], metrics.fde(samples[:, 0], gt)[0],
                    min_ade[0], min_fde[0]))
    if not out:
        return _empty_errors(log_rows)
    idx, ade, fde, min_ade, min_fde = map(np.array, zip(*out))
    errors = rows.iloc[idx].drop(columns=["observed", "predicted"]).reset_index(drop=True)
    errors["ade"], errors["fde"] = ade.astype(float), fde.astype(float)
    errors["min_ade"], errors["min_fde"] = min_ade.astype(float), min_fde.astype(float)
    errors["cv_ade"] = _cv_ade(rows["observed"].iloc[idx], xy, bounds, idx)
    log.info("live errors: %d of %d logged predictions have their full future", len(errors), n)
    return errors


def _cv_ade(observed: pd.Series, xy: np.ndarray, bounds: np.ndarray, idx: np.ndarray) -> list[float]:
    """Constant velocity's ADE on each scored window (the like-with-like reference of
    `live_rule`): the last observed step repeated over the same future."""
    out = []
    for obs, i in zip(observed, idx, strict=True):
        points = np.asarray(obs, np.float64).reshape(-1, 2)
        gt = xy[bounds[i]:bounds[i + 1]]  # (T, 2)
        if len(points) < 2:
            out.append(float("nan"))
            continue
        out.append(float(cv_ade(points[None], gt[None])[0]))
    return out


def _empty_errors(log_rows: pd.DataFrame) -> pd.DataFrame:
    columns = [c for c in log_rows.columns if c not in ("observed", "predicted")]
    return pd.DataFrame(columns=[*columns, "ade", "fde", "min_ade", "min_fde", "cv_ade"])


def summarize_live(errors: pd.DataFrame) -> list[dict[str, object]]:
    """ADE/FDE per variant and model version: windows, routing keys and metric means."""
    if errors.empty:
        return []
    grouped = errors.groupby(GROUP, observed=True)
    table = grouped[["ade", "fde", "min_ade", "min_fde"]].mean()
    table["windows"] = grouped.size()
    table["keys"] = grouped["routing_key_hash"].nunique()
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in table.reset_index().to_dict("records")
    ]


def served_features(log_rows: pd.DataFrame, spec: WindowSpec) -> pd.DataFrame:
    """Motion features of what the service was given: each logged agent's last `obs_len`
    observed points, with the other agents of its request as neighbours.

    The log holds the points the model scored, which are `spec.dt` apart whatever step the
    request came at (the service resamples to the model's step before it logs), so speeds
    divide by the model's step, as the training features do.
    """
    tracks, steps = _request_tracks(log_rows)
    if tracks.empty:
        return pd.DataFrame(columns=S.FEATURE_COLUMNS)
    parts = []
    for step, scene_keys in steps.groupby(steps).groups.items():
        part = tracks[tracks[S.SCENE].isin(scene_keys)]
        windows = make_windows(part, spec, with_future=False, step=int(step))
        last = windows.start_frame + (spec.obs_len - 1) * int(step)
        ends = part.groupby([S.SCENE, S.AGENT])[S.FRAME].max()
        keep = last == ends.reindex(list(zip(windows.scene, windows.agent_id))).to_numpy()
        if keep.any():
            parts.append(motion_features(windows.obs[keep], windows.nbr[keep], spec.dt))
    if not parts:
        raise DataError(f"no logged input has the {spec.obs_len} observed points a window needs")
    return pd.concat(parts, ignore_index=True)


def _request_tracks(log_rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Logged observations as tracks, one pseudo-scene per request (its agents are each other's
    neighbours); -> tracks and each pseudo-scene's frame step. Shadow duplicates are dropped."""
    rows = log_rows.drop_duplicates(["request_id", AGENT_KEY])
    if rows.empty:
        return pd.DataFrame(columns=S.TRACK_COLUMNS), pd.Series(dtype=np.int64)
    observed = [np.asarray(o, np.float64).reshape(-1, 2) for o in rows["observed"]]
    length = np.array([len(o) for o in observed])
    step = rows["frame_step"].fillna(1).to_numpy(np.int64)
    last = rows["last_frame"].to_numpy(dtype=float)
    last = np.where(np.isnan(last), length - 1, last).astype(np.int64)  # no frame: relative
    offsets = np.concatenate([np.arange(n - 1, -1, -1) for n in length])
    row_of = np.repeat(np.arange(len(rows)), length)
    scene = rows["request_id"].astype(str).to_numpy()
    xy = np.concatenate(observed)
    tracks = pd.DataFrame({
        S.SCENE: scene[row_of],
        S.FRAME: last[row_of] - offsets * step[row_of],
        S.AGENT: pd.factorize(rows[AGENT_KEY])[0].astype(np.int64)[row_of],  # keys -> ints
        S.X: xy[:, 0],
        S.Y: xy[:, 1],
    })
    steps = pd.Series(step, index=scene).groupby(level=0).first()
    return tracks, steps
