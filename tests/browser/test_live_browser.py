"""Chromium on the dashboard: pusher-js (our static copy) on the app's own websocket shows the
account's events live. Another client logging in, logging out and changing the password makes
the open page update without a reload."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import Watcher
from tests.browser.test_accounts_browser import PASSWORD
from tests.browser.test_accounts_browser import server as server  # a fixture
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.browser
NEW_PASSWORD = "another staple battery horse"


async def test_the_dashboard_shows_the_accounts_events_live(
    page: Page, watched: Watcher, server: ServerProcess
) -> None:
    base = f"http://localhost:{server.port}"
    async with httpx.AsyncClient(base_url=server.url, timeout=15) as api:
        registered = await api.post("/register", json={"username": "ada", "password": PASSWORD})
        assert registered.status_code == 200, registered.text
        await page.goto(f"{base}/login")
        await page.get_by_label("Username or email").fill("ada")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await expect(page).to_have_url(f"{base}/dashboard")
        # Connected, and subscribed to every entity channel of the account.
        await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
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
