"""Route-layer helpers: who is calling — an access token (``Bearer``, or ``Basic`` as 004's
clients sent it) or the browser's quart-auth cookie, both resolved to the same login session.

Cookie-authenticated requests that change state must carry the CSRF token (header
``X-CSRF-Token`` or form field ``csrf_token``, ASVS 3.5.1).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from quart import g, request, session
from quart_auth import current_user

from issuer.accounts.sessions import MISSING, Principal, refused
from issuer.errors import Forbidden
from issuer.lib.csrf import HEADER, csrf_valid
from issuer.web.bodies import FORM_TYPES
from issuer.web.context import services
from issuer.web.openapi import AUTH_ATTRIBUTE

MALFORMED = "Bearer token malformed."
CSRF_FAILED = "The form has expired; reload the page."
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
P = ParamSpec("P")
R = TypeVar("R")


def header_token() -> str | None:
    """The token in ``Authorization``; ``None`` when there is no header; refused when
    malformed."""
    raw = request.headers.get("Authorization")
    if raw is None:
        return None
    scheme, _, token = raw.strip().partition(" ")
    token = token.strip()
    if scheme.lower() not in ("bearer", "basic") or not token or " " in token:
        raise refused(MALFORMED, "malformed_token")
    return token


async def require_csrf() -> None:
    """Refuse a state-changing request whose CSRF token does not match the cookie session's."""
    form = await request.form if request.mimetype in FORM_TYPES else {}
    if not csrf_valid(session, request.headers.get(HEADER) or form.get("csrf_token")):
        raise Forbidden(CSRF_FAILED, code="csrf_failed")


async def principal(*, allow_cookie: bool = True) -> Principal:
    """Resolve the caller once per request (cached on ``g``); refused if nobody is logged in."""
    cached: Principal | None = g.get("principal")
    if cached is not None:
        return cached
    sessions = services().sessions
    token = header_token()
    if token is not None:
        found = await sessions.resolve_token(token)
    elif allow_cookie and current_user.auth_id:
        found = await sessions.resolve_session(current_user.auth_id)
        if request.method not in SAFE_METHODS:
            await require_csrf()
    else:
        raise refused(MISSING, "token_missing")
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

        # The OpenAPI document lists the credentials the route takes.
        setattr(wrapper, AUTH_ATTRIBUTE, "login" if allow_cookie else "token")
        return wrapper

    return decorate


# Route decorators: resolve the caller before the view runs (``g.principal``), or 401.
login_required = _requiring(allow_cookie=True)  # an access token or the browser cookie
token_required = _requiring(allow_cookie=False)  # an access token only (API routes)


def token_optional(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """An access token is optional (it changes what the route does, e.g. links): when
    ``Authorization`` is sent it is resolved before the body is read, and a bad one is 401."""

    @wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if header_token() is not None:
            await principal(allow_cookie=False)
        return await func(*args, **kwargs)

    setattr(wrapper, AUTH_ATTRIBUTE, "optional_token")
    return wrapper
