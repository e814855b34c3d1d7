"""The posts API on both databases: pagination, author-only edits, conditional requests,
idempotent creation, escaping, and the outbox events."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Quart

from tests.accounts.conftest import assert_error, sql
from tests.posts.conftest import author, write


async def test_pages_newest_first_with_links(app: Quart, client: Any) -> None:
    ada = await author(client, "ada")
    empty = await client.get("/api/posts")
    assert (await empty.get_json()) == {
        "items": [],
        "page": 1,
        "per_page": 5,
        "total": 0,
        "pages": 1,
    }
    for n in range(12):
        await write(client, ada, f"post {n}")
    first = await client.get("/api/posts")
    body = await first.get_json()
    assert [p["title"] for p in body["items"]] == [f"post {n}" for n in (11, 10, 9, 8, 7)]
    assert (body["total"], body["pages"]) == (12, 3)
    assert first.headers["Link"] == (
        '</api/posts?page=1&per_page=5>; rel="first", </api/posts?page=2&per_page=5>; rel="next", '
        '</api/posts?page=3&per_page=5>; rel="last"'
    )
    last = await (await client.get("/api/posts?page=3")).get_json()
    assert [p["title"] for p in last["items"]] == ["post 1", "post 0"]
    beyond = await (await client.get("/api/posts?page=4")).get_json()
    assert beyond["items"] == [] and beyond["total"] == 12
    await assert_error(await client.get("/api/posts?per_page=51"), 422)
    await assert_error(await client.get("/api/posts?page=0"), 422)
    mine = await (await client.get("/api/users/ada/posts?per_page=50")).get_json()
    assert mine["total"] == 12 and mine["items"][0]["author"]["username"] == "ada"
    await assert_error(await client.get("/api/users/nobody/posts"), 404)


async def test_only_the_author_edits_and_a_stale_edit_is_refused(app: Quart, client: Any) -> None:
    ada, bob = await author(client, "ada"), await author(client, "bob")
    created = await write(client, ada)
    location, etag = created.headers["Location"], created.headers["ETag"]
    post_id = (await created.get_json())["id"]
    assert location == f"/api/posts/{post_id}"
    read = await client.get(location)
    assert read.headers["ETag"] == etag
    # No If-Match: 428. Someone else's post: 403. A missing post: 404.
    await assert_error(await client.patch(location, json={"title": "x"}, headers=ada), 428)
    await assert_error(
        await client.patch(location, json={"title": "x"}, headers={**bob, "If-Match": etag}), 403
    )
    missing = {**ada, "If-Match": '"999999-1"'}
    await assert_error(
        await client.patch("/api/posts/999999", json={"title": "x"}, headers=missing), 404
    )
    edited = await client.patch(
        location, json={"title": "Edited"}, headers={**ada, "If-Match": etag}
    )
    assert edited.status_code == 200, await edited.get_data(as_text=True)
    assert (await edited.get_json())["title"] == "Edited"
    assert edited.headers["ETag"] != etag
    # A second editor still holding the old ETag does not overwrite the first one's edit.
    stale = await client.patch(
        location, json={"content": "mine"}, headers={**ada, "If-Match": etag}
    )
    await assert_error(stale, 412, code="stale_post")
    assert (await (await client.get(location)).get_json())["content"] == "World"
    await assert_error(await client.delete(location, headers={**ada, "If-Match": etag}), 412)
    await assert_error(
        await client.delete(location, headers={**bob, "If-Match": edited.headers["ETag"]}), 403
    )
    gone = await client.delete(location, headers={**ada, "If-Match": edited.headers["ETag"]})
    assert gone.status_code == 200
    await assert_error(await client.get(location), 404)
    topics = [
        r[0]
        for r in await sql(app, "SELECT topic FROM outbox WHERE topic LIKE 'post.%' ORDER BY id")
    ]
    assert topics == ["post.created", "post.updated", "post.deleted"]


async def test_two_simultaneous_edits_of_one_version_one_wins(app: Quart, client: Any) -> None:
    ada = await author(client, "ada")
    created = await write(client, ada)
    headers = {**ada, "If-Match": created.headers["ETag"]}
    answers = await asyncio.gather(*(
        client.patch(created.headers["Location"], json={"content": f"edit {n}"}, headers=headers)
        for n in range(4)
    ))  # fmt: skip
    assert sorted(a.status_code for a in answers) == [200, 412, 412, 412]


async def test_create_is_idempotent_with_a_key(app: Quart, client: Any) -> None:
    ada = await author(client, "ada")
    headers = {**ada, "Idempotency-Key": "post-once-1"}
    body = {"title": "Once", "content": "only once"}
    first = await client.post("/api/posts", json=body, headers=headers)
    again = await client.post("/api/posts", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await again.get_json())["id"] == (await first.get_json())["id"]
    assert (await sql(app, "SELECT count(*) FROM posts")) == [(1,)]


async def test_limits_and_escaping(app: Quart, client: Any) -> None:
    ada = await author(client, "ada")
    await assert_error(
        await client.post("/api/posts", json={"title": "x" * 101, "content": "c"}, headers=ada), 422
    )
    await assert_error(
        await client.post("/api/posts", json={"title": "t", "content": "c" * 20_001}, headers=ada),
        422,
    )
    await assert_error(
        await client.post("/api/posts", json={"title": " ", "content": "c"}, headers=ada), 422
    )
    await assert_error(await client.post("/api/posts", json={"title": "t", "content": "c"}), 401)
    created = await write(
        client,
        ada,
        "<script>alert(1)</script>",
        "<script>x</script>\nline two https://example.com/?a=1",
    )
    post_id = (await created.get_json())["id"]
    page = await (await client.get(f"/post/{post_id}")).get_data(as_text=True)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<br>" in page
    assert '<a href="https://example.com/?a=1" rel="nofollow noopener noreferrer">' in page
