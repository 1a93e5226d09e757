"""POST /v1/predict: real-time prediction for the agents of one request.

The hot path takes the raw request: the body is validated by pydantic straight from the JSON
bytes and the key is checked by `deps.authenticate`, which saves FastAPI's per-parameter
dependency solving (about a millisecond a request). The OpenAPI schema still shows the body.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from serving.deps import authenticate, ensure_admin, get_state
from serving.errors import documented
from serving.prediction import predict_request
from serving.schemas import PredictRequest, PredictResponse

router = APIRouter(tags=["predict"])


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its `$defs` written in place: in an OpenAPI document a
    `#/$defs/...` reference would be read from the document's root, where it does not exist."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: object) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:  # pydantic writes "#/$defs/<Model>"; models here do not recurse
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    out: dict[str, Any] = resolve(schema)
    return out


_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": inline_schema(PredictRequest)}},
    },
    "parameters": [
        {"name": "X-API-Key", "in": "header", "required": True, "schema": {"type": "string"}},
        {"name": "X-Client-Id", "in": "header", "required": False, "schema": {"type": "string"}},
    ],
}


@router.post(
    "/v1/predict",
    response_model=PredictResponse,
    responses=documented(503),
    openapi_extra=_BODY,
)
async def predict(request: Request) -> Response:
    """Future positions per agent (K samples with weights when k > 1), named by variant.

    The variant comes from X-Client-Id, else `routing_key`, else `scene`, else the first agent;
    `variant` forces one and needs an admin key (403 otherwise), so the A/B split holds.
    """
    state = await get_state(request)
    caller = authenticate(state.settings, request.headers.get("x-api-key"))
    try:
        body = PredictRequest.model_validate_json(await request.body())
    except ValidationError as err:
        raise RequestValidationError(err.errors(include_url=False)) from None
    if body.variant is not None:
        ensure_admin(caller, "forcing a variant")
    client_id = request.headers.get("x-client-id")
    outcome = await predict_request(state, body, client_id, request.state.request_id)
    request.state.variant = outcome.variant
    return Response(
        outcome.body,
        media_type="application/json",
        headers={"X-Variant": outcome.variant, "X-Cache": "hit" if outcome.cached else "miss"},
    )
