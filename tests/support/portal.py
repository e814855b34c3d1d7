"""Drive a served portal like a browser: start page, cookies, the live websocket, bounded waits."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import websockets
from quart import Quart
from sqlalchemy import text

from issuer.db import make_engine
from issuer.services import services_of

ORIGIN = "http://portal.test"
JSON = {"Accept": "application/json"}


async def open_session(client: httpx.AsyncClient, path: str = "/en") -> tuple[str, str]:
    """GET the start page like a browser; returns (session id, csrf token)."""
    response = await asyncio.wait_for(client.get(path), 10)
    assert response.status_code == 200, response.text
    session_id = re.search(r'data-session="([^"]+)"', response.text)
    csrf = re.search(r'data-csrf="([^"]+)"', response.text)
    assert session_id and csrf, response.text
    return session_id.group(1), csrf.group(1)


def name_form(csrf: str) -> dict[str, str]:
    return {"prename": "Ada", "surname": "Lovelace", "institution": "ETH", "csrf_token": csrf}


def cookie_header(client: httpx.AsyncClient) -> str:
    return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


@asynccontextmanager
async def live(port: int, session_id: str, cookie: str) -> AsyncIterator[Any]:
    """The page's websocket for ``session_id``, sent with the browser's cookie and origin."""
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/ws/issuance/{session_id}",
        origin=ORIGIN,  # type: ignore[arg-type]
        additional_headers={"Cookie": cookie},
        open_timeout=10,
        close_timeout=2,
    ) as ws:
        yield ws


async def next_snapshot(ws: Any, timeout: float = 10) -> dict[str, Any]:
    """The next pushed snapshot; fails the test if none arrives within ``timeout``."""
    try:
        return json.loads(await asyncio.wait_for(ws.recv(), timeout))  # type: ignore[no-any-return]
    except TimeoutError:
        raise AssertionError(f"no websocket message within {timeout}s") from None


async def next_state(ws: Any, timeout: float = 10) -> str:
    return str((await next_snapshot(ws, timeout))["state"])


async def wait_until(
    probe: Callable[[], Awaitable[Any]],
    *,
    timeout: float = 10,
    interval: float = 0.05,
    what: str = "the condition",
) -> Any:
    """Poll ``probe`` (for systems that push nothing to us) until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def stored(app: Quart, session_id: str) -> Any:
    row = await services_of(app).issuance.get(session_id)
    assert row is not None
    return row


async def delete_sessions(database_url: str) -> None:
    """Leave the shared test database empty for the next test.

    Call it after the app stopped. A task cancelled at shutdown inside a transaction (seen with
    the outbox dispatcher, cancelled right after a final transition woke it) can abandon an
    aiosqlite connection that keeps SQLite's write lock until the garbage collector finalises
    it; in production the process exits instead, here the next app shares the file.
    """
    gc.collect()
    engine = make_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM issuance_sessions"))
    finally:
        await engine.dispose()
