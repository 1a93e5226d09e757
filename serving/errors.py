"""The one mapping from exceptions to HTTP responses, and the service's own error classes.

Serving errors extend the project tree (`trajectory.exceptions`):

    TrajectoryError
    ├── DataError
    │   └── RequestError            a request field is invalid (422), names field and reason
    │       └── NonFiniteOutputError  the model gave a non-finite forecast for an agent (422)
    ├── AuthError                   no or unknown API key (401)
    │   └── ForbiddenError          the key lacks the role (403)
    ├── PayloadTooLargeError        body or CSV over its limit (413)
    ├── NotFoundError               unknown batch job or result not ready (404 / 409)
    ├── NotReadyError               no model loaded for the request (503)
    ├── DatabaseUnavailable         the prediction log cannot take rows now (never sent)
    └── AlreadyImported             a spill file was replayed before (never sent)

Clients get `{"error": <kind>, "detail": <message>, "request_id": ...}` (`schemas.ErrorBody`,
declared for every route by `documented`); never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.schemas import ErrorBody
from trajectory.exceptions import (
    ConfigError,
    DataError,
    ModelError,
    TrackingError,
    TrajectoryError,
)

log = logging.getLogger(__name__)


class RequestError(DataError):
    """A request field is invalid; `field` is its dotted path."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


class AuthError(TrajectoryError):
    """Missing or unknown API key."""


class ForbiddenError(AuthError):
    """The API key is valid but lacks the role the endpoint needs."""


class PayloadTooLargeError(TrajectoryError):
    """The body or uploaded CSV is over its configured limit."""


class NotFoundError(TrajectoryError):
    """An unknown batch job, or a result asked for before it exists."""

    def __init__(self, message: str, status: int = 404) -> None:
        super().__init__(message)
        self.status = status


class NotReadyError(TrajectoryError):
    """No model is loaded that could serve the request."""


STATUS: dict[type[Exception], int] = {
    ForbiddenError: 403,
    AuthError: 401,
    PayloadTooLargeError: 413,
    NotReadyError: 503,
    TrackingError: 503,
    DataError: 422,
    ModelError: 500,
    ConfigError: 500,
    TrajectoryError: 500,
}


ANY_ROUTE = (413, 422, 500)  # body over the limit, invalid request, a bug
WITH_KEY = (401, 403)  # routes that take an API key


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for error statuses, each with the one error body."""
    return {status: {"model": ErrorBody} for status in statuses}


def status_for(err: Exception) -> int:
    """The HTTP status of an error: the entry of its nearest class in `STATUS`."""
    if isinstance(err, NotFoundError):
        return err.status
    for cls in type(err).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _body(
    request: Request,
    kind: str,
    detail: object,
    status: int,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "APIKey"
    return JSONResponse(
        {"error": kind, "detail": detail, "request_id": request_id}, status, headers=headers
    )


async def _project_error(request: Request, err: Exception) -> JSONResponse:
    status = status_for(err)
    detail: object = str(err)
    if status == 422:  # the same shape as pydantic's validation errors
        detail = [{"field": getattr(err, "field", "body"), "reason": getattr(err, "reason", detail)}]
    elif status >= 500 and not isinstance(err, NotReadyError | TrackingError):
        log.error("request failed: %s", err, exc_info=err)
        detail = "internal error"
    return _body(request, type(err).__name__, detail, status)


async def _validation_error(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, RequestValidationError)
    details = [
        {
            "field": "body"
            if e["type"] == "json_invalid"
            else ".".join(str(p) for p in e["loc"] if p != "body") or "body",
            "reason": e["msg"],
        }
        for e in err.errors()
    ]
    return _body(request, "RequestError", details[:20], 422)


async def _http_error(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, StarletteHTTPException)
    if err.status_code == 400:  # a body FastAPI or Starlette could not parse: as invalid JSON
        return _body(request, "RequestError", [{"field": "body", "reason": err.detail}], 422)
    return _body(request, "HTTPError", str(err.detail), err.status_code, err.headers)  # Allow


async def _unexpected(request: Request, err: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=err)
    return _body(request, "InternalError", "internal error", 500)


def install_error_handlers(app: FastAPI) -> None:
    """Register every handler; the only place where exceptions become HTTP statuses."""
    app.add_exception_handler(TrajectoryError, _project_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
