"""Chromium drives two-factor authentication: enabling an authenticator app from the dashboard
(the QR image read back with zbarimg, codes from pyotp), the codes shown once and downloaded,
logging in with a code and with a recovery code; passkeys with Chromium's virtual
authenticator (CDP ``WebAuthn.addVirtualAuthenticator``): added from the dashboard, used as
the second factor and alone, removed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, expect

from issuer.issuance.agents.local import free_port
from tests.browser.conftest import Watcher, submit_login
from tests.browser.test_accounts_browser import HTTP_TIMEOUT, PASSWORD, serve
from tests.mfa.conftest import code, secret_of, uri_in
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.browser

USERNAME = "ada.lovelace"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    # WebAuthn needs a domain for its relying party id (an IP address is not one): localhost.
    port = free_port()
    yield from serve(tmp_path, port, {"ISSUER_PUBLIC_BASE_URL": f"http://localhost:{port}"})


def next_step() -> datetime:
    """A code of the next TOTP step: the current one may have been spent enabling it."""
    return datetime.now(UTC) + timedelta(seconds=30)


async def register(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=HTTP_TIMEOUT) as api:
        response = await api.post("/register", json={"username": USERNAME, "password": PASSWORD})
        assert response.status_code == 200, response.text


async def log_in(page: Page, base: str) -> None:
    """The login form's first step."""
    await page.goto(f"{base}/login")
    await submit_login(page, USERNAME, PASSWORD)


async def log_out(page: Page, base: str) -> None:
    await page.get_by_role("button", name="Log out").click()
    await expect(page).to_have_url(f"{base}/login")


async def enable_totp(page: Page) -> tuple[str, list[str]]:
    """From the dashboard: the secret (from the QR image) and the recovery codes shown."""
    await page.get_by_label("Your password").fill(PASSWORD)
    await page.get_by_role("button", name="Set up an authenticator app").click()
    image = page.locator("#totp-qr")
    await expect(image).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))
    source = await image.get_attribute("src")
    assert source is not None
    secret = secret_of(uri_in(source.split(",", 1)[1]))
    await page.get_by_label("Code from the app").fill(code(secret))
    await page.get_by_role("button", name="Turn on").click()
    codes = page.locator("#codes-list > li")
    await expect(codes).to_have_count(5)
    await expect(page.locator("#mfa-status")).to_have_text("Two-factor authentication is on.")
    return secret, await codes.all_inner_texts()


async def test_enabling_an_authenticator_app_and_logging_in_with_it(
    page: Page, watched: Watcher, server: ServerProcess
) -> None:
    base = f"http://localhost:{server.port}"
    await register(server)
    await log_in(page, base)
    await expect(page).to_have_url(f"{base}/dashboard")
    await expect(page.locator("#mfa-status")).to_have_text("Two-factor authentication is off.")
    secret, codes = await enable_totp(page)
    assert all(len(c) == 32 and c == c.upper() for c in codes), codes
    # The download holds the same codes.
    async with page.expect_download() as started:
        await page.get_by_role("link", name="Download").click()
    download = await started.value
    saved = Path(await download.path()).read_text()
    assert saved.split() == codes
    await page.get_by_role("button", name="Done").click()
    await expect(page.locator("#codes-left")).to_have_text("5")
    await watched.assert_clean()

    # Logging in asks for the code; a wrong one is refused in place.
    await log_out(page, base)
    await log_in(page, base)
    await expect(page.get_by_role("heading", name="Two-step verification")).to_be_visible()
    await page.get_by_label("Code from your authenticator app").fill("000000")
    await page.get_by_role("button", name="Verify").click()
    await expect(page.locator("#error")).to_have_text("You have supplied an invalid MFA token!")
    await page.get_by_label("Code from your authenticator app").fill(code(secret, next_step()))
    await page.get_by_role("button", name="Verify").click()
    await expect(page).to_have_url(f"{base}/dashboard")

    # A recovery code instead; it is then used up.
    await log_out(page, base)
    await log_in(page, base)
    await page.get_by_role("button", name="Use a recovery code").click()
    await page.get_by_label("Recovery code").fill(codes[0])
    await page.get_by_role("button", name="Use recovery code").click()
    await expect(page).to_have_url(f"{base}/dashboard")
    await expect(page.locator("#codes-left")).to_have_text("4")

    # New codes replace the old ones; turning MFA off needs one of them.
    await page.get_by_role("button", name="New recovery codes").click()
    fresh = page.locator("#codes-list > li")
    await expect(fresh).to_have_count(5)
    renewed = await fresh.all_inner_texts()
    assert not set(renewed) & set(codes)
    await page.get_by_label("Code from the app, or a recovery code").fill(codes[1])
    await page.get_by_role("button", name="Turn off").click()
    await expect(page.locator("#error")).to_have_text("You have supplied an invalid recovery code!")
    await page.get_by_label("Code from the app, or a recovery code").fill(renewed[0])
    await page.get_by_role("button", name="Turn off").click()
    await expect(page.locator("#mfa-status")).to_have_text("Two-factor authentication is off.")
    # Chromium logs the refused posts (401, 400) as console errors: those, and nothing else.
    watched.forget("status of 401", "status of 400")
    await watched.assert_clean()


async def virtual_authenticator(context: BrowserContext, page: Page) -> Any:
    """A platform authenticator with user verification, answering without a prompt."""
    cdp = await context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable")
    options = {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True,
        "automaticPresenceSimulation": True,
    }  # fmt: skip
    added = await cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})
    return cdp, added["authenticatorId"]


async def test_passkeys_with_chromiums_virtual_authenticator(
    context: BrowserContext, page: Page, watched: Watcher, server: ServerProcess
) -> None:
    base = f"http://localhost:{server.port}"
    cdp, authenticator = await virtual_authenticator(context, page)
    await register(server)
    await log_in(page, base)
    await expect(page).to_have_url(f"{base}/dashboard")
    await page.get_by_label("Name", exact=True).fill("This laptop")
    await page.get_by_role("button", name="Add a passkey").click()
    passkeys = page.locator("#passkeys > li[data-passkey]")
    await expect(passkeys).to_have_count(1)
    await expect(passkeys).to_contain_text("This laptop")
    stored = await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert len(stored["credentials"]) == 1 and stored["credentials"][0]["isResidentCredential"]

    # Passwordless: the passkey alone logs in.
    await log_out(page, base)
    await page.get_by_role("button", name="Sign in with a passkey").click()
    await expect(page).to_have_url(f"{base}/dashboard")
    await expect(passkeys).to_contain_text("last used")

    # With an authenticator app on, the passkey answers the second step too.
    await enable_totp(page)
    await page.get_by_role("button", name="Done").click()
    await log_out(page, base)
    await log_in(page, base)
    await expect(page.get_by_role("heading", name="Two-step verification")).to_be_visible()
    await page.get_by_role("button", name="Use a passkey").click()
    await expect(page).to_have_url(f"{base}/dashboard")
    await watched.assert_clean()

    # Removed, it no longer logs anyone in.
    await passkeys.get_by_role("button", name="Remove").click()
    await expect(passkeys).to_have_count(0)
    await log_out(page, base)
    await page.get_by_role("button", name="Sign in with a passkey").click()
    await expect(page.locator("#error")).to_have_text("The passkey could not be verified.")
    await expect(page).to_have_url(f"{base}/login")
