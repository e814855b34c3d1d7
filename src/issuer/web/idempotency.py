"""``@idempotent``: a ``POST`` with side effects honours the ``Idempotency-Key`` header.

The caller is the authenticated user when there is one, else the client address. The request's
fingerprint is its method, path and body (JSON canonicalised, form fields sorted, so a retried
multipart post with a new boundary is still the same request). Answers of 5xx and 429 are not
kept: the claim is released so a retry does the work. Replayed answers carry
``Idempotent-Replayed: true``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field
from quart import Response, current_app, g, request
from quart_schema.validation import QUART_SCHEMA_HEADERS_ATTRIBUTE

from issuer.errors import Refused
from issuer.idempotency.service import StoredAnswer
from issuer.web.bodies import FORM_TYPES
from issuer.web.client import remote_ip
from issuer.web.context import services

HEADER = "Idempotency-Key"
KEY = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces
KEPT_HEADERS = ("Content-Type", "Location", "ETag")
F = TypeVar("F", bound=Callable[..., Any])


class IdempotencyHeaders(BaseModel):
    """Request headers of an idempotent ``POST``."""

    model_config = ConfigDict(populate_by_name=True)

    idempotency_key: str | None = Field(
        default=None,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description=(
            "A unique value (e.g. a UUID) per logical request: repeating it within 24 h with "
            "the same body returns the first answer without doing the work again; with "
            "another body it answers 422; while the first is running, 409."
        ),
    )


async def fingerprint() -> str:
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode())
    data: Any = await request.get_json(silent=True)
    if data is not None:
        digest.update(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
    elif request.mimetype in FORM_TYPES:
        form = await request.form
        digest.update(json.dumps(sorted(form.items(multi=True))).encode())
    else:
        digest.update(await request.get_data(as_text=False))  # type: ignore[arg-type]
    return digest.hexdigest()


def caller() -> str:
    principal = g.get("principal")
    if principal is not None:
        return f"user:{principal.user.entity_id.hex}"
    return f"ip:{remote_ip()}"


def idempotent(func: F) -> F:
    """Route decorator (after rate limit and auth, before request validation)."""

    @wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(HEADER)
        if key is None:
            return await func(*args, **kwargs)
        if not KEY.fullmatch(key):
            raise Refused(
                "Idempotency-Key must be 1–255 printable ASCII characters.",
                code="bad_idempotency_key",
            )
        store, who = services().idempotency, caller()
        stored = await store.begin(who, key, await fingerprint())
        if stored is not None:
            replay = Response(stored.body, status=stored.status, headers=stored.headers)
            replay.headers["Idempotent-Replayed"] = "true"
            return replay
        try:
            response = await current_app.make_response(await _answer(func, args, kwargs))
        except BaseException:
            await store.release(who, key)
            raise
        if response.status_code >= 500 or response.status_code == 429:
            await store.release(who, key)
            return response
        headers = {h: response.headers[h] for h in KEPT_HEADERS if h in response.headers}
        body = await cast(Response, response).get_data(as_text=False)
        answer = StoredAnswer(response.status_code, headers, body)
        await store.complete(who, key, answer)
        return response

    setattr(wrapper, QUART_SCHEMA_HEADERS_ATTRIBUTE, IdempotencyHeaders)
    return wrapper  # type: ignore[return-value]


async def _answer(func: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """The view's answer; a refusal becomes its error response so it is kept like any other."""
    try:
        return await func(*args, **kwargs)
    except Exception as exc:
        handled = await current_app.handle_user_exception(exc)
        if isinstance(handled, Exception):
            raise
        return handled
