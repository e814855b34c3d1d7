"""Synchroniser-token CSRF protection for cookie-authenticated form posts (ASVS 3.5.1)."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import MutableMapping
from typing import Any

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"


def csrf_token(session: MutableMapping[str, Any]) -> str:
    """The token bound to this cookie session, created on first use (256 bits)."""
    token = session.get(FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[FIELD] = token
    return token


def csrf_valid(session: MutableMapping[str, Any], submitted: str | None) -> bool:
    expected = session.get(FIELD)
    return bool(expected and submitted) and hmac.compare_digest(str(expected), str(submitted))
