"""Realtime fixtures: the app served by hypercorn in the test's event loop (real websockets and
HTTP), its Pusher credentials, accounts with access tokens, and raw protocol clients."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import websockets
from quart import Quart

from issuer import create_app
from issuer.issuance.agents.local import free_port
from issuer.realtime.protocol import PusherApp
from issuer.services import services_of
from tests.accounts.conftest import PASSWORD
from tests.conftest import truncate
from tests.support.servers import InProcessServer


@dataclass
class Served:
    app: Quart
    port: int
    http: httpx.AsyncClient

    @property
    def pusher(self) -> PusherApp:
        return services_of(self.app).hub.app

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/app/{self.pusher.key}?protocol=7&client=test&version=1"

    async def account(self, email: str) -> tuple[str, str]:
        """A new account, logged in over the API: (access token, entity_id)."""
        registered = await self.http.post("/register", json={"email": email, "password": PASSWORD})
        assert registered.status_code == 200, registered.text
        login = await self.http.post("/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        body = login.json()
        return body["access_token"], body["user"]["entity_id"]

    async def drain(self) -> None:
        """Deliver the outbox now (entity events reach the channels through it)."""
        await services_of(self.app).dispatcher.drain()


@pytest.fixture
def overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    return {
        **overrides, "argon2_memory_kib": 1024, "argon2_time_cost": 1,
        "rate_limits_enabled": False, "outbox_poll_interval": 0.05,
    }  # fmt: skip


async def serve(overrides: dict[str, Any]) -> AsyncIterator[Served]:
    app = create_app(overrides)
    port = free_port()
    server = InProcessServer(app, port)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=15) as http:
            yield Served(app, port, http)
    finally:
        await truncate(app)
        await server.stop()


serving = asynccontextmanager(serve)  # ``async with serving(overrides) as served:``


@pytest.fixture
async def served(overrides: dict[str, Any]) -> AsyncIterator[Served]:
    async for found in serve(overrides):
        yield found


class Socket:
    """A raw protocol-7 client (the ``websockets`` library): frames in and out as dicts."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.socket_id = ""

    async def send(self, event: str, data: Any, channel: str | None = None) -> None:
        message: dict[str, Any] = {"event": event, "data": data}
        if channel is not None:
            message["channel"] = channel
        await self.connection.send(json.dumps(message))

    async def receive(self, timeout: float = 10) -> dict[str, Any]:
        import asyncio

        raw = await asyncio.wait_for(self.connection.recv(), timeout)
        message: dict[str, Any] = json.loads(raw)
        if isinstance(message.get("data"), str):
            with suppress(ValueError):
                message["data"] = json.loads(message["data"])
        return message

    async def until(self, event: str, timeout: float = 10) -> dict[str, Any]:
        """The next message named ``event`` (others before it are skipped)."""
        while True:
            message = await self.receive(timeout)
            if message["event"] == event:
                return message


@asynccontextmanager
async def socket(served: Served, **kwargs: Any) -> AsyncIterator[Socket]:
    async with websockets.connect(served.ws_url, **kwargs) as connection:
        client = Socket(connection)
        hello = await client.receive()
        assert hello["event"] == "pusher:connection_established", hello
        client.socket_id = hello["data"]["socket_id"]
        yield client
