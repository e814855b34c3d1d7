"""Two hypercorn processes on one PostgreSQL database: an event caused on A reaches a
``pusher-js`` client connected to B (through ``LISTEN/NOTIFY``), and so does one triggered
through A's Events API with Pusher's official library."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pusher
import pytest

from issuer.config import Settings
from issuer.issuance.agents.local import free_port
from tests.accounts.conftest import PASSWORD
from tests.support.pusher_js import PusherJs
from tests.support.servers import SHORT_GRACE, ServerProcess, stop_gracefully

pytestmark = pytest.mark.postgres
SECRET_KEY = secrets.token_urlsafe(32)  # shared: both hosts derive the same Pusher app


@pytest.fixture(scope="module")
def hosts(
    postgresql_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    logs = tmp_path_factory.mktemp("realtime-workers")
    env = {
        "ISSUER_ENV": "test", "ISSUER_SECRET_KEY": SECRET_KEY,
        "ISSUER_DATABASE_URL": postgresql_url, "ISSUER_AGENT": "rest",
        "ISSUER_REST_CONNECTION_URL": "http://127.0.0.1:9", "ISSUER_REST_ISSUER_URL": "http://127.0.0.1:9",
        "ISSUER_ARGON2_MEMORY_KIB": "1024", "ISSUER_ARGON2_TIME_COST": "1",
        "ISSUER_RATE_LIMITS_ENABLED": "false", "ISSUER_OUTBOX_POLL_INTERVAL": "0.1",
        "ISSUER_SMTP_HOST": "", "ISSUER_AMQP_URL": "", "ISSUER_REDIS_URL": "",
        "ISSUER_ACAPY_ADMIN_URL": "", "ISSUER_TEST_WALLET_ADMIN_URL": "",
    }  # fmt: skip
    a = ServerProcess(free_port(), env, logs / "a.log", args=SHORT_GRACE)
    b = ServerProcess(free_port(), env, logs / "b.log", args=SHORT_GRACE)
    try:
        with ThreadPoolExecutor(2) as pool:
            for future in [pool.submit(server.start) for server in (a, b)]:
                future.result()
        yield a, b
    finally:
        stop_gracefully(a)
        stop_gracefully(b)


async def test_an_event_caused_on_one_host_reaches_a_client_on_the_other(
    hosts: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = hosts
    app_id, key, secret = Settings(env="test", secret_key=SECRET_KEY).pusher_credentials
    email = f"{secrets.token_hex(4)}@example.test"
    async with httpx.AsyncClient(base_url=a.url, timeout=15) as on_a:
        assert (
            await on_a.post("/register", json={"email": email, "password": PASSWORD})
        ).status_code == 200
        login = (await on_a.post("/login", json={"email": email, "password": PASSWORD})).json()
        token, entity = login["access_token"], login["user"]["entity_id"]
        channel = f"private-session-{entity}"
        async with PusherJs(
            host="127.0.0.1", port=b.port, key=key,
            headers={"Authorization": f"Bearer {token}"},
        ) as client:  # fmt: skip
            await client.subscribe(channel)
            again = await on_a.post("/login", json={"email": email, "password": PASSWORD})
            assert again.status_code == 200
            opened = await client.next("event", channel=channel, event="create", timeout=15)
            assert opened["data"]["type"] == "session.opened"
            await client.subscribe("alerts")
            library = pusher.Pusher(
                app_id=app_id, key=key, secret=secret, host="127.0.0.1", port=a.port, ssl=False
            )
            await asyncio.to_thread(library.trigger, ["alerts"], "notice", {"from": "a"})
            notice = await client.next("event", channel="alerts", event="notice", timeout=15)
            assert notice["data"] == {"from": "a"}
            # A's Events API sees B's subscription (one view of the channels, every host).
            occupied = await asyncio.to_thread(library.channels_info, "alerts")
            assert "alerts" in occupied["channels"]
