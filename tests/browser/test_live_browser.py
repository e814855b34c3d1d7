"""Chromium on the dashboard: pusher-js (our static copy) on the app's own websocket shows the
account's events live. Another client logging in, logging out and changing the password makes
the open page update without a reload; events whose delivery the page missed before its
connection dropped are replayed when it reconnects."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, WebSocketRoute, expect

from issuer.issuance.agents.local import free_port
from tests.browser.conftest import Watcher, submit_login
from tests.browser.test_accounts_browser import PASSWORD, serve
from tests.browser.test_accounts_browser import server as server  # a fixture
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.browser
NEW_PASSWORD = "another staple battery horse"
ADA = {"username": "ada", "password": PASSWORD}


async def log_in_ada(page: Page, api: httpx.AsyncClient, base: str) -> None:
    registered = await api.post("/register", json=ADA)
    assert registered.status_code == 200, registered.text
    await page.goto(f"{base}/login")
    await submit_login(page, "ada", PASSWORD)
    await expect(page).to_have_url(f"{base}/dashboard")
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")


async def test_the_dashboard_shows_the_accounts_events_live(
    page: Page, watched: Watcher, server: ServerProcess
) -> None:
    base = f"http://localhost:{server.port}"
    async with httpx.AsyncClient(base_url=server.url, timeout=15) as api:
        await log_in_ada(page, api, base)  # connected, subscribed to every entity channel
        await page.evaluate("window.__marker = 1")  # gone if the page reloads

        # A second client logs in: the page lists the new session.
        login = await api.post("/login", json={"username": "ada", "password": PASSWORD})
        token = login.json()["access_token"]
        events = page.locator("#live-events > li")
        await expect(events.filter(has_text="session.opened")).to_have_count(1)
        sessions = page.locator("#sessions > li")
        await expect(sessions).to_have_count(2)
        # It logs out: its session leaves the list.
        assert (
            await api.post("/logout", headers={"Authorization": f"Bearer {token}"})
        ).status_code == 200
        await expect(events.filter(has_text="session.ended")).to_have_count(1)
        await expect(sessions).to_have_count(1)
        # A password change elsewhere ends this browser's session too: the page says so.
        other = (await api.post("/login", json={"username": "ada", "password": PASSWORD})).json()
        changed = await api.post(
            "/update_password",
            json={"existing_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers={"Authorization": f"Bearer {other['access_token']}"},
        )
        assert changed.status_code == 200, changed.text
        await expect(events.filter(has_text="password.changed")).to_have_count(1)
        await expect(page.locator("#live-status")).to_have_text("This session was ended elsewhere.")
        assert await page.evaluate("window.__marker") == 1
    await watched.assert_clean()


@pytest.fixture
def replaying_one_at_a_time(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from serve(tmp_path, free_port(), {"ISSUER_EVENTS_REPLAY_MAX": "1"})


async def test_events_missed_before_the_connection_dropped_are_replayed(
    page: Page, watched: Watcher, replaying_one_at_a_time: ServerProcess
) -> None:
    """The page saw event n+2 live but not n and n+1 (the server retries a failed delivery
    after later events went out), then its connection dropped. On reconnecting it must ask for
    the events after the number its last replay reached, not after n+2, or n and n+1 are never
    shown; and with replays of one event each, ask again while a replay says ``more``. The
    test sits between the page and the server's websocket and drops the live frames of n and
    n+1."""
    server = replaying_one_at_a_time
    sockets: list[WebSocketRoute] = []
    dropped: list[int] = []
    both_dropped = asyncio.Event()
    after = None  # drop the first two session.opened numbered above this (not the page's own)

    def between(page_side: WebSocketRoute) -> None:
        server_side = page_side.connect_to_server()
        sockets.append(page_side)

        def to_page(message: str | bytes) -> None:
            if after is not None and len(dropped) < 2 and isinstance(message, str):
                data = json.loads(json.loads(message).get("data") or "null")
                opened = isinstance(data, dict) and data.get("type") == "session.opened"
                if opened and data["id"] > after:
                    dropped.append(data["id"])
                    if len(dropped) == 2:
                        both_dropped.set()
                    return
            page_side.send(message)

        server_side.on_message(to_page)
        page_side.on_message(server_side.send)

    await page.route_web_socket(lambda url: "/app/" in url, between)
    base = f"http://localhost:{server.port}"
    async with httpx.AsyncClient(base_url=server.url, timeout=15) as api:
        await log_in_ada(page, api, base)
        events = page.locator("#live-events > li")
        opened, ended = (events.filter(has_text=t) for t in ("session.opened", "session.ended"))
        after = int(await page.locator("#account").get_attribute("data-since") or "0")
        logins = [await api.post("/login", json=ADA) for _ in range(2)]
        await asyncio.wait_for(both_dropped.wait(), 15)  # n, n+1: session.opened, not delivered
        token = logins[0].json()["access_token"]
        logout = await api.post("/logout", headers={"Authorization": f"Bearer {token}"})
        assert logout.status_code == 200
        await expect(ended).to_have_count(1)  # n+2, live
        await expect(opened).to_have_count(0)
        # The connection drops (4200: the server lost its LISTEN connection; reconnect now).
        await sockets[-1].close(code=4200, reason="reconnect")
        await expect(opened).to_have_count(2)
        # A new event, after the replays on the same socket: they were all handled by then,
        # and what they repeated (n+2) was not shown twice.
        assert (await api.post("/login", json=ADA)).status_code == 200
        await expect(opened).to_have_count(3)
        await expect(ended).to_have_count(1)
        assert len(sockets) == 2
    await watched.assert_clean()
