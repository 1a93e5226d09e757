"""One real-time prediction: route, look up the cache, predict, log, shadow-score.

The route handler calls `predict_request` and nothing else.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from typing import Any

import numpy as np

from serving.cache import cache_key
from serving.errors import NotReadyError, RequestError
from serving.inference import (
    CanonicalRequest,
    canonicalize,
    check_finite_outputs,
    check_limits,
)
from serving.predictions_log import Row
from serving.registry import ServedModel
from serving.schemas import PredictRequest
from serving.state import ServingState
from trajectory.data.resample import same_step
from trajectory.privacy.pseudonym import Pseudonymiser

Predictions = list[dict[str, Any]]


@dataclass(frozen=True)
class Scored:
    """Predictions as JSON (what is sent and cached) and, per agent, the part of its log row
    that the canonical request and the predictions fix (`agent_rows`, see `_agent_rows`)."""

    json: bytes
    hit: bool
    agent_rows: list[Row]


@dataclass(frozen=True)
class PredictOutcome:
    body: bytes  # the JSON response, ready to send
    variant: str
    cached: bool


def routing_key(req: PredictRequest, client_id: str | None) -> str:
    """X-Client-Id header, else the body's routing_key, else the scene, else the first agent."""
    if client_id:
        return f"client:{client_id}"
    if req.routing_key:
        return f"key:{req.routing_key}"
    if req.scene:
        return f"scene:{req.scene}"
    return f"agent:{req.agents[0].agent_id}"


def choose_model(
    state: ServingState, forced: str | None, key: str
) -> tuple[str, str, ServedModel]:
    """-> (variant, assignment, model); an unloaded variant falls back to the default one."""
    if forced is not None:
        variant, assignment = forced, "forced"
    else:
        variant, assignment = state.router.assign(key), "hash"
    model = state.variants.get(variant)
    if model is None:
        if forced is not None:
            raise NotReadyError(f"variant {variant!r} has no model loaded")
        variant, assignment = state.variants.default, "fallback"
        model = state.variants.get(variant)
    if model is None:
        raise NotReadyError("no model loaded yet; see /ready")
    return variant, assignment, model


def check_coordinates(req: PredictRequest, bound: float) -> None:
    """RequestError naming the first point with |x| or |y| over `bound`
    (settings.max_abs_coordinate): such values overflow the models' float32 into inf/NaN.
    One pass at C speed over every coordinate (numpy per agent costs more on small requests);
    the point is looked for only when there is one."""
    coordinates = chain.from_iterable(chain.from_iterable(a.points for a in req.agents))
    if max(map(abs, coordinates)) <= bound:
        return
    for i, agent in enumerate(req.agents):
        for j, point in enumerate(agent.points):
            if max(map(abs, point)) > bound:
                raise RequestError(
                    f"agents.{i}.points.{j}",
                    f"coordinate {max(map(abs, point)):.6g} m is beyond the limit of {bound:g} m",
                )


async def predict_request(
    state: ServingState, req: PredictRequest, client_id: str | None, request_id: str
) -> PredictOutcome:
    """Serve one request; logging and shadow scoring happen off the response path."""
    start = time.perf_counter()
    settings = state.settings
    check_limits(req, settings)
    check_coordinates(req, settings.max_abs_coordinate)
    key = routing_key(req, client_id)
    variant, assignment, model = choose_model(state, req.variant, key)
    canon = canonicalize(req, settings.cache_decimals, model.spec)  # at the model's dt
    scored = await score_request(state, model, canon)
    head = {
        "request_id": request_id,
        "variant": variant,
        "model": {"name": model.name, "version": model.version},
        "cached": scored.hit,
        "k": req.k,
        "dt": model.spec.dt,
    }
    body = json.dumps(head, separators=(",", ":"), allow_nan=False).encode()[:-1]
    body += b',"predictions":'
    body += scored.json + b"}"
    latency_ms = (time.perf_counter() - start) * 1000
    common = log_identity(state.pseudonyms, req.scene, client_id, key) | {
        "request_id": request_id,
        "frame_step": canon.frame_step,  # 1 when resampled: frames count model steps
    }
    agent_keys = [state.pseudonyms.agent(req.scene, int(a)) for a in canon.agent_ids]
    state.log.record(_rows(common, agent_keys, variant, assignment, canon, scored, latency_ms))
    state.metrics.predictions.labels(variant, "false").inc(len(canon.agent_ids))
    for shadow in settings.shadow_variants:
        shadow_model = state.variants.get(shadow)
        if shadow != variant and shadow_model is not None:
            shadow_canon = _at_step_of(shadow_model, model, req, canon, settings.cache_decimals)
            if shadow_canon is not None:
                state.spawn(
                    _shadow(state, shadow, shadow_model, shadow_canon, common, agent_keys)
                )
    return PredictOutcome(body=body, variant=variant, cached=scored.hit)


def _at_step_of(
    shadow: ServedModel,
    served: ServedModel,
    req: PredictRequest,
    canon: CanonicalRequest,
    decimals: int,
) -> CanonicalRequest | None:
    """The request at the shadow model's time step; None (not scored) when the shadow has
    another step and the request's points cannot be resampled to it."""
    if same_step(shadow.spec.dt, served.spec.dt):
        return canon
    try:
        return canonicalize(req, decimals, shadow.spec)
    except RequestError:
        return None


async def score_request(state: ServingState, model: ServedModel, canon: CanonicalRequest) -> Scored:
    """From the cache or the model. Cache values are `<model version>\\n<predictions JSON>`;
    the in-process level keeps them checked, with their log rows' fixed parts made
    (`CacheEntry.parsed`), so a hit there decodes and rounds nothing."""
    key = cache_key(model.name, model.version, canon.key_bytes())
    decimals = state.settings.position_decimals
    entry = await state.cache.get_entry(key)
    if entry is not None:
        if entry.parsed is not None:  # checked and made ready when stored or first hit
            preds_json, agent_rows = entry.parsed
            return Scored(preds_json, True, agent_rows)
        version, _, preds_json = entry.value.partition(b"\n")
        # belt and braces: the key has the version already; NaN/Infinity (written before
        # outputs were checked) would be invalid JSON, so such an entry is a miss
        finite = b"NaN" not in preds_json and b"Infinity" not in preds_json
        if version.decode() == model.version and finite:
            agent_rows = _agent_rows(model, canon, json.loads(preds_json), decimals)
            entry.parsed = (preds_json, agent_rows)
            return Scored(preds_json, True, agent_rows)
    traj, weights = await state.batcher.predict(model, canon)
    check_finite_outputs(canon.agent_ids, traj, weights)  # 422 naming the agent, not cached
    preds = format_predictions(canon.agent_ids, traj, weights, state.settings.output_decimals)
    # allow_nan=False: a non-finite number that slipped through fails here (500), never sent
    preds_json = json.dumps(preds, separators=(",", ":"), allow_nan=False).encode()
    value = model.version.encode() + b"\n" + preds_json
    agent_rows = _agent_rows(model, canon, preds, decimals)
    state.spawn(state.cache.set(key, value, (preds_json, agent_rows)))
    return Scored(preds_json, False, agent_rows)


def format_predictions(
    agent_ids: np.ndarray, traj: np.ndarray, weights: np.ndarray, decimals: int
) -> Predictions:
    """traj (A, K, T, 2), weights (A, K) -> JSON-ready dicts, one per agent."""
    traj_l = traj.astype(np.float64).round(decimals).tolist()
    weights_l = weights.astype(np.float64).round(6).tolist()
    k = traj.shape[1]
    return [
        {
            "agent_id": int(a),
            "points": t[0],
            "samples": t if k > 1 else None,
            "weights": w if k > 1 else None,
        }
        for a, t, w in zip(agent_ids, traj_l, weights_l, strict=True)
    ]


async def _shadow(
    state: ServingState,
    variant: str,
    model: ServedModel,
    canon: CanonicalRequest,
    common: dict[str, Any],
    agent_keys: list[str],
) -> None:
    """Score with a shadow variant and log it; the client never sees this."""
    start = time.perf_counter()
    scored = await score_request(state, model, canon)
    latency_ms = (time.perf_counter() - start) * 1000
    state.log.record(_rows(common, agent_keys, variant, "shadow", canon, scored, latency_ms))
    state.metrics.predictions.labels(variant, "true").inc(len(canon.agent_ids))


def log_identity(
    pseudonyms: Pseudonymiser, scene: str | None, client_id: str | None, key: str
) -> dict[str, Any]:
    """What a log row says of who and where: keyed pseudonyms only, never the raw values."""
    return {
        "routing_key_hash": pseudonyms.routing(key),
        "client_key": pseudonyms.client(client_id),
        "scene_key": pseudonyms.scene(scene),
        "pseudonym_key_id": pseudonyms.key_id,
    }


def _agent_rows(
    model: ServedModel, canon: CanonicalRequest, preds: Predictions, decimals: int | None
) -> list[Row]:
    """Per agent, what its log row takes from the model, the canonical request and the
    predictions: fixed by the cache key, so made once per cache entry. Positions rounded to
    `decimals` (SERVING_POSITION_DECIMALS, e.g. 1 = 0.1 m) when set, so the log keeps coarser
    tracks than the service sees. `last_frame` is not here: whether the client sent a frame
    is not part of the key."""
    return [
        {
            "model_name": model.name,
            "model_version": model.version,
            "k": canon.k,
            "observed": _coarse(canon.points[i], decimals),
            "predicted": _coarse(
                p["samples"] if p["samples"] is not None else [p["points"]], decimals
            ),
            "weights": p["weights"] if p["weights"] is not None else [1.0],
        }
        for i, p in enumerate(preds)
    ]


def _rows(
    common: dict[str, Any],
    agent_keys: list[str],
    variant: str,
    assignment: str,
    canon: CanonicalRequest,
    scored: Scored,
    latency_ms: float,
) -> list[Row]:
    """Log rows, one per agent: the request's part, then the agent's (`scored.agent_rows`,
    shared by every row of a cache entry and never changed)."""
    shared = common | {
        "created_at": datetime.now(UTC),
        "variant": variant,
        "assignment": assignment,
        "shadow": assignment == "shadow",
        "latency_ms": latency_ms,
        "cache_hit": scored.hit,
    }
    return [
        {
            **shared,
            **part,
            "agent_key": agent_keys[i],
            "last_frame": int(canon.last_frames[i]) if canon.frames_given[i] else None,
        }
        for i, part in enumerate(scored.agent_rows)
    ]


def _coarse(points: Any, decimals: int | None) -> Any:
    """Positions as JSON lists, rounded to `decimals` when set (None: as they are)."""
    if decimals is None:
        return points.tolist() if isinstance(points, np.ndarray) else points
    return np.round(np.asarray(points, np.float64), decimals).tolist()
