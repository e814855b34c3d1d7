"""SECURITY.md "Passwords" 11.4.2, 6.2.x: argon2id, rehash and upgrade, length rules, changing."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import argon2
import bcrypt
from quart import Quart

from issuer.accounts.models import User
from issuer.db import utcnow
from issuer.services import services_of
from tests.accounts.conftest import (
    PASSWORD,
    assert_error,
    bearer,
    login,
    register,
    register_and_login,
    running,
    stored_hash,
)

NEW_PASSWORD = "a brand new passphrase"


def params(encoded: str) -> argon2.Parameters:
    return argon2.extract_parameters(encoded)


async def add_user(app: Quart, username: str, password_hash: str) -> None:
    """A row as an import from an older system would leave it."""
    async with services_of(app).db.transaction() as session:
        session.add(
            User(
                entity_id=uuid.uuid4(),
                username=username,
                username_key=username.casefold(),
                password_hash=password_hash,
                created_at=utcnow(),
            )
        )


async def test_stored_hash_is_argon2id_with_owasp_parameters(app: Quart, client: Any) -> None:
    assert (await register(client)).status_code == 200
    encoded = await stored_hash(app, "alice")
    assert encoded.startswith("$argon2id$") and PASSWORD not in encoded
    found = params(encoded)
    assert found.type is argon2.Type.ID
    assert found.memory_cost >= 19 * 1024 and found.time_cost >= 2 and found.parallelism >= 1
    assert found.salt_len >= 16 and found.hash_len >= 32


async def test_hashing_and_verifying_run_off_the_event_loop(app: Quart, client: Any) -> None:
    hashing = services_of(app).passwords.hashing
    threads: list[threading.Thread] = []

    def recording(function: Any) -> Any:
        def wrapper(*args: Any) -> Any:
            threads.append(threading.current_thread())
            return function(*args)

        return wrapper

    hashing.hash = recording(hashing.hash)
    hashing.verify = recording(hashing.verify)
    await register_and_login(client)  # one hash, one verify
    await assert_error(await login(client, "nobody"), 401)  # the dummy verify
    assert len(threads) == 3
    loop_thread = threading.current_thread()
    assert all(t is not loop_thread and t is not threading.main_thread() for t in threads)
    assert all(t.name.startswith("argon2") for t in threads)


async def test_rehash_on_login_when_parameters_change(overrides: dict[str, Any]) -> None:
    async with running(overrides, clean=False, argon2_time_cost=1) as old:
        assert (await register(old.test_client())).status_code == 200
        assert params(await stored_hash(old, "alice")).time_cost == 1
    async with running(overrides) as new:
        client = new.test_client()
        before = await stored_hash(new, "alice")
        await assert_error(await login(client, password="wrong password"), 401)
        assert await stored_hash(new, "alice") == before  # only a correct password rehashes
        assert (await login(client)).status_code == 200
        after = params(await stored_hash(new, "alice"))
        assert after.time_cost == 2 and after.memory_cost >= 19 * 1024
        assert (await login(client)).status_code == 200


async def test_legacy_bcrypt_hash_verifies_once_and_is_upgraded(app: Quart, client: Any) -> None:
    legacy = bcrypt.hashpw(b"legacy secret", bcrypt.gensalt(rounds=4)).decode()
    await add_user(app, "olduser", legacy)
    await assert_error(await login(client, "olduser", "wrong secret"), 401)
    assert await stored_hash(app, "olduser") == legacy
    assert (await login(client, "olduser", "legacy secret")).status_code == 200
    upgraded = await stored_hash(app, "olduser")
    assert upgraded.startswith("$argon2id$") and params(upgraded).time_cost >= 2
    assert (await login(client, "olduser", "legacy secret")).status_code == 200
    await assert_error(await login(client, "olduser", "wrong secret"), 401)


async def test_absurd_imported_hashes_are_refused_fast(app: Quart, client: Any) -> None:
    salt, digest = "c29tZXNhbHRzb21lc2FsdA", "A" * 43
    cheap_bcrypt = bcrypt.hashpw(b"whatever", bcrypt.gensalt(rounds=4)).decode()
    rows = {
        "hugememory": f"$argon2id$v=19$m=4194304,t=2,p=1${salt}${digest}",
        "hugetime": f"$argon2id$v=19$m=19456,t=100000,p=1${salt}${digest}",
        "bcrypt31": cheap_bcrypt.replace("$04$", "$31$", 1),
        "garbage": "not a hash at all",
    }
    for username, encoded in rows.items():
        await add_user(app, username, encoded)
    for username in rows:
        started = time.perf_counter()
        response = await login(client, username, "whatever")
        elapsed = time.perf_counter() - started
        await assert_error(response, 401, "Authentication failed")
        assert elapsed < 1.0, (username, elapsed)


async def test_length_rules_without_truncation(client: Any) -> None:
    await assert_error(await register(client, "seven", "1234567"), 422, code="weak_password")
    assert (await register(client, "eight", "12345678")).status_code == 200
    # No composition rules: lower-case letters only are fine.
    assert (await register(client, "plain", "onlylowercaseletters")).status_code == 200
    for length in (64, 100, 1000):
        secret = "".join(chr(ord("a") + i % 26) for i in range(length))
        username = f"len{length}"
        assert (await register(client, username, secret)).status_code == 200
        assert (await login(client, username, secret)).status_code == 200
        # The same but for one character near the end: no truncation anywhere.
        near_end = length - 10
        other = (
            secret[:near_end] + ("#" if secret[near_end] != "#" else "$") + secret[near_end + 1 :]
        )
        await assert_error(await login(client, username, other), 401)
        await assert_error(await login(client, username, secret[:-1]), 401)
    await assert_error(await register(client, "toolong", "x" * 5000), 422)


async def test_unicode_passwords(client: Any) -> None:
    secret = "pässwörd 🔑 日本語 пароль"
    assert (await register(client, "unicode", secret)).status_code == 200
    assert (await login(client, "unicode", secret)).status_code == 200
    await assert_error(await login(client, "unicode", secret.replace("🔑", "🔒")), 401)
    # Eight characters, more than eight bytes: the rule counts characters.
    assert (await register(client, "emoji", "🔑" * 8)).status_code == 200
    assert (await login(client, "emoji", "🔑" * 8)).status_code == 200


async def test_update_password(client: Any) -> None:
    current = await register_and_login(client)
    other = await (await login(client)).get_json()
    auth = bearer(current["token"])

    async def update(body: dict[str, Any], headers: dict[str, str] = auth) -> Any:
        return await client.post("/update_password", json=body, headers=headers)

    await assert_error(await update({"existing_password": PASSWORD}, {}), 401, "Token is missing")
    await assert_error(
        await update({"existing_password": PASSWORD}), 400, "Please provide a new password."
    )
    await assert_error(
        await update({"new_password": NEW_PASSWORD}), 400, "Please provide an existing password."
    )
    await assert_error(
        await update({"existing_password": PASSWORD, "new_password": PASSWORD}),
        400,
        "Existing and new password cannot be same.",
    )
    await assert_error(
        await update({"existing_password": "not my password", "new_password": NEW_PASSWORD}),
        400,
        "Provided existing password is invalid",
    )
    await assert_error(
        await update({"existing_password": PASSWORD, "new_password": "short"}),
        422,
        code="weak_password",
    )
    # Nothing changed so far; every session still works.
    assert (await client.get("/auth/status", headers=bearer(other["token"]))).status_code == 200

    response = await update({"existing_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert response.status_code == 200
    assert await response.get_json() == {"success": True, "message": "Password has been updated!!"}
    # This session goes on; the others are over (tokens and refresh tokens).
    assert (await client.get("/auth/status", headers=auth)).status_code == 200
    await assert_error(await client.get("/auth/status", headers=bearer(other["token"])), 401)
    response = await client.post("/token/refresh", json={"refresh_token": other["refresh_token"]})
    await assert_error(response, 401)
    await assert_error(await login(client), 401, "Authentication failed")
    assert (await login(client, password=NEW_PASSWORD)).status_code == 200
