"""Chromium opens the interactive API docs, served from our own static files under the site's
CSP (no CDN, no inline script), and sees the operations listed; and the login page shows a
refused login's message next to the form, with a way to reset the password."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from issuer.issuance.agents.local import free_port
from tests.browser.conftest import Watcher
from tests.browser.test_accounts_browser import serve
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.browser


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from serve(tmp_path, free_port(), {})


def same_origin_only(page: Page, base: str) -> list[str]:
    """Collects every request the page makes to another origin (the CDNs of old)."""
    elsewhere: list[str] = []
    page.on(
        "request",
        lambda r: (
            None if r.url.startswith((base, "data:", f"blob:{base}")) else elsewhere.append(r.url)
        ),
    )
    return elsewhere


async def test_swagger_ui_lists_the_operations(
    page: Page, watched: Watcher, server: ServerProcess
) -> None:
    base = f"http://localhost:{server.port}"
    elsewhere = same_origin_only(page, base)
    await page.goto(f"{base}/docs")
    operations = page.locator(".opblock")
    await expect(operations.first).to_be_visible()
    assert await operations.count() > 20
    await expect(page.locator(".opblock-summary-path", has_text="/generate_array")).to_have_count(1)
    await watched.assert_clean()
    assert elsewhere == []


async def test_redoc_lists_the_operations(
    page: Page, watched: Watcher, server: ServerProcess
) -> None:
    base = f"http://localhost:{server.port}"
    elsewhere = same_origin_only(page, base)
    await page.goto(f"{base}/redocs")
    await expect(
        page.get_by_role("heading", name="Sign up with email and password")
    ).to_be_visible()
    assert await page.locator("[data-section-id^='operation/']").count() > 20
    violations = await page.evaluate("window.__cspViolations")
    # ReDoc's "API docs by Redocly" badge is an image from its CDN: refused, and it hides itself.
    assert [v for v in violations if "img-src" not in v] == [], violations
    assert [u for u in elsewhere if "redoc.ly" not in u] == []


async def test_a_refused_login_is_told_on_the_page(
    page: Page, watched: Watcher, server: ServerProcess
) -> None:
    base = f"http://localhost:{server.port}"
    await page.goto(f"{base}/login")
    await page.fill("#username", "nobody")
    await page.fill("#password", "not the password")
    await page.click("button[type=submit]")
    await expect(page.locator("#error")).to_have_text("Invalid credentials")
    assert page.url == f"{base}/login"  # no JSON page, no navigation
    await page.click("#forgot")
    await expect(page).to_have_url(f"{base}/forgot_password")
