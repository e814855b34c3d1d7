"""SECURITY.md 16.3.1/16.2.5: auth events are logged, never with a password, token or secret."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.accounts.conftest import PASSWORD, bearer, login, register_and_login


async def test_auth_events_are_logged_without_secrets(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = await register_and_login(client)
    await login(client, password="a wrong password")
    await login(client, "nobody", "another wrong password")
    rotated = await (
        await client.post("/token/refresh", json={"refresh_token": body["refresh_token"]})
    ).get_json()
    await client.post(
        "/update_password",
        json={"existing_password": PASSWORD, "new_password": "the next passphrase"},
        headers=bearer(rotated["token"]),
    )
    await client.post("/logout", headers=bearer(rotated["token"]))

    text = "\n".join(record.getMessage() for record in caplog.records)
    secrets = [PASSWORD, "a wrong password", "another wrong password", "the next passphrase"]
    for token in (body["token"], body["refresh_token"], rotated["token"], rotated["refresh_token"]):
        secrets += token.split(".")[1:]  # payload and signature of every token
    for secret in secrets:
        assert secret not in text
    audit = [r.getMessage() for r in caplog.records if r.name == "issuer.audit"]
    assert any(m.startswith("account created") for m in audit), audit
    assert any(m.startswith("login entity_id=") for m in audit), audit
    assert sum(m.startswith("login failed") for m in audit) >= 2, audit
    assert any(m.startswith("password changed") for m in audit), audit
    assert any("(logout)" in m for m in audit), audit
