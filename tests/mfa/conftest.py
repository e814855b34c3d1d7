"""MFA helpers: enrol TOTP the way a user does (the secret read back from the QR image with
zbarimg, codes computed by pyotp), log in through both steps."""

from __future__ import annotations

import base64
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest

from tests.accounts.conftest import PASSWORD, bearer

EMAIL = "ada@example.com"


@pytest.fixture
def overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    # Cheap hashing, and login limits out of the way: these tests log in often (the MFA limits
    # have a test of their own).
    return {
        **overrides, "argon2_memory_kib": 1024, "argon2_time_cost": 1,
        "login_limit_per_ip": 10_000, "login_limit_per_account": 10_000,
        "mfa_limit_per_ip": 10_000, "mfa_limit_per_account": 10_000,
    }  # fmt: skip


def uri_in(image_b64: str) -> str:
    """The text of the QR code in a base64 PNG, read by zbarimg (Debian's zbar-tools)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "qr.png"
        path.write_bytes(base64.b64decode(image_b64))
        found = subprocess.run(
            ["zbarimg", "--raw", "--quiet", str(path)], capture_output=True, text=True, check=True
        )
    return found.stdout.strip()


def secret_of(uri: str) -> str:
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth" and parts.netloc == "totp", uri
    return parse_qs(parts.query)["secret"][0]


def code(secret: str, when: datetime | None = None) -> str:
    return pyotp.TOTP(secret).at(when or datetime.now(UTC))


async def account(client: Any, email: str = EMAIL) -> dict[str, Any]:
    """An email account, logged in (the JSON login body)."""
    response = await client.post("/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await register_and_login_by_email(client, email)


async def register_and_login_by_email(client: Any, email: str) -> dict[str, Any]:
    response = await client.post("/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, await response.get_data(as_text=True)
    return await response.get_json()  # type: ignore[no-any-return]


async def enrol(client: Any, token: str, when: datetime | None = None) -> tuple[str, list[str]]:
    """``/qrcode`` → ``/verify_otp`` → ``/setup_mfa``; the secret and the recovery codes."""
    auth = bearer(token)
    response = await client.post("/qrcode", json={"password": PASSWORD}, headers=auth)
    assert response.status_code == 200, await response.get_data(as_text=True)
    body = await response.get_json()
    assert body["success"] is True
    secret = secret_of(uri_in(body["image"]))
    now = code(secret, when)
    verified = await client.post("/verify_otp", json={"otp": int(now)}, headers=auth)
    assert verified.status_code == 200, await verified.get_data(as_text=True)
    codes = (await verified.get_json())["data"]["codes"]
    enabled = await client.post("/setup_mfa", json={"mfa_enabled": True, "otp": now}, headers=auth)
    assert enabled.status_code == 200, await enabled.get_data(as_text=True)
    return secret, codes


async def first_step(client: Any, email: str = EMAIL, **kwargs: Any) -> Any:
    return await client.post("/login", json={"email": email, "password": PASSWORD}, **kwargs)


async def challenge(client: Any, email: str = EMAIL) -> str:
    response = await first_step(client, email)
    assert response.status_code == 200, await response.get_data(as_text=True)
    return str((await response.get_json())["mfa_token"])
