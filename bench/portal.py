"""The browser's side of the portal: visitors with their own cookie, websockets, agent webhooks.

One ``httpx.AsyncClient`` per server serves every visitor: it never stores cookies, each
``Visitor`` carries its own (as separate browsers would), and its pool allows as many connections
as there are concurrent visitors.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.common import WEBHOOK_KEY

SESSION_COOKIE = "issuer_session"
FORM = {"prename": "Ada", "surname": "Lovelace", "institution": "Analytical University"}
FINAL = frozenset({"accepted", "declined", "expired", "failed"})
STEPS = {"invited": 0, "connected": 1, "offered": 2, "accepted": 3}


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


def client(base_url: str, connections: int = 100, timeout: float = 60.0) -> httpx.AsyncClient:
    """A loopback client that keeps no cookies (each visitor sends its own)."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    jar = http.cookiejar.CookieJar(policy=_NoCookies())
    return httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=timeout, cookies=jar, trust_env=False
    )


@dataclass
class Visitor:
    """One browser's issuance session: its id, CSRF token and ``issuer_session`` cookie."""

    session_id: str
    csrf: str
    cookie: str


async def open_session(http: httpx.AsyncClient, path: str = "/en") -> Visitor:
    """``GET /`` as a new browser: a new issuance session with its invitation."""
    response = await http.get(path)
    if response.status_code != 200:
        raise RuntimeError(f"GET {path} → {response.status_code}: {response.text[:200]}")
    return visitor_of(response)


def visitor_of(response: httpx.Response) -> Visitor:
    """The visitor a start page (``GET /``) made: its session id, CSRF token and cookie."""
    session_id = re.search(r'data-session="([^"]+)"', response.text)
    csrf = re.search(r'data-csrf="([^"]+)"', response.text)
    cookies = [c.split(";", 1)[0] for c in response.headers.get_list("set-cookie")]
    cookie = next((c for c in cookies if c.startswith(f"{SESSION_COOKIE}=")), None)
    if not (session_id and csrf and cookie):
        raise RuntimeError("the start page has no session id, CSRF token or session cookie")
    return Visitor(session_id.group(1), csrf.group(1), cookie)


async def submit_name(http: httpx.AsyncClient, visitor: Visitor) -> dict[str, Any]:
    """``POST /name`` like the page's script; returns the new snapshot (``offered``)."""
    response = await http.post(
        "/name",
        data={**FORM, "csrf_token": visitor.csrf},
        headers={"Cookie": visitor.cookie, "Accept": "application/json"},
    )
    if response.status_code != 200:
        raise RuntimeError(f"POST /name → {response.status_code}: {response.text[:200]}")
    return response.json()  # type: ignore[no-any-return]


async def webhook(http: httpx.AsyncClient, topic: str, body: dict[str, Any]) -> None:
    """Post one ACA-Py event to the app as the agent does (``X-API-Key``, trailing slash)."""
    response = await http.post(
        f"/webhooks/topic/{topic}/", json=body, headers={"X-API-Key": WEBHOOK_KEY}
    )
    if response.status_code != 200:
        raise RuntimeError(f"webhook {topic} → {response.status_code}: {response.text[:200]}")


class LivePage:
    """A page's websocket and the snapshots it has received so far (state → arrival time)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: dict[str, float] = {}

    async def reach(self, target: str, timeout: float = 30) -> float:
        """Wait until the session is at ``target`` or a later step.

        Returns the ``time.perf_counter()`` at which that snapshot arrived; raises if the session
        ended another way or nothing came within ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while True:
                reached = [t for s, t in self.seen.items() if STEPS.get(s, -1) >= STEPS[target]]
                if reached:
                    return min(reached)
                ended = FINAL.intersection(self.seen)
                if ended:
                    raise RuntimeError(f"session ended as {ended.pop()}, wanted {target}")
                state = json.loads(await self.ws.recv())["state"]
                self.seen.setdefault(state, time.perf_counter())

    async def close(self) -> None:
        await self.ws.close()


async def open_page(
    base_url: str, visitor: Visitor, timeout: float = 30, compression: str | None = "deflate"
) -> LivePage:
    """The page's websocket: same-origin ``Origin``, the visitor's cookie, no client pings.

    Like browsers it offers permessage-deflate, unless ``compression`` is ``None``.
    """
    host = base_url.split("://", 1)[1]
    ws = await connect(
        f"ws://{host}/ws/issuance/{visitor.session_id}",
        origin=f"http://{host}",  # type: ignore[arg-type]
        additional_headers={"Cookie": visitor.cookie},
        ping_interval=None,
        open_timeout=timeout,
        proxy=None,
        compression=compression,
    )
    return LivePage(ws)


async def close_all(pages: list[LivePage]) -> None:
    """Close websockets in bounded batches (a thousand closing handshakes at once is a burst)."""
    for start in range(0, len(pages), 200):
        batch = pages[start : start + 200]
        await asyncio.gather(*(page.close() for page in batch), return_exceptions=True)


async def bounded(limit: int, coroutines: list[Any]) -> list[Any]:
    """Run coroutines with at most ``limit`` at a time; exceptions are returned, not raised."""
    semaphore = asyncio.Semaphore(limit)

    async def one(coroutine: Any) -> Any:
        async with semaphore:
            return await coroutine

    return await asyncio.gather(*(one(c) for c in coroutines), return_exceptions=True)
