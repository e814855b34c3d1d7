"""SECURITY.md on the MFA endpoints: per-account and per-IP limits that cannot lock the owner
out from elsewhere, and an audit log that records every MFA event but never a code or secret."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.accounts.conftest import assert_error, bearer, from_ip, running
from tests.mfa.conftest import EMAIL, PASSWORD, account, challenge, code, enrol

ATTACKER, OWNER = "203.0.113.66", "198.51.100.7"


async def guess(client: Any, token: str, ip: str, otp: str = "000000") -> Any:
    body = {"email": EMAIL, "otp": otp, "mfa_token": token}
    return await client.post("/login_mfa", json=body, **from_ip(ip))


def later() -> datetime:
    """The next TOTP step (enrolment spent the current one; one step of drift is allowed)."""
    return datetime.now(UTC) + timedelta(seconds=30)


async def assert_limited(response: Any) -> None:
    await assert_error(response, 429)
    assert int(response.headers["Retry-After"]) >= 1


async def test_mfa_limits_stop_the_guesser_not_the_owner(overrides: dict[str, Any]) -> None:
    async with running(overrides, mfa_limit_per_account=3, mfa_limit_per_ip=5) as app:
        client = app.test_client()
        login = await account(client)
        secret, codes = await enrol(client, login["token"])
        # Someone with the password guesses codes from one address, over fresh challenges.
        for _ in range(3):
            await assert_error(await guess(client, await challenge(client), ATTACKER), 401)
        await assert_limited(await guess(client, await challenge(client), ATTACKER))
        # The right code does not get through from there either, nor a recovery code.
        await assert_limited(await guess(client, await challenge(client), ATTACKER, code(secret)))
        body = {"email": EMAIL, "recovery_code": codes[0], "mfa_token": await challenge(client)}
        await assert_limited(
            await client.post("/verify_recovery_code", json=body, **from_ip(ATTACKER))
        )
        # The owner, from their own address, logs in.
        done = await guess(client, await challenge(client), OWNER, code(secret, later()))
        assert done.status_code == 200, await done.get_data(as_text=True)
        # One address across many accounts meets the per-IP limit.
        other = await account(client, "grace@example.com")
        await enrol(client, other["token"])
        for _ in range(2):
            body = {"email": "grace@example.com", "otp": "000000"}
            body["mfa_token"] = await challenge(client, "grace@example.com")
            await assert_error(await client.post("/login_mfa", json=body, **from_ip(ATTACKER)), 401)
        body["mfa_token"] = await challenge(client, "grace@example.com")
        await assert_limited(await client.post("/login_mfa", json=body, **from_ip(ATTACKER)))


async def test_the_audit_log_has_every_mfa_event_and_no_secret(
    app: Any, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    login = await account(client)
    secret, codes = await enrol(client, login["token"])
    token = await challenge(client)
    await assert_error(await guess(client, token, OWNER), 401)
    used = code(secret, later())
    assert (await guess(client, token, OWNER, used)).status_code == 200
    body = {"email": EMAIL, "recovery_code": codes[0], "mfa_token": await challenge(client)}
    assert (await client.post("/verify_recovery_code", json=body)).status_code == 200
    regenerated = await client.post("/recovery_codes", headers=bearer(login["token"]))
    fresh = (await regenerated.get_json())["data"]
    disabled = await client.post(
        "/setup_mfa", json={"mfa_enabled": False, "recovery_code": fresh[0]},
        headers=bearer(login["token"]),
    )  # fmt: skip
    assert disabled.status_code == 200
    audit = [r.getMessage() for r in caplog.records if r.name == "issuer.audit"]
    for event in (
        "totp enrolment started", "totp confirmed", "mfa enabled", "mfa challenge issued",
        "totp refused", "with totp", "recovery code used", "with recovery_code",
        "recovery codes regenerated", "mfa disabled",
    ):  # fmt: skip
        assert any(event in line for line in audit), (event, audit)
    everything = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    for secret_text in [secret, PASSWORD, token, login["token"], used, *codes, *fresh]:
        assert secret_text not in everything, secret_text
