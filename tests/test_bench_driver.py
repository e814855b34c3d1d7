"""The benchmarks' load generator and agent stub work against real servers.

``bench.portal`` (on ``bench.http1`` and ``bench.websocket``, raw asyncio clients) drives whole
issuance flows against a hypercorn process of the app whose agent is ``bench.fake_acapy`` (on
``bench.stub_server``, posting the webhooks); the websocket client inflates messages when the app
agrees to permessage-deflate; the HTTP client resends a ``GET`` once, and never a ``POST``, when
a kept-alive connection was closed unanswered.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from bench import concurrent_flows, portal
from bench.common import WEBHOOK_KEY, app_env
from bench.http1 import Client, ConnectionClosed

from issuer import create_app
from issuer.issuance.agents.local import free_port
from tests.fakes import FakeAgent
from tests.support.servers import ROOT, InProcessServer, ServerProcess


def stub_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_bench/stats", timeout=5) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


@pytest.fixture
def app_with_stub(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``(app URL, stub URL)``: hypercorn with ``hypercorn.toml``, the stub playing the holder."""
    app_port, stub_port = free_port(), free_port()
    app_url, stub_url = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{stub_port}"
    command = [
        sys.executable, "-m", "bench.fake_acapy", "--port", str(stub_port),
        "--webhook-url", f"{app_url}/webhooks", "--webhook-key", WEBHOOK_KEY,
        "--connect-after", "0.1", "--accept-after", "0.1",
    ]  # fmt: skip
    with open(tmp_path / "stub.log", "wb") as log:
        stub = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    env = app_env(sqlite_url, agent="acapy", acapy_admin_url=stub_url)
    server = ServerProcess(app_port, env, tmp_path / "app.log", args=("--graceful-timeout", "2"))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                stub_stats(stub_url)
                break
            except OSError:
                assert time.monotonic() < deadline and stub.poll() is None, "no stub"
                time.sleep(0.05)
        server.start()
        yield app_url, stub_url
    finally:
        server.stop()
        stub.terminate()
        stub.wait(10)


async def test_flows_complete_against_the_app_with_the_stub_posting_webhooks(
    app_with_stub: tuple[str, str],
) -> None:
    app_url, stub_url = app_with_stub
    async with portal.client(app_url) as http:
        durations = await asyncio.gather(*(concurrent_flows.flow(http, app_url) for _ in range(3)))
        visitor = await portal.open_session(http)
        page = await portal.open_page(app_url, visitor)
        try:  # the page's script posts a FormData: multipart
            await page.reach("connected", timeout=10)
            snapshot = await portal.submit_name(http, visitor, multipart_form=True)
            await page.reach("accepted", timeout=10)
        finally:
            await page.close()
    assert all(0 < d < 10 for d in durations)
    assert snapshot["state"] in ("offered", "accepted")
    assert page.ws.close_code == 1000
    stats = await asyncio.to_thread(stub_stats, stub_url)
    assert (stats["webhooks_sent"], stats["webhooks_failed"]) == (8, 0)
    assert stats["requests"]["POST send-offer"] == 4


@pytest.fixture
async def compressing_app(sqlite_url: str) -> AsyncIterator[str]:
    """The app in this process with ``ISSUER_WS_COMPRESSION=on``; its URL."""
    overrides = {
        "env": "test", "database_url": sqlite_url, "secret_key": secrets.token_urlsafe(32),
        "webhook_api_key": "hook-key", "sweep_interval": 3600, "agent": None,
    }  # fmt: skip
    app = create_app({**overrides, "ws_compression": "on"}, agent=FakeAgent())
    port = free_port()
    async with InProcessServer(app, port):
        yield f"http://127.0.0.1:{port}"
    create_app(overrides)  # the process-wide default again for the tests after this one


async def test_the_websocket_inflates_what_the_app_compressed(compressing_app: str) -> None:
    async with portal.client(compressing_app) as http:
        visitor = await portal.open_session(http)
    page = await portal.open_page(compressing_app, visitor)
    try:
        assert page.ws.extensions.startswith("permessage-deflate")
        await page.reach("invited", timeout=10)
    finally:
        await page.close()


async def test_a_get_is_resent_once_and_a_post_never_on_a_closed_kept_alive_connection() -> None:
    """The server answers the first request of each connection, keeping it alive, and closes
    it unanswered when a second one arrives (a keep-alive timeout racing the request)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Client(f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/")).body == b"one"
            assert (await http.get("/")).body == b"one"  # resent on a new connection
            assert (http.opened, http.resent) == (2, 1)
            with pytest.raises(ConnectionClosed):
                await http.post("/", b"a=1", "application/x-www-form-urlencoded")
            assert (http.opened, http.resent) == (2, 1)
    finally:
        server.close()
        await server.wait_closed()
