"""Who is calling: an access token (``Bearer``, or ``Basic`` as 004's clients sent it) or the
browser's quart-auth cookie, both resolved to the same login session row.

Cookie-authenticated requests that change state must carry the CSRF token (header
``X-CSRF-Token`` or form field ``csrf_token``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from quart import current_app, g, request, session
from quart_auth import current_user

from issuer.accounts.sessions import MISSING, Principal, Sessions, unauthorized
from issuer.errors import APIError
from issuer.lib.csrf import HEADER, csrf_valid

MALFORMED = "Bearer token malformed."
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
P = ParamSpec("P")
R = TypeVar("R")


def sessions() -> Sessions:
    return current_app.extensions["sessions"]  # type: ignore[no-any-return]


def header_token() -> str | None:
    """The token in ``Authorization``; ``None`` when there is no header; 401 when malformed."""
    raw = request.headers.get("Authorization")
    if raw is None:
        return None
    scheme, _, token = raw.strip().partition(" ")
    token = token.strip()
    if scheme.lower() not in ("bearer", "basic") or not token or " " in token:
        raise unauthorized(MALFORMED, "malformed_token")
    return token


async def principal(*, allow_cookie: bool = True) -> Principal:
    """Resolve the caller once per request (cached on ``g``); 401 if nobody is logged in."""
    cached: Principal | None = g.get("principal")
    if cached is not None:
        return cached
    token = header_token()
    if token is not None:
        found = await sessions().resolve_token(token)
        g.auth_method = "token"
    elif allow_cookie and current_user.auth_id:
        found = await sessions().resolve_session(current_user.auth_id)
        g.auth_method = "cookie"
        if request.method not in SAFE_METHODS:
            form = await request.form if request.mimetype.endswith("form-urlencoded") else {}
            submitted = request.headers.get(HEADER) or form.get("csrf_token")
            if not csrf_valid(session, submitted):
                raise APIError(403, "csrf_failed", "The form has expired; reload the page.")
    else:
        raise unauthorized(MISSING, "token_missing")
    g.principal = found
    return found


def _requiring(
    allow_cookie: bool,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    def decorate(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            await principal(allow_cookie=allow_cookie)
            return await func(*args, **kwargs)

        return wrapper

    return decorate


# Route decorators: resolve the caller before the view runs (``g.principal``), or 401.
login_required = _requiring(allow_cookie=True)  # an access token or the browser cookie
token_required = _requiring(allow_cookie=False)  # an access token only (API routes)
