"""SECURITY.md "Tokens and sessions" 9.1.x / 9.2.x: what a forged or misused token gets (401)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from quart import Quart

from tests.accounts.conftest import (
    assert_error,
    bearer,
    claims_of,
    forge,
    register_and_login,
    signing_key,
)

INVALID = "Invalid token"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def craft(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A JWT built by hand, so any header (``alg: none``, ``jwk``…) can be sent."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def hs256(key: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(key, data, hashlib.sha256).digest()


async def refused(client: Any, token: str, message: str = INVALID) -> None:
    await assert_error(await client.get("/auth/status", headers=bearer(token)), 401, message)


async def accepted(client: Any, token: str) -> None:
    response = await client.get("/auth/status", headers=bearer(token))
    assert response.status_code == 200, await response.get_data(as_text=True)


@pytest.fixture
async def genuine(client: Any) -> dict[str, Any]:
    """A logged-in user's login body."""
    return await register_and_login(client)


async def test_genuine_token_works_and_is_hs256(client: Any, genuine: dict[str, Any]) -> None:
    header = json.loads(base64.urlsafe_b64decode(genuine["token"].split(".")[0] + "=="))
    assert header["alg"] == "HS256"
    await accepted(client, genuine["token"])


async def test_alg_none_refused(client: Any, genuine: dict[str, Any]) -> None:
    claims = claims_of(genuine["token"])
    for alg in ("none", "None", "NONE", "nOnE"):
        await refused(client, craft({"alg": alg, "typ": "JWT"}, claims, lambda _: b""))
    # The genuine header and payload with the signature stripped.
    head, payload, _ = genuine["token"].split(".")
    await refused(client, f"{head}.{payload}.")
    await refused(client, f"{head}.{payload}")


async def test_tampered_signature_and_payload_refused(
    app: Quart, client: Any, genuine: dict[str, Any]
) -> None:
    head, payload, signature = genuine["token"].split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    await refused(client, f"{head}.{payload}.{flipped}")
    claims = claims_of(genuine["token"])
    for change in ({"sub": "0" * 32}, {"exp": claims["exp"] + 3600}, {"typ": "refresh"}):
        forged_payload = b64(json.dumps({**claims, **change}).encode())
        await refused(client, f"{head}.{forged_payload}.{signature}")
    # Our claims signed with another key, or with the app secret itself (tokens have their own).
    await refused(client, forge(app, claims, key=secrets.token_bytes(32)))
    await refused(client, forge(app, claims, key=app.config["SECRET_KEY"].encode()))


async def test_algorithm_confusion_refused(
    app: Quart, client: Any, genuine: dict[str, Any]
) -> None:
    claims = claims_of(genuine["token"])
    key = signing_key(app)
    # A correct HMAC under our key, but the header claims another algorithm: the allow-list wins.
    for alg in ("RS256", "ES256", "PS256", "HS384", "HS512", "EdDSA"):
        await refused(client, craft({"alg": alg, "typ": "JWT"}, claims, hs256(key)))
    # Genuinely signed with our key under a stronger HMAC: still not on the allow-list.
    for alg, digest in (("HS384", "sha384"), ("HS512", "sha512")):

        def sign(data: bytes, digest: str = digest) -> bytes:
            return hmac.new(key, data, digest).digest()

        await refused(client, craft({"alg": alg}, claims, sign))


async def test_jwk_and_jku_headers_are_ignored(
    app: Quart, client: Any, genuine: dict[str, Any]
) -> None:
    claims = claims_of(genuine["token"])
    attacker = secrets.token_bytes(32)
    embedded = {"kty": "oct", "k": b64(attacker)}
    # Signed with the attacker's key that the header carries: never trusted.
    await refused(client, craft({"alg": "HS256", "jwk": embedded}, claims, hs256(attacker)))
    for name in ("jku", "x5u"):
        header = {"alg": "HS256", name: "https://attacker.example/keys.json"}
        await refused(client, craft(header, claims, hs256(attacker)))
        # Signed with our key: the header changes nothing, the token is verified with our key.
        await accepted(client, forge(app, claims, headers={name: header[name]}))
    await accepted(client, forge(app, claims, headers={"jwk": embedded, "kid": "attacker"}))


@pytest.fixture(scope="module")
def attacker_rsa_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """An RSA key pair of the attacker's (made once, with openssl): the PEM and its public JWK."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    pem = tmp_path_factory.mktemp("rsa") / "attacker.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(pem), "2048"], check=True, capture_output=True)
    modulus = subprocess.run(
        ["openssl", "rsa", "-in", str(pem), "-noout", "-modulus"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    n = bytes.fromhex(modulus.split("=", 1)[1])
    return pem, {"kty": "RSA", "n": b64(n), "e": "AQAB", "alg": "RS256", "use": "sig"}


async def test_rs256_token_with_its_own_jwk_refused(
    client: Any, genuine: dict[str, Any], attacker_rsa_key: tuple[Path, dict[str, str]]
) -> None:
    """A real RS256 signature by an attacker whose public key rides in the ``jwk`` header."""
    pem, jwk = attacker_rsa_key

    def rs256(data: bytes) -> bytes:
        return subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(pem)],
            input=data,
            check=True,
            capture_output=True,
        ).stdout

    claims = claims_of(genuine["token"])
    await refused(client, craft({"alg": "RS256", "typ": "JWT", "jwk": jwk}, claims, rs256))
    header = {"alg": "RS256", "jku": "https://attacker.example/jwks.json", "kid": "1"}
    await refused(client, craft(header, claims, rs256))


async def test_time_claims(app: Quart, client: Any, genuine: dict[str, Any]) -> None:
    claims = claims_of(genuine["token"])
    now = int(time.time())
    await refused(client, forge(app, {**claims, "exp": now - 1}), "Token has expired")
    await refused(client, forge(app, {**claims, "nbf": now + 600}))
    await refused(client, forge(app, {**claims, "iat": now + 600}))
    await accepted(client, forge(app, {**claims, "nbf": now - 1}))


async def test_required_claims_and_their_values(
    app: Quart, client: Any, genuine: dict[str, Any]
) -> None:
    claims = claims_of(genuine["token"])
    for name in ("sub", "sid", "jti", "iat", "exp", "iss", "aud", "typ"):
        await refused(client, forge(app, {k: v for k, v in claims.items() if k != name}))
    for change in (
        {"aud": "someone-else"},
        {"aud": ["someone-else"]},
        {"iss": "https://attacker.example"},
        {"typ": "refresh"},
        {"typ": "mfa"},
        {"typ": "reset"},
        {"sid": "no-such-session"},
        {"sub": "0" * 32},  # a genuine session, another subject
    ):
        token = forge(app, {**claims, **change})
        response = await client.get("/auth/status", headers=bearer(token))
        await assert_error(response, 401)


async def test_refresh_and_access_tokens_are_not_interchangeable(
    client: Any, genuine: dict[str, Any]
) -> None:
    await refused(client, genuine["refresh_token"])
    response = await client.post(
        "/generate_array", json={"sentence": "x"}, headers=bearer(genuine["refresh_token"])
    )
    await assert_error(response, 401, INVALID)
    response = await client.post("/token/refresh", json={"refresh_token": genuine["token"]})
    await assert_error(response, 401, INVALID)
    # Neither mix-up cost the login anything.
    await accepted(client, genuine["token"])
    response = await client.post("/token/refresh", json={"refresh_token": genuine["refresh_token"]})
    assert response.status_code == 200


def test_a_remembered_token_still_expires_and_keeps_its_purpose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The codec remembers verified tokens (issuer.lib.tokens); the expiry is still checked on
    every use, and a token of one purpose is still refused for another."""
    from issuer.lib.tokens import Purpose, TokenCodec, TokenExpired, TokenInvalid

    codec = TokenCodec(b"k" * 32, issuer="issuer", audience="issuer-api")
    token, claims = codec.issue(Purpose.ACCESS, sub="a" * 32, sid="s" * 22, ttl=60)
    assert codec.decode(token, Purpose.ACCESS) == claims  # verified, remembered
    with pytest.raises(TokenInvalid):
        codec.decode(token, Purpose.REFRESH)
    monkeypatch.setattr("issuer.lib.tokens.time.time", lambda: claims.exp + 1.0)
    with pytest.raises(TokenExpired):
        codec.decode(token, Purpose.ACCESS)
