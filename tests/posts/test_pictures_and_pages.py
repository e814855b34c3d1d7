"""Profile pictures (checked by content, bombs refused, EXIF stripped, both sizes, cached) and
the blog's pages (pagination edges, HTML errors, same-site ``next``)."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image
from quart import Quart

from tests.accounts.conftest import PASSWORD, BrowserClient, assert_error
from tests.posts.conftest import author, image, write


async def upload(client: Any, auth: dict[str, str], data: bytes, name: str = "me.png") -> Any:
    from werkzeug.datastructures import FileStorage

    storage = FileStorage(io.BytesIO(data), filename=name, content_type="image/png")
    return await client.put("/api/me/picture", files={"picture": storage}, headers=auth)


async def test_a_picture_is_checked_by_content_and_stored_clean(app: Quart, client: Any) -> None:
    ada = await author(client, "ada")
    await assert_error(
        await upload(client, ada, b"just some text, honestly"), 422, code="not_a_picture"
    )
    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, "PNG")  # tiny file, 100 megapixels
    assert len(bomb.getvalue()) < 2 * 1024 * 1024
    await assert_error(await upload(client, ada, bomb.getvalue()), 422, code="picture_too_large")
    big = image("BMP", (1100, 1000))  # 3.3 MB (and BMP is not accepted anyway)
    assert len(big) > 3_000_000
    refused = await upload(client, ada, big, "big.png")
    assert refused.status_code in (413, 422)
    # A JPEG with GPS EXIF: accepted, stored without any metadata.
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0)}
    photo = image("JPEG", (640, 480), exif=exif.tobytes())
    assert b"Exif" in photo
    answer = await upload(client, ada, photo, "photo.jpg")
    assert answer.status_code == 200, await answer.get_data(as_text=True)
    urls = await answer.get_json()
    small = await client.get(urls["picture"])
    assert small.status_code == 200 and small.mimetype == "image/jpeg"
    assert "immutable" in small.headers["Cache-Control"]
    stored = await small.get_data()
    assert b"Exif" not in stored and b"Camera maker" not in stored
    assert Image.open(io.BytesIO(stored)).size == (125, 125)
    large = await (await client.get(urls["picture_large"])).get_data()
    assert Image.open(io.BytesIO(large)).size == (400, 400)
    again = await client.get(urls["picture"], headers={"If-None-Match": small.headers["ETag"]})
    assert again.status_code == 304
    # Shown next to the author's posts.
    await write(client, ada)
    listing = await (await client.get("/api/posts")).get_json()
    assert listing["items"][0]["author"]["picture"] == urls["picture"]


async def test_pages_paginate_and_errors_are_html(app: Quart, client: Any) -> None:
    ada = await author(client, "ada")
    home = await client.get("/home")
    assert home.status_code == 200 and "No posts yet." in await home.get_data(as_text=True)
    for n in range(31):
        await write(client, ada, f"post {n}")
    page = await (await client.get("/blog?page=4")).get_data(as_text=True)
    # 7 pages: 1 … 3 4 5 … 7, as iter_pages makes them.
    assert page.count('class="gap"') == 2 and 'aria-current="page" href="/home?page=4"' in page
    missing = await client.get("/home?page=8")
    assert missing.status_code == 404 and missing.mimetype == "text/html"
    assert (await client.get("/post/999999")).mimetype == "text/html"
    # The API keeps the JSON shape.
    await assert_error(await client.get("/api/posts/999999"), 404)
    user = await client.get("/user/ada")
    assert "Posts by ada (31)" in await user.get_data(as_text=True)


async def test_others_get_403_pages_and_next_stays_on_this_site(app: Quart) -> None:
    ada_client, bob_client = BrowserClient(app), BrowserClient(app)
    ada = await author(ada_client, "ada")
    post_id = (await (await write(ada_client, ada)).get_json())["id"]
    await author(bob_client, "bob")
    login_page = await (await bob_client.get("/login?next=/post/new")).get_data(as_text=True)
    assert 'name="next" value="/post/new"' in login_page
    csrf = login_page.split('name="csrf_token" value="')[1].split('"')[0]
    logged_in = await bob_client.post(
        "/login",
        form={"username": "bob", "password": PASSWORD, "csrf_token": csrf, "next": "/post/new"},
    )
    assert logged_in.status_code == 303 and logged_in.headers["Location"] == "/post/new"
    forbidden = await bob_client.get(f"/post/{post_id}/update")
    assert forbidden.status_code == 403 and forbidden.mimetype == "text/html"  # an HTML page
    evil = await (await bob_client.get("/login?next=//evil.example/")).get_data(as_text=True)
    assert 'name="next"' not in evil
    refused = await bob_client.post(
        "/login",
        form={
            "username": "bob",
            "password": PASSWORD,
            "csrf_token": csrf,
            "next": "https://evil.example",
        },
    )
    assert refused.status_code == 422
