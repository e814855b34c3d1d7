"""The few ASGI helpers the bench's agent stubs need, and a loopback server to run them.

The stubs are plain ASGI callables (no framework), served by hypercorn on uvloop in their own
process, so that they cost the 2-core machine as little CPU as possible and never share an event
loop with the app or the load they answer. Every stub also answers ``GET /_bench/stats`` and
``POST /_bench/config`` so a benchmark can read its request counters and change its timings.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


async def read_request(scope: Scope, receive: Receive) -> Request:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    query = dict(parse_qsl(scope.get("query_string", b"").decode()))
    return Request(scope["method"], scope["path"], query, b"".join(chunks))


async def send_json(send: Send, body: Any, status: int = 200) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def send_text(send: Send, text: str, status: int) -> None:
    payload = text.encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


@dataclass
class StubBase:
    """Request counting, added latency and the ``/_bench`` control routes shared by the stubs.

    ``latency`` (seconds) is added before every answer of the agent's own API, as a slow agent
    or a distant one would; the ``/_bench`` routes answer at once and are not counted.
    """

    latency: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        request = await read_request(scope, receive)
        if request.path == "/_bench/stats":
            await send_json(send, self.stats())
            return
        if request.path == "/_bench/config" and request.method == "POST":
            self.configure(**(request.json() or {}))
            await send_json(send, self.stats())
            return
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        status, body, route = await self.handle(request)
        self.counts[route] += 1
        if isinstance(body, str) and status >= 400:
            await send_text(send, body, status)
        else:
            await send_json(send, body, status)

    async def handle(self, request: Request) -> tuple[int, Any, str]:
        """Answer one agent call: ``(status, JSON body, route name for the counters)``."""
        raise NotImplementedError

    def configure(self, **settings: Any) -> None:
        if settings.pop("reset", False):
            self.counts.clear()
        for name, value in settings.items():
            if not hasattr(self, name):
                raise AttributeError(name)
            setattr(self, name, value)

    def stats(self) -> dict[str, Any]:
        return {"requests": dict(self.counts), "total": sum(self.counts.values())}


def serve(app: Any, port: int) -> None:
    """Serve ``app`` on ``127.0.0.1:port`` with uvloop until SIGTERM or SIGINT."""
    import uvloop
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.backlog = 4096
    config.keep_alive_timeout = 75
    config.graceful_timeout = 1

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await hypercorn_serve(app, config, shutdown_trigger=stop.wait)

    uvloop.run(main())
