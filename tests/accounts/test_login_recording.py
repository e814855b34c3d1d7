"""What a password login records, and when it records nothing: the login session, the user's
last login and its ``session.opened`` event are written together (one statement on
PostgreSQL, ``issuer.accounts.queries.open_login``), and only if the password verified is
still the stored one. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from quart import Quart

from issuer.accounts.models import User
from issuer.accounts.passwords import Passwords
from issuer.db import utcnow
from issuer.lib.passwords import PasswordHashing, Verification
from issuer.services import services_of
from tests.accounts.conftest import (
    assert_error,
    claims_of,
    login,
    register,
    register_and_login,
    running,
    sql,
    stored_hash,
)

CHEAP = {
    "argon2_memory_kib": 1024,
    "argon2_time_cost": 1,
    "login_limit_per_ip": 10_000,
    "login_limit_per_account": 10_000,
}


async def recorded(app: Quart) -> tuple[int, list[Any], Any]:
    """Login sessions, ``session.opened`` events (seq, session id) and alice's last login."""
    sessions = (await sql(app, "SELECT count(*) FROM login_sessions"))[0][0]
    events = await sql(
        app, "SELECT seq, payload FROM outbox WHERE topic = 'session.opened' ORDER BY seq"
    )
    (last,) = await sql(app, "SELECT last_login_at, event_seq FROM users WHERE username = 'alice'")
    return int(sessions), list(events), tuple(last)


def session_of(payload: Any) -> str:
    data = payload if isinstance(payload, dict) else json.loads(payload)
    return str(data["data"]["session"]["id"])


async def test_a_login_writes_its_session_last_login_and_event_together(
    app: Quart, client: Any
) -> None:
    assert (await register(client)).status_code == 200
    _, _, (never, seq_before) = await recorded(app)
    assert never is None
    body = await (await login(client)).get_json()
    sid = claims_of(body["access_token"])["sid"]
    sessions, events, (last_login, seq) = await recorded(app)
    assert sessions == 1 and last_login is not None
    assert [(row[0], session_of(row[1])) for row in events] == [(seq_before + 1, sid)]
    assert seq == seq_before + 1  # the user's event counter is the event's number
    (row,) = await sql(app, "SELECT user_id, kind, refresh_jti FROM login_sessions WHERE id = :s",
                       s=sid)  # fmt: skip
    assert row[1] == "api" and row[2] == claims_of(body["refresh_token"])["jti"]


async def test_a_password_changed_during_the_verify_wins(
    app: Quart, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await register(client)).status_code == 200
    before = await recorded(app)
    real = Passwords.verify

    async def reset_meanwhile(self: Passwords, stored: str | None, password: str) -> Any:
        checked = await real(self, stored, password)
        # A reset commits while the hash is being checked: the login must not go through.
        await sql(app, "UPDATE users SET password_hash = 'reset' WHERE username = 'alice'")
        return checked

    monkeypatch.setattr(Passwords, "verify", reset_meanwhile)
    await assert_error(await login(client), 401, code="authentication_failed")
    assert await recorded(app) == before  # no session, no event, no last login
    assert await stored_hash(app, "alice") == "reset"


async def test_a_rehash_is_stored_by_the_login_that_checked_it(
    overrides: dict[str, Any],
) -> None:
    async with running(overrides, clean=False, argon2_time_cost=1) as old:
        assert (await register(old.test_client())).status_code == 200
        old_hash = await stored_hash(old, "alice")
    async with running(overrides) as new:
        assert (await login(new.test_client())).status_code == 200
        sessions, events, _ = await recorded(new)
        assert sessions == 1 and len(events) == 1
        assert await stored_hash(new, "alice") != old_hash


async def add_passwordless(app: Quart, username: str) -> None:
    """An account made by a social login: no password at all."""
    async with services_of(app).db.transaction() as session:
        session.add(
            User(
                entity_id=uuid.uuid4(), username=username, username_key=username,
                password_hash=None, created_at=utcnow(),
            )
        )  # fmt: skip


async def test_an_account_without_a_password_never_logs_in_with_one(
    app: Quart, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_passwordless(app, "social-only")

    async def always(self: Passwords, stored: str | None, password: str) -> Verification:
        return Verification(True)  # whatever the hash compared: the row has no password

    monkeypatch.setattr(Passwords, "verify", always)
    await assert_error(await login(client, "social-only", "anything at all"), 401)
    assert (await sql(app, "SELECT count(*) FROM login_sessions"))[0][0] == 0


def test_the_dummy_hash_is_of_no_known_password() -> None:
    hashing = PasswordHashing(time_cost=1, memory_kib=1024)
    # The dummy was once the hash of a fixed sentence: with no stored hash, that sentence was
    # a password of every account without one.
    assert not hashing.verify(hashing.dummy_hash, "not a real password, only for timing").ok
    assert PasswordHashing(time_cost=1, memory_kib=1024).dummy_hash != hashing.dummy_hash


async def test_concurrent_logins_number_their_events_in_order(overrides: dict[str, Any]) -> None:
    async with running(overrides, **CHEAP) as app:
        client = app.test_client()
        await register_and_login(client)
        answers = await asyncio.gather(*(login(client) for _ in range(8)))
        assert [a.status_code for a in answers] == [200] * 8
        sessions, events, (_, seq) = await recorded(app)
        numbers = [row[0] for row in events]
        assert sessions == 9 and numbers == list(range(numbers[0], numbers[0] + 9))
        assert seq == numbers[-1]
        sids = {claims_of((await a.get_json())["access_token"])["sid"] for a in answers}
        assert sids <= {session_of(row[1]) for row in events}
