"""Pure ASGI middleware: request ids, body size limits and per-route metrics.

Pure ASGI rather than `BaseHTTPMiddleware`: it adds no task per request and never buffers
bodies, which matters for latency and for streamed CSV uploads. `RequestIdMiddleware` wraps
the whole app, Starlette's error middleware included (see `main.ServingApp`), so that every
response, an unhandled error's 500 too, carries X-Request-Id.
"""

from __future__ import annotations

import re
import socket
import time
import uuid

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import PayloadTooLargeError
from serving.metrics import ServingMetrics

_SAFE_ID = re.compile(r"^[\w.-]{1,64}$")


class RequestIdMiddleware:
    """Sets `request.state.request_id` (the client's X-Request-Id when safe, else a new one)
    and puts it in the X-Request-Id header of every response, beside X-Served-By: the host
    name of the replica that answered (the container name in the compose stack)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.served_by = (b"x-served-by", socket.gethostname().encode("ascii", "replace"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header, self.served_by]
            await send(message)

        await self.app(scope, receive, send_with_id)


class ServingMiddleware:
    """Enforces size limits (413) and records metrics."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: ServingMetrics,
        max_body_bytes: int,
        max_csv_bytes: int,
    ) -> None:
        self.app, self.metrics = app, metrics
        self.max_body, self.max_csv = max_body_bytes, max_csv_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = dict(scope["headers"])
        state = scope.setdefault("state", {})
        is_upload = scope["method"] == "POST" and scope["path"].rstrip("/") == "/v1/batch"
        limit = self.max_csv if is_upload else self.max_body
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLargeError(f"request body over the limit of {limit} bytes")
            return message

        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        try:
            if declared > limit:
                detail = f"request body over the limit of {limit} bytes"
                request_id = state.get("request_id")
                body = {"error": "PayloadTooLargeError", "detail": detail, "request_id": request_id}
                await JSONResponse(body, 413)(scope, receive, send_wrapper)
            else:
                await self.app(scope, limited_receive, send_wrapper)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", "unmatched")
            variant = state.get("variant", "none")
            self.metrics.requests.labels(label, scope["method"], str(status)).inc()
            self.metrics.latency.labels(label, variant).observe(time.perf_counter() - start)
