"""PostgreSQL connections dying under load answer 503 with ``Retry-After``, never 500, and the
app recovers by itself (asyncpg's ``AdminShutdownError``, ``ConnectionDoesNotExistError`` and
friends are the database being unavailable, not bugs)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from issuer.accounts import queries
from issuer.db import asyncpg_dsn
from tests.accounts.conftest import PASSWORD, from_ip, login, register, running

pytestmark = pytest.mark.postgres
CHEAP = {"argon2_memory_kib": 1024, "argon2_time_cost": 1, "login_limit_per_ip": 10_000}
TERMINATE = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


@pytest.fixture
def database_url(postgresql_url: str) -> str:
    return postgresql_url


async def check_unavailable(response: Any) -> None:
    body = await response.get_json()
    assert body["error"] == "database_unavailable", body
    assert int(response.headers["Retry-After"]) >= 1


async def test_a_connection_killed_inside_a_transaction_answers_503(
    overrides: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = queries.open_login
    admin = await asyncpg.connect(asyncpg_dsn(overrides["database_url"]))

    async def killed_first(session: Any, *args: Any, **kwargs: Any) -> Any:
        # The backend of this transaction is terminated (by an operator, a failover) between
        # its statements.
        pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
        return await real(session, *args, **kwargs)

    async with running(overrides, **CHEAP) as app:
        client = app.test_client()
        await register(client)
        monkeypatch.setattr(queries, "open_login", killed_first)
        response = await login(client)
        assert response.status_code == 503, await response.get_data(as_text=True)
        await check_unavailable(response)
        monkeypatch.setattr(queries, "open_login", real)
        assert (await login(client)).status_code == 200  # recovered
    await admin.close()


async def test_backends_terminated_mid_load_never_500(overrides: dict[str, Any]) -> None:
    async with running(overrides, **CHEAP) as app:
        client = app.test_client()
        await register(client)
        admin = await asyncpg.connect(asyncpg_dsn(overrides["database_url"]))
        stop = asyncio.Event()

        async def killer() -> int:
            kills = 0
            while not stop.is_set():
                kills += await admin.fetchval(f"SELECT count(*) FROM ({TERMINATE}) t")
                await asyncio.sleep(0.15)
            return kills

        names = itertools.count()

        async def one(n: int) -> Any:
            if n % 2:
                return await login(client, **from_ip(f"10.9.{n // 256}.{n % 256}"))
            body = {"username": f"user{next(names)}", "password": PASSWORD}
            return await client.post("/register", json=body, **from_ip(f"10.8.0.{n % 256}"))

        try:
            killing = asyncio.create_task(killer())
            responses = []
            for start in range(0, 200, 20):
                responses += await asyncio.gather(*(one(n) for n in range(start, start + 20)))
            stop.set()
            kills = await killing
        finally:
            await admin.close()
        statuses = [r.status_code for r in responses]
        assert kills > 0
        assert set(statuses) <= {200, 401, 409, 503}, sorted(set(statuses))
        for response in responses:
            if response.status_code == 503:
                await check_unavailable(response)
        assert (await login(client)).status_code == 200  # the app recovered by itself
