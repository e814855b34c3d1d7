"""The workers' memory of login sessions (``issuer.accounts.principals``) on PostgreSQL: an
authenticated request it can answer reads nothing from the database, and every change — a
logout on another worker, an operator's manual ``UPDATE``, a revocation while the LISTEN
connection is down — is refused at once."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from quart import Quart
from sqlalchemy import event

from issuer import create_app
from issuer.accounts.models import LoginSession, User
from issuer.accounts.principals import PrincipalCache
from issuer.lib.tokens import Purpose
from issuer.services import services_of
from tests.accounts.conftest import PASSWORD
from tests.conftest import PG_ADMIN_DSN, truncate


def cache_of(app: Quart) -> PrincipalCache:
    return services_of(app).sessions.principals


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for ``condition`` (a notification's effect), failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def overrides_for(database_url: str) -> dict[str, Any]:
    return {
        "env": "test", "database_url": database_url, "secret_key": secrets.token_urlsafe(32),
        "agent": None, "sweep_interval": 3600, "rate_limits_enabled": False,
        "argon2_memory_kib": 1024, "argon2_time_cost": 1,
    }  # fmt: skip


@asynccontextmanager
async def workers(database_url: str) -> AsyncIterator[tuple[Quart, Quart]]:
    """Two apps on one database, as two hypercorn workers would be (one secret key)."""
    overrides = overrides_for(database_url)
    a, b = create_app(overrides), create_app(overrides)
    async with a.test_app(), b.test_app():
        try:
            if database_url.startswith("postgresql"):
                await until(lambda: cache_of(a).enabled and cache_of(b).enabled)
            yield a, b
        finally:
            await truncate(a)


async def logged_in(app: Quart) -> tuple[str, str]:
    """A new account's access token and login-session id."""
    client = app.test_client()
    email = f"{secrets.token_hex(4)}@example.test"
    assert (
        await client.post("/register", json={"email": email, "password": PASSWORD})
    ).status_code == 200
    body = await (
        await client.post("/login", json={"email": email, "password": PASSWORD})
    ).get_json()
    token: str = body["access_token"]
    return token, services_of(app).sessions.claims(token, Purpose.ACCESS).sid


async def status(app: Quart, token: str) -> int:
    answer = await app.test_client().get(
        "/auth/status", headers={"Authorization": f"Bearer {token}"}
    )
    return answer.status_code


@asynccontextmanager
async def statements(app: Quart) -> AsyncIterator[list[str]]:
    """The SQL statements ``app`` sends meanwhile."""
    seen: list[str] = []
    engine = services_of(app).db.engine.sync_engine

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://")


async def settled(database_url: str, *apps: Quart) -> None:
    """Every notification committed so far has been heard by ``apps``: PostgreSQL delivers
    them in commit order, so once a marker sent now arrives, the earlier ones have (a login's
    own change of its user may otherwise evict a row after the test has read it)."""
    before = [cache_of(app).generation for app in apps]
    conn = await asyncpg.connect(dsn(database_url))
    try:
        await conn.execute("SELECT pg_notify('issuer_principals', 'u:0')")
    finally:
        await conn.close()
    await until(lambda: all(cache_of(a).generation > g for a, g in zip(apps, before, strict=True)))


@pytest.mark.postgres
async def test_a_cached_login_needs_no_query_and_a_logout_elsewhere_ends_it(
    postgresql_url: str,
) -> None:
    async with workers(postgresql_url) as (a, b):
        token, sid = await logged_in(a)
        await settled(postgresql_url, a, b)
        assert await status(b, token) == 200  # read from the database, remembered
        assert cache_of(b).get(sid) is not None
        async with statements(b) as sent:
            assert await status(b, token) == 200
        assert sent == []
        assert (
            await a.test_client().post("/logout", headers={"Authorization": f"Bearer {token}"})
        ).status_code == 200
        # The worker that revoked forgot at commit; the other when the notification came.
        assert await status(a, token) == 401
        await until(lambda: cache_of(b).get(sid) is None)
        assert await status(b, token) == 401


@pytest.mark.postgres
async def test_an_operator_s_manual_update_reaches_every_worker(postgresql_url: str) -> None:
    async with workers(postgresql_url) as (a, b):
        token, sid = await logged_in(a)
        await settled(postgresql_url, a, b)
        assert await status(a, token) == 200 and await status(b, token) == 200
        conn = await asyncpg.connect(dsn(postgresql_url))
        try:
            await conn.execute(
                "UPDATE users SET active = false WHERE id = "
                "(SELECT user_id FROM login_sessions WHERE id = $1)",
                sid,
            )
        finally:
            await conn.close()
        await until(lambda: cache_of(a).get(sid) is None and cache_of(b).get(sid) is None)
        assert await status(a, token) == 401 and await status(b, token) == 401


@pytest.mark.postgres
async def test_marking_a_session_seen_keeps_it_cached(postgresql_url: str) -> None:
    """``last_seen_at`` alone (written every minute per session) sends no notification."""
    async with workers(postgresql_url) as (a, _b):
        token, sid = await logged_in(a)
        await settled(postgresql_url, a)
        assert await status(a, token) == 200
        cache = cache_of(a)
        generation = cache.generation
        conn = await asyncpg.connect(dsn(postgresql_url))
        try:
            await conn.execute(
                "UPDATE login_sessions SET last_seen_at = $2 WHERE id = $1", sid, datetime.now(UTC)
            )
            # A change that does notify, after it: once it is heard, the first was too.
            await conn.execute("SELECT pg_notify('issuer_principals', 'u:0')")
        finally:
            await conn.close()
        await until(lambda: cache.generation > generation)
        assert cache.generation == generation + 1  # only the explicit one
        assert cache.get(sid) is not None


@pytest.mark.postgres
async def test_without_its_listen_connection_the_cache_is_bypassed(postgresql_url: str) -> None:
    async with workers(postgresql_url) as (a, _b):
        token, sid = await logged_in(a)
        await settled(postgresql_url, a)
        assert await status(a, token) == 200
        cache = cache_of(a)
        assert cache.get(sid) is not None
        conn = await asyncpg.connect(dsn(postgresql_url))
        admin = await asyncpg.connect(PG_ADMIN_DSN)  # another database: ALTER needs that
        database = await conn.fetchval("SELECT current_database()")
        try:
            # The LISTEN connection dies and cannot come back (the pool's stay open).
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND application_name = 'issuer listen'",
                database,
            )
            await until(lambda: not cache.enabled)
            # Revoked while nobody listens: no notification will ever say so.
            await conn.execute("UPDATE login_sessions SET revoked_at = now() WHERE id = $1", sid)
            assert cache.get(sid) is None
            assert await status(a, token) == 401
        finally:
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
            await admin.close()
            await conn.close()
        # Back (after the reconnection backoff), and trusted again from empty.
        await until(lambda: cache.enabled, timeout=15)
        token, sid = await logged_in(a)
        await settled(postgresql_url, a)
        assert await status(a, token) == 200 and cache.get(sid) is not None


async def test_sqlite_never_caches(sqlite_url: str) -> None:
    async with workers(sqlite_url) as (a, _b):
        token, sid = await logged_in(a)
        async with statements(a) as sent:
            assert await status(a, token) == 200
        assert sent and not cache_of(a).enabled and cache_of(a).get(sid) is None


def test_a_fill_that_raced_an_eviction_is_dropped() -> None:
    cache = PrincipalCache()
    cache.listening(True)
    user = User(id=7, active=True)
    row = LoginSession(id="s1", user_id=7)
    before = cache.generation
    cache.notified("u:7")  # arrives while the request was reading the row
    cache.put(before, user, row, seen_at=datetime.now(UTC))
    assert cache.get("s1") is None
    cache.put(cache.generation, user, row, seen_at=datetime.now(UTC))
    assert cache.get("s1") is not None
    cache.notified("s:s1")
    assert cache.get("s1") is None
