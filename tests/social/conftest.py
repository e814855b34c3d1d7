"""Social login fixtures: the provider stubs on loopback (one server for the session, reset
for each test) and an app configured to use them, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.accounts.conftest import sql
from tests.support.identity_providers import ProviderStubs, serving


@pytest.fixture(scope="session")
async def provider_server() -> AsyncIterator[ProviderStubs]:
    async with serving(ProviderStubs()) as stubs:
        yield stubs


@pytest.fixture
def providers(provider_server: ProviderStubs) -> ProviderStubs:
    provider_server.reset()
    return provider_server


@pytest.fixture
def overrides(overrides: dict[str, Any], providers: ProviderStubs) -> dict[str, Any]:
    return {
        **overrides, **providers.settings(), "argon2_memory_kib": 1024, "argon2_time_cost": 1,
        "login_limit_per_ip": 10_000, "login_limit_per_account": 10_000,
        "mfa_limit_per_ip": 10_000, "mfa_limit_per_account": 10_000,
        "rate_limits_enabled": False,
    }  # fmt: skip


async def counts(app: Any) -> dict[str, int]:
    """How many users, identities, login sessions and outbox rows there are."""
    found = {}
    for table in ("users", "identities", "login_sessions", "outbox"):
        found[table] = (await sql(app, f"SELECT count(*) FROM {table}"))[0][0]
    return found


@pytest.fixture
def browser(app: Any) -> Any:
    """The test client as an HTTPS browser (its cookies are ``Secure``)."""
    from tests.accounts.conftest import BrowserClient

    return BrowserClient(app)
