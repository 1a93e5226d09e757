"""Access to the dashboard: a key once at /login, then a signed session cookie.

A browser posts the key to /login; the key's SHA-256 digest must be an admin key of
SERVING_API_KEYS or a DASHBOARD_VIEWER_KEYS digest. The cookie (HttpOnly, SameSite=Strict)
holds the role and the first 16 hex of the digest, and is checked against the configured keys
on every request, so removing a key locks its sessions out at once. Scripts may send the key
in the X-API-Key header instead. Every other path answers 401 (or, for a page, redirects to
/login) without a valid session.
"""

from __future__ import annotations

import hashlib
import hmac
import html
from datetime import timedelta

from flask import Flask, Response, redirect, request, session

from dashboard.settings import DashboardSettings

OPEN_PATHS = ("/login", "/health")

_FORM = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Trajectory dashboard: sign in</title>
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto}}
input{{width:100%;padding:.5rem;margin:.5rem 0}}.err{{color:#b00020}}</style></head>
<body><h1>Trajectory dashboard</h1>
<p>Sign in with an admin API key of the prediction service or a dashboard viewer key.</p>
{error}<form method="post" action="{action}">
<label for="api-key">API key</label>
<input id="api-key" name="api_key" type="password" autocomplete="off" autofocus>
<button id="sign-in" type="submit">Sign in</button></form></body></html>"""


def role_of(settings: DashboardSettings, key: str | None) -> str | None:
    """The role a presented key opens the dashboard with, None for no or an unknown key."""
    if not key:
        return None
    digest = hashlib.sha256(key.encode()).hexdigest()
    for known, role in settings.roles().items():
        if hmac.compare_digest(known, digest):
            return role
    return None


def _session_role(settings: DashboardSettings) -> str | None:
    fingerprint, role = session.get("key"), session.get("role")
    if not isinstance(fingerprint, str) or not isinstance(role, str):
        return None
    current = {k[:16]: r for k, r in settings.roles().items()}
    return role if current.get(fingerprint) == role else None


def install_auth(server: Flask, settings: DashboardSettings, prefix: str = "/") -> None:
    """The login form, the session check before every request and the logout route."""
    server.secret_key = settings.signing_key()
    server.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_NAME="trajectory_dashboard",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_hours),
    )
    home = prefix.rstrip("/") + "/"

    @server.route("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @server.route("/login", methods=["GET", "POST"])
    def login() -> Response | str:
        if request.method == "POST":
            key = request.form.get("api_key", "")
            role = role_of(settings, key)
            if role is None:
                page = _FORM.format(error='<p class="err" id="login-error">Unknown key, or a key '
                                    'without the admin or viewer role.</p>', action="login")
                return Response(page, status=401, mimetype="text/html")
            session.clear()
            session.permanent = True
            session["key"] = hashlib.sha256(key.encode()).hexdigest()[:16]
            session["role"] = role
            return redirect(home)  # type: ignore[return-value]
        return _FORM.format(error="", action="login")

    @server.route("/logout")
    def logout() -> Response:
        session.clear()
        return redirect("login")  # type: ignore[return-value]

    @server.before_request
    def check() -> Response | None:
        if not settings.auth_required or request.path in OPEN_PATHS:
            return None
        if role_of(settings, request.headers.get("X-API-Key")) or _session_role(settings):
            return None
        if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
            return redirect("/login")  # type: ignore[return-value]
        return Response(html.escape("sign in at /login or send X-API-Key"), status=401)
