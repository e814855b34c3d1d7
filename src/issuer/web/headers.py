"""Response headers every answer carries: request id, CSP and the other browser protections."""

from __future__ import annotations

import re
import secrets

from quart import Quart, Response, has_request_context, request, websocket

from issuer.logs import request_id

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# No 'unsafe-inline', no '*': scripts and styles come from our own static files only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def register_web_hooks(app: Quart, *, secure: bool) -> None:
    """``secure``: the app is reached over HTTPS (everywhere but development): send HSTS."""

    @app.before_request
    @app.before_websocket
    async def tag_request() -> None:
        headers = request.headers if has_request_context() else websocket.headers
        given = headers.get("X-Request-ID", "")
        request_id.set(given if REQUEST_ID.match(given) else secrets.token_hex(8))

    @app.after_request
    async def security_headers(response: Response) -> Response:
        headers = response.headers
        headers["X-Request-ID"] = request_id.get()
        headers.setdefault("Content-Security-Policy", CSP)
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "DENY"
        headers.setdefault("Referrer-Policy", "same-origin")
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
        if secure:
            headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
        return response
