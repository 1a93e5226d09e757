"""FastAPI dependencies, declared once as `Annotated` aliases: the state and the caller's role.

Keys arrive in the `X-API-Key` header and are compared by SHA-256 digest with the configured
digests. With SERVING_AUTH_REQUIRED=false the predict endpoints are open; admin endpoints
always need an admin key. Dependencies are `async def`: FastAPI would run plain functions in
its thread pool, a thread hop per request for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from serving.audit import audit_denied
from serving.config import Role, ServingSettings, hash_api_key
from serving.errors import AuthError, ForbiddenError, status_for
from serving.state import ServingState


async def get_state(request: Request) -> ServingState:
    state: ServingState = request.app.state.serving
    return state


StateDep = Annotated[ServingState, Depends(get_state)]


@dataclass(frozen=True)
class Caller:
    key_hash: str  # "anonymous" when auth is off
    role: Role | None


def authenticate(settings: ServingSettings, x_api_key: str | None) -> Caller:
    """The caller behind a key; raises AuthError (401) for a missing or unknown key."""
    if x_api_key is None:
        if not settings.auth_required:
            return Caller("anonymous", None)
        raise AuthError("missing API key: send it in the X-API-Key header")
    digest = hash_api_key(x_api_key)
    role = settings.api_keys.get(digest)
    if role is None:
        raise AuthError("invalid API key")
    return Caller(digest, role)


async def _caller(state: StateDep, x_api_key: Annotated[str | None, Header()] = None) -> Caller:
    return authenticate(state.settings, x_api_key)


def ensure_admin(caller: Caller, action: str = "this endpoint") -> None:
    """AuthError (401) without a key, ForbiddenError (403) for a key of another role."""
    if caller.role is None:
        raise AuthError(f"{action} needs an admin API key in the X-API-Key header")
    if caller.role is not Role.admin:
        raise ForbiddenError(f"{action} needs the admin role; the key has role {caller.role}")


async def require_admin(
    state: StateDep, request: Request, x_api_key: Annotated[str | None, Header()] = None
) -> Caller:
    """The admin caller; a refused attempt (401/403) is written to the admin audit first."""
    try:
        caller = authenticate(state.settings, x_api_key)
        ensure_admin(caller)
    except AuthError as err:
        await audit_denied(state, request, x_api_key, status_for(err))
        raise
    return caller


PredictCaller = Annotated[Caller, Depends(_caller)]  # any valid key; admin implies predict
AdminCaller = Annotated[Caller, Depends(require_admin)]
