"""The whole flow against a real ACA-Py issuer and wallet, over real HTTP and websockets."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from quart import Quart

from issuer import create_app
from tests.support.acapy import Agents, receive_invitation
from tests.support.servers import InProcessServer

pytestmark = pytest.mark.acapy


@pytest.fixture
async def portal(agents: Agents, database_url: str) -> AsyncIterator[InProcessServer]:
    """The app on the port the issuer sends its webhooks to."""
    app = create_app(
        {
            # Plain-HTTP clients drop Secure cookies; development keeps them sendable.
            "env": "development",
            "database_url": database_url,
            "secret_key": secrets.token_urlsafe(32),
            "allowed_origins": "http://portal.test",
            **agents.app_overrides(),
        }
    )
    async with InProcessServer(app, agents.webhook_port) as server:
        yield server


async def open_session(client: httpx.AsyncClient) -> tuple[str, str, str]:
    """GET / like a browser; returns (session id, csrf token, invitation url)."""
    response = await client.get("/en")
    assert response.status_code == 200, response.text
    page = response.text
    session_id = re.search(r'data-session="([^"]+)"', page).group(1)
    csrf = re.search(r'data-csrf="([^"]+)"', page).group(1)
    return session_id, csrf, ""


async def invitation_url(app: Quart, session_id: str) -> str:
    row = await app.extensions["issuance"].get(session_id)
    return str(row.invitation_url)


async def next_state(ws: Any, timeout: float = 15) -> str:
    return str(json.loads(await asyncio.wait_for(ws.recv(), timeout))["state"])


async def test_wallet_accepts_and_the_page_hears_every_step(
    portal: InProcessServer, agents: Agents
) -> None:
    async with httpx.AsyncClient(base_url=portal.url) as client:
        session_id, csrf, _ = await open_session(client)
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        ws_url = f"ws://127.0.0.1:{portal.port}/ws/issuance/{session_id}"
        headers = {"Cookie": cookie}
        async with websockets.connect(
            ws_url, origin="http://portal.test", additional_headers=headers
        ) as ws:
            assert await next_state(ws) == "invited"
            await receive_invitation(agents.holder, await invitation_url(portal.app, session_id))
            assert await next_state(ws) == "connected"
            form = {
                "prename": "Ada",
                "surname": "Lovelace",
                "institution": "ETH",
                "csrf_token": csrf,
            }
            response = await client.post("/name", data=form, headers={"Accept": "application/json"})
            assert response.status_code == 200, response.text
            assert await next_state(ws) == "offered"
            assert await next_state(ws) == "accepted"
        assert (await client.get("/loading/")).json() == {"status": "accepted"}
