"""Admin endpoints (admin key; every call written to the audit table first)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from serving.config import check_weights
from serving.db import write_audit
from serving.deps import AdminCaller, StateDep
from serving.errors import RequestError
from serving.routing import Router
from serving.schemas import ReloadResponse, WeightsUpdate

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post("/reload", response_model=ReloadResponse)
async def reload_models(state: StateDep, caller: AdminCaller) -> ReloadResponse:
    """Reload every variant now (from the registry, even if no alias moved)."""
    await asyncio.to_thread(write_audit, state.engine, caller.key_hash, "reload", {})
    return ReloadResponse(outcome=await state.reloader.refresh(force=True))


@router.put("/ab-weights", response_model=WeightsUpdate)
async def set_weights(body: WeightsUpdate, state: StateDep, caller: AdminCaller) -> WeightsUpdate:
    """Change this replica's A/B shares; keys move only between ranges that change owner.

    Replicas do not share this change: set SERVING_AB_WEIGHTS for a fleet-wide change.
    """
    unknown = sorted(set(body.weights) - set(state.variants.uris))
    if unknown:
        raise RequestError("weights", f"unknown variant(s) {unknown}")
    try:
        check_weights(body.weights)
    except ValueError as err:
        raise RequestError("weights", str(err)) from None
    detail = {"before": state.router.weights(), "after": body.weights}
    await asyncio.to_thread(write_audit, state.engine, caller.key_hash, "ab-weights", detail)
    state.router = Router.from_weights(state.settings.ab_salt, state.router.order, body.weights)
    return WeightsUpdate(weights=state.router.weights())
