"""A headless Chromium walks the whole page flow of ``make run``, with no page reload."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import Watcher
from tests.support.servers import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.acapy]


async def test_the_whole_flow_needs_no_reload(
    page: Page, watched: Watcher, portal: ServerProcess, tmp_path: Path
) -> None:
    start = f"http://localhost:{portal.port}/en"
    response = await page.goto(start)
    assert response is not None and response.ok
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    await expect(page.locator("#qr svg")).to_be_visible()
    await page.evaluate("window.__marker = 1")

    await page.get_by_role("button", name="Use the local test wallet").click()
    # The wallet connects; the websocket shows the form in place.
    await expect(page.locator("#name-form")).to_be_visible()
    await expect(page.locator("#qr")).to_be_hidden()
    await page.get_by_label("First name").fill("Ada")
    await page.get_by_label("Last name").fill("Lovelace")
    await page.get_by_label("Institution").fill("Analytical University")
    await page.get_by_role("button", name="Request credential").click()

    success = page.locator("#success")
    await expect(success).to_be_visible()
    await expect(success).to_have_text("Done! The credential is in your wallet.")
    await expect(page.locator("#name-form")).to_be_hidden()
    await page.screenshot(path=tmp_path / "accepted.png", full_page=True)

    assert await page.evaluate("window.__marker") == 1, "the page was reloaded"
    assert watched.navigations == [start]
    assert page.url == start
    await watched.assert_clean()


async def test_language_switch(page: Page, watched: Watcher, portal: ServerProcess) -> None:
    response = await page.goto(f"http://localhost:{portal.port}/de")
    assert response is not None and response.ok
    assert await page.locator("html").get_attribute("lang") == "de"
    await expect(page.locator("h1")).to_have_text("Ihr Nachweis")
    await expect(page.get_by_role("button", name="Lokale Test-Wallet verwenden")).to_be_visible()
    await expect(page.locator("#qr svg")).to_be_visible()

    await page.get_by_role("link", name="EN", exact=True).click()
    await expect(page).to_have_url(f"http://localhost:{portal.port}/en")
    await expect(page.locator("h1")).to_have_text("Get your credential")
    assert await page.locator("html").get_attribute("lang") == "en"
    await watched.assert_clean()
