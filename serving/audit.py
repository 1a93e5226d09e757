"""The admin audit trail (`admin_audit`): every admin action and every refused attempt.

A row says what (`action`, from the route: /v1/admin/cache/flush -> cache-flush), who (the
first 16 hex of the presented key's SHA-256, "-" without a key), the outcome (ok, failed,
denied) with its HTTP status, the request id and the client address. It is written before
the response is sent. A request refused as invalid (422) is not an action and leaves no row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import Self

from fastapi import Request

from serving.config import hash_api_key
from serving.db import write_audit
from serving.errors import status_for
from serving.state import ServingState
from trajectory.exceptions import DataError

ADMIN_PREFIX = "/v1/admin/"


def action_of(request: Request) -> str:
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    return path.removeprefix(ADMIN_PREFIX).strip("/").replace("/", "-")[:64] or "admin"


async def _write(state: ServingState, request: Request, key_hash: str, detail: dict[str, object],
                 outcome: str, status: int) -> None:
    client = request.client
    await asyncio.to_thread(
        write_audit, state.engine, key_hash, action_of(request), detail,
        outcome=outcome, status_code=status,
        request_id=getattr(request.state, "request_id", None),
        source=client.host if client else None,
    )


async def audit_denied(
    state: ServingState, request: Request, presented_key: str | None, status: int
) -> None:
    """A 401/403 on an admin route; nothing of the request but its key's fingerprint."""
    key_hash = hash_api_key(presented_key) if presented_key else "-"
    await _write(state, request, key_hash, {}, "denied", status)


class Audited:
    """`async with Audited(...) as audit:` around an admin action, after its validation.

    Ends with outcome ok, or failed with the status of the error raised (or the status set
    with `audit.fail(503)` for an answer the action returns itself)."""

    def __init__(self, state: ServingState, request: Request, key_hash: str,
                 detail: Mapping[str, object] | None = None) -> None:
        self.state, self.request, self.key_hash = state, request, key_hash
        self.detail: dict[str, object] = dict(detail or {})
        self.status = 200

    def fail(self, status: int) -> None:
        self.status = status

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, err: BaseException | None,
                        tb: TracebackType | None) -> None:
        if isinstance(err, DataError):
            return  # refused as invalid: not an action
        if err is not None:
            self.status = status_for(err) if isinstance(err, Exception) else 500
        outcome = "ok" if self.status < 400 else "failed"
        await _write(self.state, self.request, self.key_hash, self.detail, outcome, self.status)
