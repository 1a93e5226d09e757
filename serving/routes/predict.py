"""POST /v1/predict: real-time prediction for the agents of one request.

The hot path takes the raw request: the body is validated by pydantic straight from the JSON
bytes and the key is checked by `deps.authenticate`, which saves FastAPI's per-parameter
dependency solving (about a millisecond a request). The OpenAPI schema still shows the body.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from serving.deps import authenticate, get_state
from serving.prediction import predict_request
from serving.schemas import PredictRequest, PredictResponse

router = APIRouter(tags=["predict"])

_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
    },
    "parameters": [
        {"name": "X-API-Key", "in": "header", "required": True, "schema": {"type": "string"}},
        {"name": "X-Client-Id", "in": "header", "required": False, "schema": {"type": "string"}},
    ],
}


@router.post(
    "/v1/predict",
    response_model=PredictResponse,
    responses={401: {}, 403: {}, 413: {}, 422: {}, 503: {}},
    openapi_extra=_BODY,
)
async def predict(request: Request) -> Response:
    """Future positions per agent (K samples with weights when k > 1), named by variant.

    The variant comes from X-Client-Id, else `routing_key`, else `scene`, else the first agent.
    """
    state = await get_state(request)
    authenticate(state.settings, request.headers.get("x-api-key"))
    try:
        body = PredictRequest.model_validate_json(await request.body())
    except ValidationError as err:
        raise RequestValidationError(err.errors(include_url=False)) from None
    client_id = request.headers.get("x-client-id")
    outcome = await predict_request(state, body, client_id, request.state.request_id)
    request.state.variant = outcome.variant
    return Response(
        outcome.body,
        media_type="application/json",
        headers={"X-Variant": outcome.variant, "X-Cache": "hit" if outcome.cached else "miss"},
    )
