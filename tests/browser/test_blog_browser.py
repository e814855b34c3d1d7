"""Chromium on the blog: log in (through ``?next=``), write, edit, paginate and delete a post,
and upload a profile picture that then shows next to the posts."""

from __future__ import annotations

import io
import re
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.async_api import Page, expect

from tests.browser.conftest import Watcher, submit_login
from tests.browser.test_accounts_browser import PASSWORD
from tests.browser.test_accounts_browser import server as server  # a fixture
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.browser


async def test_writing_editing_paginating_deleting_and_a_picture(
    page: Page, watched: Watcher, server: ServerProcess, tmp_path: Path
) -> None:
    base = f"http://localhost:{server.port}"
    async with httpx.AsyncClient(base_url=server.url, timeout=15) as api:
        registered = await api.post("/register", json={"username": "ada", "password": PASSWORD})
        assert registered.status_code == 200, registered.text
        token = (await api.post("/login", json={"username": "ada", "password": PASSWORD})).json()[
            "access_token"
        ]
        for n in range(5):  # five older posts: the new one makes a second page
            created = await api.post(
                "/api/posts", json={"title": f"Older {n}", "content": "text"},
                headers={"Authorization": f"Bearer {token}"},
            )  # fmt: skip
            assert created.status_code == 201, created.text

    await page.goto(f"{base}/post/new")  # not logged in: the login page, then back here
    await expect(page).to_have_url(f"{base}/login?next=/post/new")
    await submit_login(page, "ada", PASSWORD)
    await expect(page).to_have_url(f"{base}/post/new")

    await page.get_by_label("Title").fill("My <b>first</b> post")
    await page.get_by_label("Content").fill("Line one\nLine two https://example.com/")
    await page.get_by_role("button", name="Post").click()
    await expect(page.locator(".flash")).to_have_text("Your post has been created.")
    await expect(page.locator("article h2")).to_have_text("My <b>first</b> post")  # as text
    await expect(page.locator("article .content a")).to_have_attribute(
        "href", "https://example.com/"
    )

    await page.get_by_role("link", name="Update").click()
    await page.get_by_label("Title").fill("My edited post")
    await page.get_by_role("button", name="Post").click()
    await expect(page.locator(".flash")).to_have_text("Your post has been updated.")
    await expect(page.locator("article h2")).to_have_text("My edited post")

    await page.goto(f"{base}/home")
    await expect(page.locator("article h2").first).to_have_text("My edited post")
    await page.locator(".pages").get_by_role("link", name="2").click()
    await expect(page).to_have_url(f"{base}/home?page=2")
    await expect(page.locator("article h2")).to_have_text(["Older 0"])

    picture = tmp_path / "me.png"
    buffer = io.BytesIO()
    Image.new("RGB", (500, 300), (20, 120, 200)).save(buffer, "PNG")
    picture.write_bytes(buffer.getvalue())
    await page.goto(f"{base}/account")
    await page.get_by_label("Profile picture (JPEG, PNG or WebP, up to 2 MB)").set_input_files(
        str(picture)
    )
    await page.get_by_role("button", name="Update").click()
    await expect(page.locator(".flash")).to_have_text("Your account has been updated.")
    await expect(page.locator("#picture")).to_have_attribute("src", re.compile(r"^/pictures/"))
    src = await page.locator("#picture").get_attribute("src")
    assert src is not None and src.startswith("/pictures/")
    loaded = await page.evaluate("document.getElementById('picture').naturalWidth")
    assert loaded == 125

    await page.goto(f"{base}/home")
    await expect(page.locator("article .avatar").first).to_have_attribute("src", src)
    await page.locator("article h2 a").first.click()
    await page.get_by_role("button", name="Delete").click()
    await expect(page.locator(".flash")).to_have_text("Your post has been deleted.")
    await expect(page.locator("article h2").first).to_have_text("Older 4")
    await watched.assert_clean()
