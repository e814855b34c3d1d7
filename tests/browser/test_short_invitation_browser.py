"""The QR code Chromium shows carries the short invitation URL, read back from a screenshot by
zbarimg, and that URL answers a wallet with the agent's invitation (real ACA-Py, ``make run``)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import segno
from playwright.async_api import Page, expect

from tests.browser.conftest import Watcher
from tests.support.servers import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.acapy]


def qr_text(image: Path) -> str:
    """What the QR code in ``image`` says (Debian's zbar-tools)."""
    found = subprocess.run(
        ["zbarimg", "--raw", "--quiet", str(image)], capture_output=True, text=True, check=True
    )
    return found.stdout.strip()


async def test_the_qr_code_scans_as_the_short_url_and_the_links_carry_the_invitation(
    page: Page, watched: Watcher, portal: ServerProcess, tmp_path: Path
) -> None:
    response = await page.goto(f"http://localhost:{portal.port}/en")
    assert response is not None and response.ok
    code = page.locator("#qr svg")
    await expect(code).to_be_visible()
    await code.screenshot(path=tmp_path / "qr.png")
    short = await page.locator("#short-link").get_attribute("href")
    assert short is not None and "/i/" in short
    assert qr_text(tmp_path / "qr.png") == short
    assert segno.make(short, error="m").version <= 6

    # The wallet's request (RFC 0434): the message itself; a browser's: the agent's long URL.
    path = f"http://localhost:{portal.port}{urlsplit(short).path}"  # the id on this server
    answer = await page.request.get(path, headers={"Accept": "application/json"})
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json; charset=utf-8"
    message = await answer.json()
    assert message["@type"].endswith("/out-of-band/1.1/invitation")
    redirect = await page.request.get(path, max_redirects=0)
    assert redirect.status == 302
    long_url = redirect.headers["location"]

    # "Open in your wallet": a plain link to didcomm://?oob=, the same message again.
    link = page.get_by_role("link", name="Open in your wallet")
    await expect(link).to_be_visible()
    deep = await link.get_attribute("href")
    assert deep is not None and deep.startswith("didcomm://?oob=")
    for url in (deep, long_url):
        encoded = parse_qs(urlsplit(url).query)["oob"][0]
        assert json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))) == message
    await watched.assert_clean()
