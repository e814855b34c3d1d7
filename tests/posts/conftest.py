"""Posts fixtures: cheap hashing, no rate limits, and accounts with access tokens."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from tests.accounts.conftest import PASSWORD, bearer


@pytest.fixture
def overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    return {
        **overrides, "argon2_memory_kib": 1024, "argon2_time_cost": 1,
        "rate_limits_enabled": False,
    }  # fmt: skip


async def author(client: Any, username: str) -> dict[str, str]:
    """A registered, logged-in user: the Authorization header of its access token."""
    registered = await client.post("/register", json={"username": username, "password": PASSWORD})
    assert registered.status_code == 200, await registered.get_data(as_text=True)
    login = await client.post("/login", json={"username": username, "password": PASSWORD})
    return bearer((await login.get_json())["access_token"])


async def write(
    client: Any, auth: dict[str, str], title: str = "Hello", content: str = "World"
) -> Any:
    response = await client.post(
        "/api/posts", json={"title": title, "content": content}, headers=auth
    )
    assert response.status_code == 201, await response.get_data(as_text=True)
    return response


def image(kind: str = "PNG", size: tuple[int, int] = (300, 200), **save: Any) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, kind, **save)
    return out.getvalue()
