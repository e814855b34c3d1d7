"""The loopback HTTP/1.1 server the bench's agent stubs run on, and what they share.

The stubs (``bench.fake_acapy``, ``bench.fake_rest``) play agents that in production run on other
machines, yet here share 2 cores with the app they answer; served by hypercorn they cost ~5 ms
of CPU per call and webhook. This server is a raw asyncio ``Protocol`` on uvloop instead: it
parses a request with ``bytes.find`` and ``split`` (``bench.http1``'s framing: ``Content-Length``
or chunked bodies), answers each request on its connection in order (no pipelining needed:
httpx, requests and urllib send one at a time), keeps connections alive until the client closes
them or sends ``Connection: close``, and never reads more than one request ahead.

Every stub answers ``GET /_bench/stats`` (its counters) and ``POST /_bench/config`` (JSON
settings: its timings, ``{"reset": true}`` clears the counters) at once; every other request is
answered ``latency`` seconds after it arrived (``loop.call_later``, no task per request), as a
slow or distant agent would, and only then handled (a state change happens when the answer
leaves, as on an agent that does its work and then answers).
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from bench.http1 import CHUNKED, HEAD_END, MAX_HEAD, Head, ProtocolError, take_chunked


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    head: Head
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class StubBase:
    """Request counting, added latency and the ``/_bench`` control routes shared by the stubs.

    ``latency`` (seconds) is added before every answer of the agent's own API; the ``/_bench``
    routes answer at once and are not counted.
    """

    latency: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)

    def handle(self, request: Request) -> tuple[int, Any, str]:
        """Answer one agent call: ``(status, JSON body or error text, route name)``."""
        raise NotImplementedError

    def answer(self, request: Request) -> tuple[int, bytes, str]:
        """``(status, body, content type)`` of one request, counted."""
        if request.path == "/_bench/stats":
            return 200, json.dumps(self.stats()).encode(), "application/json"
        if request.path == "/_bench/config" and request.method == "POST":
            self.configure(**(request.json() or {}))
            return 200, json.dumps(self.stats()).encode(), "application/json"
        status, body, route = self.handle(request)
        self.counts[route] += 1
        if isinstance(body, str) and status >= 400:
            return status, body.encode(), "text/plain"
        return status, json.dumps(body).encode(), "application/json"

    def delay(self, request: Request) -> float:
        return 0.0 if request.path.startswith("/_bench/") else self.latency

    def configure(self, **settings: Any) -> None:
        if settings.pop("reset", False):
            self.counts.clear()
        for name, value in settings.items():
            if not hasattr(self, name):
                raise AttributeError(name)
            setattr(self, name, value)

    def stats(self) -> dict[str, Any]:
        return {"requests": dict(self.counts), "total": sum(self.counts.values())}


REASONS = {status.value: status.phrase for status in HTTPStatus}


def reason(status: int) -> str:
    return REASONS.get(status, "Unknown")


class _ServerConnection(asyncio.Protocol):
    """One client connection: requests parsed and answered one at a time, in order."""

    def __init__(self, stub: StubBase) -> None:
        self.stub = stub
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next()

    def eof_received(self) -> bool:
        self.closing = True
        return self.busy  # keep the transport open until the answer in progress is written

    def _next(self) -> None:
        try:
            request = self._request()
        except (ProtocolError, ValueError, UnicodeDecodeError) as exc:
            self.closing = True
            self._write(400, str(exc).encode(), "text/plain")
            return
        if request is None:
            return
        self.busy = True
        delay = self.stub.delay(request)
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._answer, request)
        else:
            self._answer(request)

    def _request(self) -> Request | None:
        end = self.buffer.find(HEAD_END)
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                raise ProtocolError("request head too long")
            return None
        head = Head(bytes(self.buffer[:end]))
        length = head.body_length(response=False)
        rest = self.buffer[end + 4 :]
        if length == CHUNKED:
            taken = take_chunked(rest)
            if taken is None:
                return None
            body, used = taken
        else:
            if len(rest) < length:
                return None
            body, used = bytes(rest[:length]), length
        del self.buffer[: end + 4 + used]
        method, target, _ = head.line.split(" ", 2)
        path, _, query = target.partition("?")
        if head.closes():
            self.closing = True
        return Request(method, path, dict(parse_qsl(query)) if query else {}, head, body)

    def _answer(self, request: Request) -> None:
        try:
            status, body, content_type = self.stub.answer(request)
        except Exception as exc:  # a stub's bug: answer 500 and say what
            status, body, content_type = 500, repr(exc).encode(), "text/plain"
        self._write(status, body, content_type)

    def _write(self, status: int, body: bytes, content_type: str) -> None:
        self.busy = False
        if self.transport is None or self.transport.is_closing():
            return
        close = "Connection: close\r\n" if self.closing else ""
        head = (
            f"HTTP/1.1 {status} {reason(status)}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{close}\r\n"
        )
        self.transport.write(head.encode() + body)
        if self.closing:
            self.transport.close()
        elif self.buffer:
            self._next()


async def serve_forever(stub: StubBase, port: int, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _ServerConnection(stub), "127.0.0.1", port, backlog=4096, reuse_address=True
    )
    async with server:
        await stop.wait()


def serve(stub: StubBase, port: int) -> None:
    """Serve ``stub`` on ``127.0.0.1:port`` with uvloop until SIGTERM or SIGINT."""
    import uvloop

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve_forever(stub, port, stop)

    uvloop.run(main())
