"""Chromium on the dashboard: pusher-js (our static copy) on the app's own websocket shows the
account's events live. Another client logging in, logging out and changing the password makes
the open page update without a reload."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from playwright.async_api import Page, WebSocketRoute, expect

from tests.browser.conftest import Watcher
from tests.browser.test_accounts_browser import PASSWORD
from tests.browser.test_accounts_browser import server as server  # a fixture
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.browser
NEW_PASSWORD = "another staple battery horse"


async def log_in_ada(page: Page, api: httpx.AsyncClient, base: str) -> None:
    registered = await api.post("/register", json={"username": "ada", "password": PASSWORD})
    assert registered.status_code == 200, registered.text
    await page.goto(f"{base}/login")
    await page.get_by_label("Username or email").fill("ada")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
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


async def test_an_event_missed_before_the_connection_dropped_is_replayed(
    page: Page, watched: Watcher, server: ServerProcess
) -> None:
    """The page saw event n+1 live but not n (the server retries a failed delivery after later
    events went out), then its connection dropped. On reconnecting it must ask for the events
    after the number its last replay reached, not after n+1, or n is never shown. The test sits
    between the page and the server's websocket and drops n's live frame."""
    sockets: list[WebSocketRoute] = []
    dropped = asyncio.Event()
    after = None  # drop the first session.opened numbered above this (the page's own is not)

    def between(page_side: WebSocketRoute) -> None:
        server_side = page_side.connect_to_server()
        sockets.append(page_side)

        def to_page(message: str | bytes) -> None:
            if after is not None and not dropped.is_set() and isinstance(message, str):
                data = json.loads(json.loads(message).get("data") or "null")
                opened = isinstance(data, dict) and data.get("type") == "session.opened"
                if opened and data["id"] > after:
                    dropped.set()
                    return
            page_side.send(message)

        server_side.on_message(to_page)
        page_side.on_message(server_side.send)

    await page.route_web_socket(lambda url: "/app/" in url, between)
    base = f"http://localhost:{server.port}"
    async with httpx.AsyncClient(base_url=server.url, timeout=15) as api:
        await log_in_ada(page, api, base)
        events = page.locator("#live-events > li")
        after = int(await page.locator("#account").get_attribute("data-since") or "0")
        login = await api.post("/login", json={"username": "ada", "password": PASSWORD})
        await asyncio.wait_for(dropped.wait(), 15)  # n: session.opened, not delivered
        logout = await api.post(
            "/logout", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
        )
        assert logout.status_code == 200
        await expect(events.filter(has_text="session.ended")).to_have_count(1)  # n+1, live
        await expect(events.filter(has_text="session.opened")).to_have_count(0)
        # The connection drops (4200: the server lost its LISTEN connection; reconnect now).
        await sockets[-1].close(code=4200, reason="reconnect")
        await expect(events.filter(has_text="session.opened")).to_have_count(1)
        await expect(events.filter(has_text="session.ended")).to_have_count(1)  # not twice
        assert len(sockets) == 2
    await watched.assert_clean()
