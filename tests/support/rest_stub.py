"""A local stand-in for the original portal's connect/issue REST API (CONTRACTS.md §1).

Serve ``RestStub().app`` with :class:`tests.support.servers.InProcessServer`; it runs in the
test's event loop, so tests flip its state directly and await its requests instead of sleeping:

- ``POST /connection/invitation`` → ``{"invitationUrl", "connectionId"}``
- ``GET /connection/{id}`` → a JSON string, ``"established"`` once :meth:`connect` was called
- ``POST /issue/process`` → ``{"processId"}``; bodies are kept in ``offers``
- ``GET /issue/process/{id}/state`` → a JSON string, ``"IN_PROGRESS"`` until :meth:`finish`
- ``GET /`` → 200 (the API has no health route; the adapter's readiness probe asks for ``/``)

:meth:`slow` holds every answer back (until :meth:`release`), ``failing`` answers 500, and
``counts`` counts requests per route (``"invitation"``, ``"connection"``, ``"offer"``,
``"state"``, ``"root"``) as they arrive, before any delay or failure.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from quart import Quart, Response, request

from issuer.issuance.agents.local import free_port
from tests.support.servers import InProcessServer

IN_PROGRESS = "IN_PROGRESS"


class RestStub:
    def __init__(self) -> None:
        self.app = Quart("rest_stub")
        self.connections: dict[str, str] = {}
        self.processes: dict[str, Any] = {}
        self.offers: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.url = ""
        self.delay = 0.0
        self.failing = False
        self._ids = itertools.count(1)
        self._released = asyncio.Event()
        self._arrived = asyncio.Condition()
        self._routes()

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[RestStub]:
        """Serve the API on a free loopback port (``url``) for the duration of the block."""
        async with InProcessServer(self.app, free_port()) as server:
            self.url = server.url
            try:
                yield self
            finally:
                self.release()  # let held-back requests finish before the server stops

    # --- what tests call -----------------------------------------------------------------

    def connect(self, connection_id: str) -> None:
        """The wallet scanned the code: the connection is ``established`` from now on."""
        self.connections[connection_id] = "established"

    def finish(self, process_id: str, state: Any) -> None:
        """What ``GET /issue/process/{process_id}/state`` answers from now on (any JSON)."""
        self.processes[process_id] = state

    def slow(self, seconds: float) -> None:
        """Hold every answer back for ``seconds`` (or until :meth:`release`)."""
        self._released.clear()
        self.delay = seconds

    def release(self) -> None:
        """Answer every request held back by ``delay`` now, and stop delaying."""
        self.delay = 0.0
        self._released.set()

    async def wait_for(self, condition: Callable[[Counter[str]], bool], timeout: float = 5) -> None:
        """Wait until ``condition(counts)`` holds (checked as each request arrives)."""
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: condition(self.counts)), timeout)

    # --- the API ---------------------------------------------------------------------------

    def _routes(self) -> None:
        app = self.app

        @app.before_request
        async def count_delay_fail() -> Response | None:
            route = request.endpoint or "unknown"
            async with self._arrived:
                self.counts[route] += 1
                self._arrived.notify_all()
            if self.delay > 0:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._released.wait(), self.delay)
            if self.failing:
                return Response("Internal Server Error", status=500, content_type="text/plain")
            return None

        @app.get("/", endpoint="root")
        async def root() -> Response:
            return json_response("ok")

        @app.post("/connection/invitation", endpoint="invitation")
        async def invitation() -> Response:
            connection_id = f"conn-{next(self._ids)}"
            self.connections[connection_id] = "invited"
            url = f"https://agent.example/invitation?c_i={connection_id}"
            return json_response({"invitationUrl": url, "connectionId": connection_id})

        @app.get("/connection/<connection_id>", endpoint="connection")
        async def connection(connection_id: str) -> Response:
            if connection_id not in self.connections:
                return json_response("not found", 404)
            return json_response(self.connections[connection_id])

        @app.post("/issue/process", endpoint="offer")
        async def offer() -> Response:
            body = await request.get_json()
            self.offers.append(body)
            process_id = f"proc-{next(self._ids)}"
            self.processes[process_id] = IN_PROGRESS
            return json_response({"processId": process_id})

        @app.get("/issue/process/<process_id>/state", endpoint="state")
        async def state(process_id: str) -> Response:
            if process_id not in self.processes:
                return json_response("not found", 404)
            return json_response(self.processes[process_id])


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")
