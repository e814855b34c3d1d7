"""The whole flow against a real ACA-Py issuer and wallet, the wallet reaching the invitation
through the short URL of the QR code (Aries RFC 0434, "URL shortening").

ACA-Py's admin API takes an invitation only as the message itself
(``POST /out-of-band/receive-invitation``): it does not fetch URLs. So the test plays the wallet
app's part of RFC 0434 — ``GET`` the scanned URL with ``Accept: application/json`` — and hands
the answer to the ACA-Py holder, which then connects and accepts as a phone would.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from issuer import create_app
from issuer.lib.qr import qr_svg
from tests.support.acapy import Agents, invitation_message
from tests.support.portal import (
    JSON,
    ORIGIN,
    cookie_header,
    delete_sessions,
    live,
    name_form,
    next_state,
    open_session,
    stored,
)
from tests.support.servers import InProcessServer

pytestmark = pytest.mark.acapy
SHORT_LINK = re.compile(r'id="short-link" href="([^"]+)"')


@pytest.fixture
async def portal(agents: Agents, database_url: str) -> AsyncIterator[InProcessServer]:
    """The app on the port the issuer sends its webhooks to, and that its short URLs name."""
    base_url = f"http://127.0.0.1:{agents.webhook_port}"
    settings = {
        "env": "development",
        "database_url": database_url,
        "secret_key": secrets.token_urlsafe(32),
        "allowed_origins": ORIGIN,
        "public_base_url": base_url,
        **agents.app_overrides(),
    }
    async with InProcessServer(create_app(settings), agents.webhook_port) as server:
        yield server
    await delete_sessions(database_url)


async def scan(client: httpx.AsyncClient) -> tuple[str, str, str]:
    """The start page; its session id, CSRF token and the URL its QR code carries."""
    session_id, csrf = await open_session(client)
    page = (await client.get("/name")).text  # the same session's page, still invited
    found = SHORT_LINK.search(page)
    assert found is not None, page
    short = html.unescape(found.group(1))
    assert qr_svg(short, title="Scan this QR code with your wallet app to connect.") in page
    return session_id, csrf, short


async def test_a_wallet_that_scanned_the_short_url_gets_its_credential(
    portal: InProcessServer, agents: Agents
) -> None:
    async with httpx.AsyncClient(base_url=portal.url) as client:
        session_id, csrf, short = await scan(client)
        assert urlsplit(short).netloc == urlsplit(portal.url).netloc
        async with live(portal.port, session_id, cookie_header(client)) as ws:
            assert await next_state(ws) == "invited"
            async with httpx.AsyncClient() as wallet_app:  # the phone: no cookies of the page
                answer = await wallet_app.get(short, headers=JSON)
                redirect = await wallet_app.get(short, headers={"Accept": "text/html"})
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == "application/json; charset=utf-8"
            row = await stored(portal.app, session_id)
            assert answer.json() == invitation_message(row.invitation_url)  # ACA-Py's own message
            assert answer.json()["@id"] == row.invitation_msg_id
            assert redirect.status_code == 302
            assert redirect.headers["location"] == row.invitation_url
            async with httpx.AsyncClient(base_url=agents.holder.admin_url, timeout=10) as holder:
                received = await holder.post("/out-of-band/receive-invitation", json=answer.json())
                received.raise_for_status()
            assert await next_state(ws) == "connected"
            # Used up: the short URL is gone once the wallet has connected.
            async with httpx.AsyncClient() as wallet_app:
                assert (await wallet_app.get(short, headers=JSON)).status_code == 404
            response = await client.post("/name", data=name_form(csrf), headers=JSON)
            assert response.status_code == 200, response.text
            assert await next_state(ws) == "offered"
            assert await next_state(ws) == "accepted"
        assert (await client.get("/loading/")).json() == {"status": "accepted"}


async def test_the_deep_link_carries_the_agents_invitation(
    portal: InProcessServer, agents: Agents
) -> None:
    async with httpx.AsyncClient(base_url=portal.url) as client:
        session_id, _, _ = await scan(client)
        page = (await client.get("/name")).text
        found = re.search(r'id="wallet-link" href="([^"]+)"', page)
        assert found is not None
        link = html.unescape(found.group(1))
        row = await stored(portal.app, session_id)
        assert link.startswith("didcomm://?oob=")
        assert invitation_message(link) == invitation_message(row.invitation_url)
