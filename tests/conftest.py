"""Shared fixtures: both databases (migrated with Alembic), the app, and a controllable agent."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.config import Config
from quart import Quart

from issuer import create_app
from issuer.db import load_models
from issuer.services import services_of
from tests.fakes import FakeAgent

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_DSN = os.environ.get("TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def migrate(url: str) -> None:
    """Build the schema the way production does: ``alembic upgrade head``."""
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["url"] = url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


async def _create_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@contextmanager
def scratch_postgresql() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database of its own, dropped afterwards."""
    name = f"issuer_test_{os.getpid()}_{secrets.token_hex(3)}"
    asyncio.run(_create_database(name))
    url = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{url}/{name}"
    try:
        migrate(url)
        yield url
    finally:
        asyncio.run(_drop_database(name))


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session (dropped at the end)."""
    with scratch_postgresql() as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'issuer.db'}"
    migrate(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once on SQLite and once on PostgreSQL."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
def fake_agent() -> FakeAgent:
    return FakeAgent()


@pytest.fixture
def overrides(database_url: str) -> dict[str, Any]:
    return {
        "env": "test",
        "database_url": database_url,
        "secret_key": secrets.token_urlsafe(32),
        "webhook_api_key": "hook-key",
        "sweep_interval": 3600,
        "agent": None,
    }


@pytest.fixture
async def app(overrides: dict[str, Any], fake_agent: FakeAgent) -> AsyncIterator[Quart]:
    app = create_app(overrides, agent=fake_agent)
    async with app.test_app():
        yield app
        await truncate(app)


async def truncate(app: Quart) -> None:
    """Empty every table (children first), whatever tables the models define."""
    async with services_of(app).db.engine.begin() as conn:
        for table in reversed(load_models().sorted_tables):
            await conn.execute(table.delete())


@pytest.fixture
def client(app: Quart) -> Any:
    return app.test_client()
