"""Operations: liveness, readiness (with degraded parts) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from serving.deps import StateDep
from serving.schemas import ReadyResponse

router = APIRouter(tags=["operations"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is up and its event loop answers."""
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=ReadyResponse,
    responses={503: {"model": ReadyResponse, "description": "no model loaded"}},
)
async def ready(state: StateDep) -> JSONResponse:
    """200 while the default variant has a model (status ready or degraded), else 503."""
    models = {
        v: {
            "loaded": (m := state.variants.get(v)) is not None,
            "version": m.version if m else None,
            "error": state.variants.errors.get(v),
        }
        for v in state.variants.uris
    }
    cache = await state.cache.check()
    database = state.log.state()
    registry = state.reloader.state()
    wanted = [v for v, w in state.router.weights().items() if w > 0]
    wanted += state.settings.shadow_variants
    degraded = [
        part
        for part, ok in (
            ("cache", cache["ok"]),
            ("database", database["ok"]),
            ("registry", registry["ok"]),
            ("models", all(models[v]["loaded"] for v in wanted)),
        )
        if not ok
    ]
    is_ready = bool(models[state.variants.default]["loaded"])
    status = "not_ready" if not is_ready else "degraded" if degraded else "ready"
    body = {
        "status": status,
        "degraded": degraded,
        "models": models,
        "cache": cache,
        "database": database,
        "registry": registry,
    }
    return JSONResponse(body, 200 if is_ready else 503)


@router.get(  # Response, not PlainTextResponse, so the error bodies stay JSON in the document
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(state: StateDep) -> Response:
    """Prometheus text format."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
