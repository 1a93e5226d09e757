"""Experiments: what is being compared since when, with which weights; and their estimates.

An experiment is one (champion version, challenger version, weights) combination, recorded in
the serving database's `experiments` table (owned by `serving.db`, reflected here): the admin
`ab-weights` route writes a row with the new weights (its versions left empty), and the
evaluation job opens a row when the versions it sees served differ from the open experiment's
(an alias moved), carrying the weights over, or fills in the versions of a fresh admin row.
Without any row the weights are the configured ones (SERVING_AB_WEIGHTS; the service's default
sends every key to the first variant, i.e. no experiment). The A/B test accumulates every log
row since the experiment's start, so each hourly look sees the whole experiment.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, MetaData, Table, insert, inspect, select, update

from trajectory.monitoring.ab import KEY
from trajectory.monitoring.sequential import (
    Estimate,
    paired_estimate,
    unpaired_estimate,
)
from trajectory.monitoring.sequential import cuped_sums as _cuped

log = logging.getLogger(__name__)

TABLE = "experiments"
PAIR = ["request_id", "agent_key"]


@dataclass(frozen=True)
class Experiment:
    """The experiment the evaluation window belongs to; `recorded` is False when the database
    has no experiments table (then nothing may be promoted: the weights are not on record)."""

    id: str
    started_at: datetime
    weights: dict[str, float]
    versions: dict[str, str]
    recorded: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def served_versions(rows: pd.DataFrame) -> dict[str, str]:
    """variant -> model version of its latest non-shadow log row."""
    served = rows[~rows["shadow"].astype(bool)]
    if served.empty:
        return {}
    latest = served.sort_values("created_at").groupby("variant")["model_version"].last()
    return {str(k): str(v) for k, v in latest.items()}


def current_experiment(engine: Engine, rows: pd.DataFrame, default_weights: dict[str, float],
                       now: datetime) -> Experiment:
    """The open experiment, opened or completed here when the served versions changed."""
    versions = served_versions(rows)
    if not inspect(engine).has_table(TABLE):
        log.warning("no %s table: A/B decisions limited to this window, promotion off", TABLE)
        start = rows["created_at"].min() if len(rows) else now
        return Experiment("unrecorded", start, default_weights, versions, recorded=False)
    table = Table(TABLE, MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        last = conn.execute(select(table).order_by(table.c.started_at.desc(), table.c.id.desc())
                            .limit(1)).mappings().first()
        if last is not None and not last["versions"] and versions:
            conn.execute(update(table).where(table.c.id == last["id"]).values(versions=versions))
            return Experiment(last["id"], _aware(last["started_at"]), dict(last["weights"]),
                              versions)
        if last is not None and all(last["versions"].get(v) == m for v, m in versions.items()):
            return Experiment(last["id"], _aware(last["started_at"]), dict(last["weights"]),
                              dict(last["versions"]))
        weights = dict(last["weights"]) if last is not None else default_weights
        start = _first_seen(rows, versions, last["versions"] if last is not None else {}, now)
        new = Experiment(uuid.uuid4().hex, start, weights, versions)
        conn.execute(insert(table), [{"id": new.id, "started_at": new.started_at,
                                      "weights": weights, "versions": versions,
                                      "source": "evaluation"}])
    log.info("experiment %s opened at %s: %s, weights %s", new.id, start, versions, weights)
    return new


def _first_seen(rows: pd.DataFrame, versions: dict[str, str], before: dict[str, str],
                now: datetime) -> datetime:
    """When the newest of the changed versions first appeared in the rows."""
    changed = [(v, m) for v, m in versions.items() if before.get(v) != m]
    times = [rows.loc[(rows["variant"] == v) & (rows["model_version"].astype(str) == m),
                      "created_at"].min() for v, m in changed]
    times = [t for t in times if pd.notna(t)]
    return _aware(max(times)) if times else now


def _aware(value: Any) -> datetime:
    ts = pd.Timestamp(value)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts).to_pydatetime()


def key_sums(errors: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per routing key: keys, error sums and window counts."""
    grouped = errors.groupby(KEY, observed=True)[metric].agg(["sum", "size"])
    return (grouped.index.to_numpy(), grouped["sum"].to_numpy(float),
            grouped["size"].to_numpy(float))


def pre_means(pre: pd.DataFrame, metric: str, keys: np.ndarray) -> np.ndarray:
    """Each key's mean error before the experiment (NaN when it was not seen)."""
    if pre.empty:
        return np.full(len(keys), np.nan)
    means = pre.groupby(KEY, observed=True)[metric].mean()
    return means.reindex(keys).to_numpy(float)


def estimate(errors: pd.DataFrame, a: tuple[str, str], b: tuple[str, str], metric: str,
             pre: pd.DataFrame | None = None, min_pairs: int = 2) -> Estimate | None:
    """b - a, where a and b are (column, value) selections (variant or model_version).

    Paired when both were scored on the same request and agent (shadow scoring) for at least
    `min_pairs` keys; else the hash-assigned served rows of each arm, CUPED-adjusted by each
    key's pre-experiment error when `pre` is given. None without 2 keys per arm."""
    rows_a = errors[errors[a[0]].astype(str) == a[1]]
    rows_b = errors[errors[b[0]].astype(str) == b[1]]
    served_a = rows_a[~rows_a["shadow"].astype(bool)]
    pairs = served_a.merge(rows_b[[*PAIR, metric]], on=PAIR, suffixes=("", "_b"))
    served_b = rows_b[~rows_b["shadow"].astype(bool)]
    pairs = pd.concat([pairs, served_b.merge(rows_a[[*PAIR, metric]], on=PAIR,
                                             suffixes=("_b", ""))])
    if pairs[KEY].nunique() >= min_pairs:
        pairs = pairs.assign(_d=pairs[f"{metric}_b"] - pairs[metric])
        _, d_sums, counts = key_sums(pairs, "_d")
        _, a_sums, _ = key_sums(pairs, metric)
        return paired_estimate(d_sums, counts, a_sums)
    arms = [r[(~r["shadow"].astype(bool)) & (r["assignment"] == "hash")] for r in (rows_a, rows_b)]
    if min(r[KEY].nunique() for r in arms) < 2:
        return None
    (keys_a, sums_a, n_a), (keys_b, sums_b, n_b) = (key_sums(r, metric) for r in arms)
    if pre is None or pre.empty:
        return unpaired_estimate(sums_a, n_a, sums_b, n_b)
    adjusted = _cuped(np.concatenate([sums_a, sums_b]), np.concatenate([n_a, n_b]),
                      pre_means(pre, metric, np.concatenate([keys_a, keys_b])))
    return unpaired_estimate(adjusted[:len(sums_a)], n_a, adjusted[len(sums_a):], n_b, "cuped")
