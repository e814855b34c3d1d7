"""The browser's side of the portal: visitors with their own cookie, websockets, agent webhooks.

This is the benchmarks' load generator, and it runs on the same 2 cores as the app it measures,
so it is built to cost little: ``bench.http1`` (a raw asyncio HTTP/1.1 client) and
``bench.websocket`` (a raw RFC 6455 client) on uvloop cost ~1 ms of CPU per whole flow in the
500-flow burst of ``bench.concurrent_flows``, where httpx and ``websockets`` cost ~22 ms (it
prints the load generator's CPU per flow next to the app's). Call ``settle_heap()`` before a
measured run.

It behaves like a browser where the app can tell: each visitor carries its own ``issuer_session``
cookie (one shared ``Client`` per server keeps no cookies; its keep-alive connections carry
every visitor's requests); ``GET /en`` with httpx's ``Accept: */*`` as before; ``POST /name``
as the page's script sends it — form fields with the page's CSRF token (also in ``X-CSRF-Token``),
``Accept: application/json``, the page's ``Origin`` — urlencoded by default (as the bench always
did, so figures stay comparable), or ``multipart/form-data`` as the script's ``FormData`` is
(``multipart=True``); a websocket with the page's ``Origin`` and cookie that offers
permessage-deflate as browsers do (the app declines it unless ``ISSUER_WS_COMPRESSION`` says
otherwise) and closes with the closing handshake. A ``GET`` that meets a kept-alive connection
the server has just closed is sent once more; a ``POST`` never is.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from bench import websocket
from bench.common import WEBHOOK_KEY
from bench.http1 import Client, Response, origin_of

SESSION_COOKIE = "issuer_session"
FORM = {"prename": "Ada", "surname": "Lovelace", "institution": "Analytical University"}
FINAL = frozenset({"accepted", "declined", "expired", "failed"})
STEPS = {"invited": 0, "connected": 1, "offered": 2, "accepted": 3}
SESSION_ID = re.compile(rb'data-session="([^"]+)"')
CSRF = re.compile(rb'data-csrf="([^"]+)"')
FRESH = b'data-fresh="1"'


def client(base_url: str, connections: int | None = None, timeout: float = 60.0) -> Client:
    """Keep-alive connections to one server for every visitor (it keeps no cookies)."""
    return Client(base_url, connections, timeout)


@dataclass
class Visitor:
    """One browser's issuance session: its id, CSRF token and ``issuer_session`` cookie;
    ``fresh`` while the page that started it has not opened its websocket yet (the page's
    script then asks for no read-back from the agent, ``?fresh=1``; reconnects do not)."""

    session_id: str
    csrf: str
    cookie: str
    fresh: bool = False


async def open_session(http: Client, path: str = "/en") -> Visitor:
    """``GET /en`` as a new browser: a new issuance session with its invitation."""
    response = await http.get(path, [("Accept", "*/*")])
    if response.status != 200:
        raise RuntimeError(f"GET {path} → {response.status}: {response.text[:200]}")
    return visitor_of(response)


def visitor_of(response: Response) -> Visitor:
    """The visitor a start page (``GET /en``) made: its session id, CSRF token and cookie."""
    session_id = SESSION_ID.search(response.body)
    csrf = CSRF.search(response.body)
    cookie = session_cookie(response)
    if not (session_id and csrf and cookie):
        raise RuntimeError("the start page has no session id, CSRF token or session cookie")
    fresh = FRESH in response.body
    return Visitor(session_id.group(1).decode(), csrf.group(1).decode(), cookie, fresh)


def session_cookie(response: Response) -> str | None:
    """``issuer_session=…`` from the answer's ``Set-Cookie``, if it sets one."""
    for value in response.header_list("set-cookie"):
        pair = value.split(";", 1)[0]
        if pair.startswith(f"{SESSION_COOKIE}="):
            return pair
    return None


def multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    """``fields`` as a browser's ``FormData`` body: ``(body, content type)`` (RFC 7578)."""
    boundary = f"----issuerbench{secrets.token_hex(8)}"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    body = "".join(parts) + f"--{boundary}--\r\n"
    return body.encode(), f"multipart/form-data; boundary={boundary}"


async def submit_name(http: Client, visitor: Visitor, multipart_form: bool = False) -> Any:
    """``POST /name`` like the page's script; returns the new snapshot (``offered``).

    A new session cookie in the answer replaces the visitor's, as in a browser."""
    fields = {**FORM, "csrf_token": visitor.csrf}
    if multipart_form:
        body, content_type = multipart(fields)
    else:
        body, content_type = urlencode(fields).encode(), "application/x-www-form-urlencoded"
    headers = [
        ("Cookie", visitor.cookie),
        ("Accept", "application/json"),
        ("X-CSRF-Token", visitor.csrf),
        ("Origin", http.origin),
    ]
    response = await http.post("/name", body, content_type, headers)
    if response.status != 200:
        raise RuntimeError(f"POST /name → {response.status}: {response.text[:200]}")
    visitor.cookie = session_cookie(response) or visitor.cookie
    return response.json()


async def webhook(http: Client, topic: str, body: dict[str, Any]) -> None:
    """Post one ACA-Py event to the app as the agent does (``X-API-Key``, trailing slash)."""
    path = f"/webhooks/topic/{topic}/"
    data = json.dumps(body).encode()
    response = await http.post(path, data, "application/json", [("X-API-Key", WEBHOOK_KEY)])
    if response.status != 200:
        raise RuntimeError(f"webhook {topic} → {response.status}: {response.text[:200]}")


class LivePage:
    """A page's websocket and the snapshots it has received so far (state → arrival time)."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        self.ws = ws
        self.seen: dict[str, float] = {}

    async def reach(self, target: str, timeout: float = 30) -> float:
        """Wait until the session is at ``target`` or a later step.

        Returns the ``time.perf_counter()`` at which that snapshot arrived; raises if the session
        ended another way, the socket closed first, or nothing came within ``timeout`` seconds.
        """
        deadline = time.perf_counter() + timeout
        while True:
            reached = [t for s, t in self.seen.items() if STEPS.get(s, -1) >= STEPS[target]]
            if reached:
                return min(reached)
            ended = FINAL.intersection(self.seen)
            if ended:
                raise RuntimeError(f"session ended as {min(ended)}, wanted {target}")
            message = await self.ws.recv(max(0.0, deadline - time.perf_counter()))
            self.seen.setdefault(json.loads(message)["state"], time.perf_counter())

    async def close(self) -> None:
        """The closing handshake (answered already if the server closed first)."""
        await self.ws.close()


async def open_page(
    base_url: str, visitor: Visitor, timeout: float = 30, compression: str | None = "deflate"
) -> LivePage:
    """The page's websocket: same-origin ``Origin``, the visitor's cookie, no client pings, and
    ``?fresh=1`` on the first one of a page that started its session, as the page's script.

    Like browsers it offers permessage-deflate, unless ``compression`` is ``None``.
    """
    host, port, _ = origin_of(base_url)
    headers = [("Origin", f"http://{host}:{port}"), ("Cookie", visitor.cookie)]
    path = f"/ws/issuance/{visitor.session_id}" + ("?fresh=1" if visitor.fresh else "")
    visitor.fresh = False
    deflate = compression is not None
    ws = await websocket.connect(host, port, path, headers, deflate=deflate, timeout=timeout)
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


def settle_heap() -> None:
    """Before a measured burst: one collection, then everything this process made so far (the
    modules a benchmark imports: the app's, SQLAlchemy's, alembic's) frozen out of the garbage
    collector's reach (``gc.freeze()``), so the collections the flows trigger walk only the
    flows' own objects."""
    gc.collect()
    gc.freeze()
