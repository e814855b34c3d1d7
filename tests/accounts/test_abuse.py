"""SECURITY.md "Abuse and enumeration" and "Nothing lost": rate limits, proxies, same answers,
concurrent registrations."""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import time
from typing import Any

import argon2
import pytest
from quart import Quart
from redis import asyncio as redis

from issuer.services import services_of
from tests.accounts.conftest import (
    PASSWORD,
    assert_error,
    bearer,
    from_ip,
    login,
    register,
    running,
    sql,
)

PROXY = "10.0.0.1"
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RELAXED: dict[str, Any] = {"login_limit_per_ip": 1000, "login_limit_per_account": 1000}


def via_proxy(client_ip: str) -> dict[str, Any]:
    """A request that reached us through our reverse proxy on behalf of ``client_ip``."""
    return {**from_ip(PROXY), "headers": {"X-Forwarded-For": client_ip}}


async def assert_limited(response: Any) -> None:
    await assert_error(response, 429)
    assert int(response.headers["Retry-After"]) >= 1


async def test_login_limit_per_ip(overrides: dict[str, Any]) -> None:
    async with running(overrides, login_limit_per_ip=4, login_limit_per_account=100) as app:
        client = app.test_client()
        for i in range(4):
            await assert_error(await login(client, f"user{i}", **from_ip("192.0.2.1")), 401)
        await assert_limited(await login(client, "user9", **from_ip("192.0.2.1")))
        # Another address is not affected.
        await assert_error(await login(client, "user9", **from_ip("192.0.2.2")), 401)


async def test_login_limit_per_account_does_not_lock_the_victim_out(
    overrides: dict[str, Any],
) -> None:
    async with running(
        overrides, login_limit_per_ip=100, login_limit_per_account=3, trusted_proxies=PROXY
    ) as app:
        client = app.test_client()
        assert (await register(client)).status_code == 200
        attacker = via_proxy("203.0.113.66")
        for _ in range(3):
            await assert_error(await login(client, password="guess", **attacker), 401)
        await assert_limited(await login(client, password="guess", **attacker))
        # The right password does not get through either, nor another spelling of the name.
        await assert_limited(await login(client, **attacker))
        await assert_limited(await login(client, "ALICE", password="guess", **attacker))
        response = await client.post(
            "/login", json={"email": " Alice ", "password": "guess"}, **attacker
        )
        await assert_limited(response)
        # Other accounts from the attacker's address are only limited per IP.
        await assert_error(await login(client, "bob", **attacker), 401)
        # The victim, from their own address, logs in.
        response = await login(client, **via_proxy("198.51.100.7"))
        assert response.status_code == 200
        token = (await response.get_json())["token"]
        sessions = (await (await client.get("/sessions", headers=bearer(token))).get_json())[
            "sessions"
        ]
        assert [s["ip"] for s in sessions] == ["198.51.100.7"]


async def test_forwarded_for_is_believed_only_from_trusted_proxies(
    overrides: dict[str, Any],
) -> None:
    async with running(
        overrides, login_limit_per_ip=3, login_limit_per_account=100, trusted_proxies=PROXY
    ) as app:
        client = app.test_client()
        # An untrusted peer rotating made-up X-Forwarded-For (and Remote-Addr) values.
        for i in range(3):
            spoof = {"X-Forwarded-For": f"198.51.100.{i}", "Remote-Addr": f"198.51.100.{i}"}
            response = await login(client, f"u{i}", headers=spoof, **from_ip("192.0.2.50"))
            await assert_error(response, 401)
        spoof = {"X-Forwarded-For": "198.51.100.99"}
        await assert_limited(await login(client, "u9", headers=spoof, **from_ip("192.0.2.50")))
        # Through the trusted proxy, entries the client prepended itself are not believed.
        for i in range(3):
            chain = {"X-Forwarded-For": f"1.2.3.{i}, 203.0.113.5"}
            response = await login(client, f"v{i}", headers=chain, **from_ip(PROXY))
            await assert_error(response, 401)
        chain = {"X-Forwarded-For": "1.2.3.99, 203.0.113.5"}
        await assert_limited(await login(client, "v9", headers=chain, **from_ip(PROXY)))


async def timed(call: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    response = await call()
    return time.perf_counter() - started, response


async def answer(response: Any) -> tuple[int, str, str | None]:
    return (
        response.status_code,
        await response.get_data(as_text=True),
        response.headers.get("WWW-Authenticate"),
    )


def alike(pairs: list[tuple[float, float]]) -> bool:
    """Alike within noise. Each pair is measured back to back, so both of its tries meet the
    same load from elsewhere on the machine; the median of the per-pair ratios is the figure. A
    real leak (skipping the ~20 ms argon2 verify for unknown accounts) is a ratio of 10 or more."""
    ratio = statistics.median(a / b for a, b in pairs)
    return 0.5 <= ratio <= 2.0


async def test_unknown_account_and_wrong_password_answer_alike(overrides: dict[str, Any]) -> None:
    async with running(overrides, **RELAXED) as app:
        client = app.test_client()
        assert (await register(client)).status_code == 200
        await client.post("/register", json={"email": "known@example.com", "password": PASSWORD})
        hashing = services_of(app).passwords.hashing
        verified: list[str] = []
        original_verify = hashing.verify

        def verify(stored: str, password: str) -> Any:
            verified.append(stored)
            return original_verify(stored, password)

        hashing.verify = verify
        pairs = {
            "username": (
                lambda: login(client, "nobody", "wrong password"),
                lambda: login(client, "alice", "wrong password"),
            ),
            "email": (
                lambda: client.post(
                    "/login", json={"email": "nobody@example.com", "password": "wrong password"}
                ),
                lambda: client.post(
                    "/login", json={"email": "known@example.com", "password": "wrong password"}
                ),
            ),
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in pairs}
        answers: set[Any] = set()
        await login(client)  # warm up
        for round_ in range(7):
            for name, (unknown, known) in pairs.items():
                # Alternate which goes first, so neither always meets a cold cache.
                order = (unknown, known) if round_ % 2 else (known, unknown)
                (t1, r1), (t2, r2) = [await timed(call) for call in order]
                times[name].append((t1, t2) if round_ % 2 else (t2, t1))
                answers |= {await answer(r1), await answer(r2)}
        assert len(answers) == 1, answers
        ((status, body, _),) = answers
        assert status == 401 and '"Authentication failed"' in body
        # The same work either way: one argon2 verify per try, with the same parameters.
        assert len(verified) == 1 + 7 * 4
        expected = argon2.extract_parameters(hashing.dummy_hash)
        assert all(argon2.extract_parameters(h) == expected for h in verified)
        for name, measured in times.items():
            assert alike(measured), (name, measured)


async def test_concurrent_registrations_of_one_email(app: Quart, client: Any) -> None:
    body = {"email": "race@example.com", "password": PASSWORD}
    responses = await asyncio.gather(*(client.post("/register", json=body) for _ in range(16)))
    answers = {await answer(r) for r in responses}
    assert len(answers) == 1, answers
    assert next(iter(answers))[0] == 200
    rows = await sql(app, "SELECT count(*) FROM users WHERE email_key = 'race@example.com'")
    assert rows[0][0] == 1
    assert (await client.post("/login", json=body)).status_code == 200


async def test_concurrent_registrations_of_one_username(app: Quart, client: Any) -> None:
    responses = await asyncio.gather(*(register(client, "racer") for _ in range(16)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 15, statuses
    for response in responses:
        if response.status_code == 409:
            await assert_error(
                response, 409, "User registered already, Please login", "user_exists"
            )
    rows = await sql(app, "SELECT count(*) FROM users WHERE username_key = 'racer'")
    assert rows[0][0] == 1


async def test_known_and_unknown_emails_register_alike(client: Any) -> None:
    assert (
        await client.post("/register", json={"email": "taken@example.com", "password": PASSWORD})
    ).status_code == 200
    answers = set()
    for path, extra in (("/register", {}), ("/signup", {"login_method": "signup"})):
        for email in ("taken@example.com", "TAKEN@example.com", f"free{path[1:]}@example.com"):
            response = await client.post(path, json={"email": email, "password": PASSWORD, **extra})
            answers.add((path, await answer(response)))
    assert len(answers) == 2, answers  # one answer per endpoint
    assert all(status == 200 for _, (status, _, _) in answers)


async def test_username_with_a_taken_email_does_not_reveal_the_email(client: Any) -> None:
    """Only a taken *username* answers 409; a taken email stays secret even next to a new name."""
    body = {"email": "secret@example.com", "password": PASSWORD}
    assert (await client.post("/register", json=body)).status_code == 200
    with_taken_email = await client.post("/register", json={**body, "username": "newname1"})
    with_free_email = await client.post(
        "/register", json={**body, "email": "other@example.com", "username": "newname2"}
    )
    assert await answer(with_taken_email) == await answer(with_free_email)
    assert with_taken_email.status_code == 200
    response = await client.post("/register", json={**body, "username": "newname2"})
    await assert_error(response, 409, "User registered already, Please login")


@pytest.fixture
async def redis_url() -> str:
    client = redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, redis.ConnectionError) as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    finally:
        await client.aclose()
    return REDIS_URL


async def test_login_limits_are_shared_through_redis(
    overrides: dict[str, Any], redis_url: str
) -> None:
    """Two workers with one Redis see one limit (quart-rate-limiter's RedisStore)."""
    address = f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(256)}"
    shared = {"redis_url": redis_url, "login_limit_per_ip": 3, "login_limit_per_account": 100}
    async with (
        running(overrides, clean=False, **shared) as first,
        running(overrides, **shared) as second,
    ):
        for i, app in enumerate((first, second, first)):
            response = await login(app.test_client(), f"u{i}", **from_ip(address))
            await assert_error(response, 401)
        await assert_limited(await login(second.test_client(), "u9", **from_ip(address)))
    # Every key the limits wrote expires once the limit has recovered (no unbounded growth).
    client = redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"*{address}*")]
        assert keys
        for key in keys:
            assert 0 < await client.pttl(key) <= 61_000, key
        await client.delete(*keys)
    finally:
        await client.aclose()


async def guesses_at_once(apps: list[Quart], address: str, attempts: int = 24) -> list[int]:
    """The statuses of ``attempts`` logins sent at once from ``address``, spread over
    ``apps`` (workers), sorted."""
    clients = [app.test_client() for app in apps]
    answers = await asyncio.gather(
        *(login(clients[i % len(apps)], f"guess{i}", **from_ip(address)) for i in range(attempts))
    )
    return sorted(answer.status_code for answer in answers)


async def test_concurrent_logins_get_no_more_than_the_limit(overrides: dict[str, Any]) -> None:
    """A guesser sending its attempts all at once gets the limit and no more (ASVS 2.2.1):
    the check and the count of one attempt are one step, not a read and a later write that
    concurrent attempts all pass between (with the library's stores, 24 of 24 got through)."""
    limits = {"login_limit_per_ip": 3, "login_limit_per_account": 100, "login_limit_period": 3600}
    async with running(overrides, **limits) as app:
        statuses = await guesses_at_once([app], "192.0.2.77")
    assert statuses == [401] * 3 + [429] * 21, statuses.count(401)


async def test_concurrent_logins_through_redis_get_no_more_than_the_limit(
    overrides: dict[str, Any], redis_url: str
) -> None:
    """The same with two workers sharing Redis: one Lua script checks and counts."""
    address = f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(256)}"
    shared = {
        "redis_url": redis_url, "login_limit_per_ip": 3, "login_limit_per_account": 100,
        "login_limit_period": 3600,
    }  # fmt: skip
    try:
        async with (
            running(overrides, clean=False, **shared) as first,
            running(overrides, **shared) as second,
        ):
            statuses = await guesses_at_once([first, second], address)
    finally:
        client = redis.from_url(redis_url)
        try:
            keys = [key async for key in client.scan_iter(match=f"*{address}*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()
    assert statuses == [401] * 3 + [429] * 21, statuses.count(401)


async def test_with_redis_out_of_reach_a_limited_route_answers_503_and_others_work(
    overrides: dict[str, Any],
) -> None:
    """The shared counts cannot be read: a limited request is refused as unavailable (not a
    500, not admitted uncounted); a route without limits is not affected."""
    async with running(overrides, redis_url="redis://127.0.0.1:9/0") as app:
        client = app.test_client()
        response = await login(client, "someone", **from_ip("192.0.2.90"))
        body = await assert_error(response, 503)
        assert body["error"] == "limits_unavailable" and response.headers["Retry-After"]
        assert (await client.get("/health")).status_code == 200
