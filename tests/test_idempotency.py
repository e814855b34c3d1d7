"""``Idempotency-Key`` on the POST routes with side effects (SECURITY.md, IETF
draft-ietf-httpapi-idempotency-key-header): the same key from the same caller within 24 h gets
the first answer again and the work is done once. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from quart import Quart

from issuer.accounts.service import Accounts
from issuer.clock import ManualClock
from tests.accounts.conftest import PASSWORD, assert_error, from_ip, running, sql
from tests.fakes import FakeAgent
from tests.issuance.test_portal import connect, start


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def users(app: Quart) -> int:
    return int((await sql(app, "SELECT count(*) FROM users"))[0][0])


def signup_body(email: str = "ada@example.com") -> dict[str, str]:
    return {"email": email, "password": PASSWORD, "first_name": "Ada"}


async def test_a_repeated_key_gets_the_first_answer_without_the_work(
    app: Quart, client: Any
) -> None:
    headers = key()
    first = await client.post("/signup", json=signup_body(), headers=headers)
    assert first.status_code == 200 and "Idempotent-Replayed" not in first.headers
    outbox = await sql(app, "SELECT count(*) FROM outbox")
    again = await client.post("/signup", json=signup_body(), headers=headers)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert await again.get_json() == await first.get_json()
    assert await users(app) == 1
    assert await sql(app, "SELECT count(*) FROM outbox") == outbox  # no second email or event


async def test_the_same_key_with_another_body_is_refused(app: Quart, client: Any) -> None:
    headers = key()
    assert (await client.post("/signup", json=signup_body(), headers=headers)).status_code == 200
    response = await client.post("/signup", json=signup_body("eve@example.com"), headers=headers)
    await assert_error(response, 422, code="idempotency_key_reused")
    assert await users(app) == 1


async def test_concurrent_requests_with_one_key_do_the_work_once(app: Quart, client: Any) -> None:
    headers = key()
    body = {"username": "concurrent", "password": PASSWORD}
    responses = await asyncio.gather(
        *(client.post("/register", json=body, headers=headers) for _ in range(8))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 409}, statuses
    for response in responses:
        if response.status_code == 409:
            await assert_error(response, 409, code="idempotency_in_progress")
            assert response.headers["Retry-After"] == "1"
    assert await users(app) == 1
    replay = await client.post("/register", json=body, headers=headers)
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"


async def test_keys_belong_to_their_caller(app: Quart, client: Any) -> None:
    headers = key()
    one = await client.post("/signup", json=signup_body("a@example.com"), headers=headers)
    other = await client.post(
        "/signup", json=signup_body("b@example.com"), headers=headers, **from_ip("192.0.2.7")
    )
    assert one.status_code == other.status_code == 200
    assert "Idempotent-Replayed" not in other.headers
    assert await users(app) == 2


async def test_a_failed_attempt_does_not_keep_the_key(
    app: Quart, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = key()
    real = Accounts.register

    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("the database hiccuped")

    monkeypatch.setattr(Accounts, "register", broken)
    assert (await client.post("/signup", json=signup_body(), headers=headers)).status_code == 500
    monkeypatch.setattr(Accounts, "register", real)
    retried = await client.post("/signup", json=signup_body(), headers=headers)
    assert retried.status_code == 200 and "Idempotent-Replayed" not in retried.headers
    assert await users(app) == 1


async def test_refusals_are_kept_like_any_answer(app: Quart, client: Any) -> None:
    headers = key()
    weak = {**signup_body(), "password": "short"}
    first = await client.post("/signup", json=weak, headers=headers)
    again = await client.post("/signup", json=weak, headers=headers)
    assert first.status_code == again.status_code == 422
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_malformed_keys_are_refused(client: Any) -> None:
    for bad in ("", "has space", "x" * 256, "ünïcode"):
        response = await client.post(
            "/signup", json=signup_body(), headers={"Idempotency-Key": bad}
        )
        await assert_error(response, 400, code="bad_idempotency_key")


async def test_keys_expire_after_a_day(overrides: dict[str, Any]) -> None:
    clock = ManualClock()
    async with running(overrides, clock=clock) as app:
        client = app.test_client()
        headers = key()
        body = {"username": "daily", "password": PASSWORD}
        assert (await client.post("/register", json=body, headers=headers)).status_code == 200
        clock.advance(24 * 3600 + 1)
        again = await client.post("/register", json=body, headers=headers)
        # A new request: the work runs again (and finds the username taken).
        assert again.status_code == 409 and "Idempotent-Replayed" not in again.headers


async def test_a_double_submitted_name_form_sends_one_offer(
    app: Quart, client: Any, fake_agent: FakeAgent
) -> None:
    session_id, csrf = await start(client)
    await connect(app, fake_agent, session_id)
    form = {"prename": "Ada", "surname": "Lovelace", "institution": "ETH", "csrf_token": csrf}
    headers = {**key(), "Accept": "application/json"}
    first = await client.post("/name", form=form, headers=headers)
    again = await client.post("/name", form=form, headers=headers)
    assert first.status_code == again.status_code == 200
    assert await again.get_json() == await first.get_json()
    assert len(fake_agent.offers) == 1


async def test_the_openapi_document_describes_the_header(client: Any) -> None:
    spec = await (await client.get("/openapi.json")).get_json()
    for path in ("/signup", "/register", "/name"):
        parameters = spec["paths"][path]["post"].get("parameters", [])
        names = {(p["name"].lower(), p["in"]) for p in parameters}
        assert ("idempotency-key", "header") in names, (path, parameters)
