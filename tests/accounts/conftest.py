"""Helpers for the accounts tests: registering, logging in, forging tokens, reading the database.

Every test that uses the ``app``/``client``/``overrides`` fixtures runs on SQLite and on
PostgreSQL (see ``tests/conftest.py``). The Quart test client has no peer address: the app sees
``request.remote_addr == "<local>"`` unless a request passes ``scope_base={"client": (ip, port)}``
(see ``from_ip``).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jwt
import pytest
from quart import Quart
from quart.testing import QuartClient
from sqlalchemy import text

from issuer import create_app
from issuer.services import services_of
from tests.conftest import truncate

PASSWORD = "correct horse battery staple"
ERROR_KEYS = {"success", "error", "message", "details"}


@asynccontextmanager
async def running(
    overrides: dict[str, Any],
    *,
    clean: bool = True,
    with_agent: Any = None,
    clock: Any = None,
    **changes: Any,
) -> AsyncIterator[Quart]:
    """An app of its own (``changes`` override settings), started and stopped like a server.

    ``clean=False`` keeps the rows for the next app on the same database (a "restart");
    ``with_agent`` (an agent object) and ``clock`` go to ``create_app``.
    """
    app = create_app({**overrides, **changes}, agent=with_agent, clock=clock)
    async with app.test_app():
        try:
            yield app
        finally:
            if clean:
                await truncate(app)


class BrowserClient(QuartClient):
    """A test client speaking HTTPS, as browsers reach the app (its cookies are ``Secure``)."""

    async def open(self, path: str, **kwargs: Any) -> Any:  # type: ignore[override,unused-ignore]
        kwargs.setdefault("scheme", "https")
        return await super().open(path, **kwargs)


@pytest.fixture
def browser(app: Quart) -> BrowserClient:
    return BrowserClient(app)


def from_ip(ip: str) -> dict[str, Any]:
    """Request kwargs that make the request come from ``ip``."""
    return {"scope_base": {"client": (ip, 40000)}}


def bearer(token: str, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}"}


async def register(
    client: Any, username: str = "alice", password: str = PASSWORD, **extra: Any
) -> Any:
    return await client.post(
        "/register", json={"username": username, "password": password, **extra}
    )


async def login(client: Any, username: str = "alice", password: str = PASSWORD, **kw: Any) -> Any:
    return await client.post("/login", json={"username": username, "password": password}, **kw)


async def register_and_login(
    client: Any, username: str = "alice", password: str = PASSWORD
) -> dict[str, Any]:
    """Register (if needed) and log in; the JSON login body."""
    response = await register(client, username, password)
    assert response.status_code in (200, 409), await response.get_data(as_text=True)
    response = await login(client, username, password)
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await response.get_json()  # type: ignore[no-any-return]


async def assert_error(
    response: Any, status: int, message: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The one error shape: ``{"success": false, "error": code, "message": text, "details"?}``."""
    raw = await response.get_data(as_text=True)
    assert response.status_code == status, raw
    assert response.mimetype == "application/json", raw
    body = json.loads(raw)
    assert body["success"] is False, body
    assert isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["message"], str) and body["message"], body
    assert set(body) <= ERROR_KEYS, body
    if message is not None:
        assert body["message"] == message, body
    if code is not None:
        assert body["error"] == code, body
    return body  # type: ignore[no-any-return]


def claims_of(token: str) -> dict[str, Any]:
    """The claims of one of our tokens (already known to be genuine)."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def signing_key(app: Quart) -> bytes:
    key: bytes = services_of(app).tokens._key
    return key


def forge(
    app: Quart,
    claims: dict[str, Any],
    *,
    key: Any = None,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
) -> str:
    """A token with ``claims``, signed with our key unless ``key`` is given."""
    return jwt.encode(
        claims, signing_key(app) if key is None else key, algorithm=algorithm, headers=headers
    )


async def sql(app: Quart, statement: str, **params: Any) -> Any:
    """Run one statement in its own transaction; the result rows (or ``None``)."""
    async with services_of(app).db.engine.begin() as conn:
        result = await conn.execute(text(statement), params)
        return result.all() if result.returns_rows else None


async def stored_hash(app: Quart, username: str) -> str:
    rows = await sql(app, "SELECT password_hash FROM users WHERE username = :u", u=username)
    assert len(rows) == 1
    return str(rows[0][0])


async def one_time_link(app: Quart, client: Any, template: str) -> str:
    """The path of the newest link of ``template`` the outbox holds."""
    rows = await sql(app, "SELECT payload FROM outbox WHERE topic = :t ORDER BY id", t=template)
    payload = rows[-1][0]
    text = (payload if isinstance(payload, dict) else json.loads(payload))["text"]
    match = re.search(r"https?://[^/\s]+(/\S+)", text)
    assert match, text
    return match.group(1)
