"""The originals' own test scenarios (001, 003, 004): register, login, /generate_array, aliases."""

from __future__ import annotations

import time
from typing import Any

from quart import Quart

from issuer.vectors.routes import vector_for
from tests.accounts.conftest import (
    PASSWORD,
    assert_error,
    bearer,
    claims_of,
    forge,
    login,
    register,
    register_and_login,
)

USER_FIELDS = {
    "entity_id",
    "version",
    "active",
    "latest",
    "first_name",
    "last_name",
    "email",
    "verified",
    "verified_on",
    "access_token",
    "expires_in",
    "login_method",
    "mfa_enabled",
}


async def test_register_and_duplicate_username(client: Any) -> None:
    response = await register(client)
    assert response.status_code == 200
    assert await response.get_json() == {"success": True, "message": "User registered successfully"}
    await assert_error(
        await register(client), 409, "User registered already, Please login", "user_exists"
    )
    # Usernames are unique after normalisation (case, NFKC).
    await assert_error(
        await register(client, "ALICE"), 409, "User registered already, Please login"
    )


async def test_login_valid_has_both_legacy_shapes(client: Any) -> None:
    await register(client)
    before = int(time.time())
    response = await login(client)
    assert response.status_code == 200
    body = await response.get_json()
    assert body["success"] is True
    assert body["token"] == body["access_token"] == body["user"]["access_token"]
    assert body["refresh_token"] and body["refresh_token"] != body["token"]
    user = body["user"]
    assert set(user) >= USER_FIELDS
    assert user["active"] is True and user["mfa_enabled"] is False and user["verified"] is False
    # expires_in is a unix time (004), 30 minutes ahead by default (001).
    assert before + 1800 - 5 <= user["expires_in"] <= int(time.time()) + 1800
    claims = claims_of(body["token"])
    assert claims["exp"] == user["expires_in"]
    assert claims["sub"] == user["entity_id"] and isinstance(claims["sub"], str)
    assert {"sub", "sid", "jti", "iat", "exp", "iss", "aud", "typ"} <= set(claims)


async def test_login_invalid(client: Any) -> None:
    await register(client)
    await assert_error(await login(client, password="wrong password"), 401, "Authentication failed")
    await assert_error(await login(client, "nobody"), 401, "Authentication failed")
    await assert_error(
        await client.post("/login", json={"password": PASSWORD}), 422, "Email is required."
    )
    await assert_error(
        await client.post("/login", json={"username": "alice"}), 422, "Password is required."
    )


async def test_login_by_email_and_case_insensitive(client: Any) -> None:
    response = await client.post(
        "/register", json={"email": "Bob@Example.com", "password": PASSWORD}
    )
    assert response.status_code == 200
    response = await client.post("/login", json={"email": "bob@example.COM", "password": PASSWORD})
    assert response.status_code == 200
    assert (await response.get_json())["user"]["email"] == "Bob@Example.com"


async def test_generate_array(client: Any) -> None:
    token = (await register_and_login(client))["token"]
    first = await client.post("/generate_array", json={"sentence": "Hello"}, headers=bearer(token))
    assert first.status_code == 200
    vector = await first.get_json()
    assert isinstance(vector, list) and len(vector) == 500
    assert first.headers["Content-Type"] == "application/json"
    assert vector == vector_for("Hello")  # every float exactly, through its JSON text
    assert all(isinstance(x, float) and 0.0 <= x < 1.0 for x in vector)
    again = await client.post("/generate_array", json={"sentence": "Hello"}, headers=bearer(token))
    assert await again.get_json() == vector
    other = await client.post("/generate_array", json={"sentence": "Hello!"}, headers=bearer(token))
    assert (await other.get_json()) != vector
    # 004's clients sent the token as "Basic <token>".
    basic = await client.post(
        "/generate_array", json={"sentence": "Hello"}, headers=bearer(token, "Basic")
    )
    assert basic.status_code == 200 and await basic.get_json() == vector


async def test_generate_array_token_errors(app: Quart, client: Any) -> None:
    token = (await register_and_login(client))["token"]
    body = {"sentence": "x"}
    await assert_error(await client.post("/generate_array", json=body), 401, "Token is missing")
    response = await client.post("/generate_array", json=body, headers=bearer("garbage"))
    await assert_error(response, 401, "Invalid token", "invalid_token")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    expired = forge(app, {**claims_of(token), "exp": int(time.time()) - 5})
    await assert_error(
        await client.post("/generate_array", json=body, headers=bearer(expired)),
        401,
        "Token has expired",
        "token_expired",
    )
    for header in ("Bearer", "Bearer ", f"Token {token}", f"Bearer {token} extra", "Bearer a b"):
        response = await client.post(
            "/generate_array", json=body, headers={"Authorization": header}
        )
        await assert_error(response, 401, "Bearer token malformed.", "malformed_token")


async def test_generate_array_quota(client: Any) -> None:
    token = (await register_and_login(client))["token"]
    for _ in range(10):
        response = await client.post(
            "/generate_array", json={"sentence": "q"}, headers=bearer(token)
        )
        assert response.status_code == 200
    response = await client.post("/generate_array", json={"sentence": "q"}, headers=bearer(token))
    await assert_error(response, 429)
    assert int(response.headers["Retry-After"]) >= 1


async def test_generate_array_bad_bodies(client: Any) -> None:
    auth = bearer((await register_and_login(client))["token"])
    for body in ({"sentence": 5}, {"sentence": ""}, {"sentence": None}, {"other": "x"}):
        await assert_error(
            await client.post("/generate_array", json=body, headers=auth), 422, code=None
        )
    for data, kind in ((b"sentence=x", "text/plain"), (b"{not json", "application/json")):
        response = await client.post(
            "/generate_array", data=data, headers={**auth, "Content-Type": kind}
        )
        await assert_error(response, 400, "Please use 'application/json'")
    await assert_error(
        await client.post("/generate_array", json=[1, 2], headers=auth),
        400,
        "Please use 'application/json'",
    )


async def test_auth_aliases_and_status(client: Any) -> None:
    response = await client.post(
        "/auth/register", json={"email": "carol@example.com", "password": PASSWORD}
    )
    assert response.status_code == 201
    assert (await response.get_json())["message"] == "User registered successfully"
    response = await client.post(
        "/auth/login", json={"email": "carol@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200
    token = (await response.get_json())["token"]
    status = await client.get("/auth/status", headers=bearer(token))
    assert status.status_code == 200
    body = await status.get_json()
    assert body["status"] == "success"
    assert {"user_id", "email", "admin", "registered_on"} <= set(body["data"])
    assert body["data"]["email"] == "carol@example.com" and body["data"]["admin"] is False
    assert body["data"]["user_id"] == claims_of(token)["sub"]
    await assert_error(await client.get("/auth/status"), 401, "Token is missing")
    await assert_error(
        await client.get("/auth/status", headers={"Authorization": "Bearer"}),
        401,
        "Bearer token malformed.",
    )
    response = await client.post("/auth/logout", headers=bearer(token))
    assert response.status_code == 200
    assert await response.get_json() == {
        "success": True,
        "message": "User successfully logged out.",
    }
    await assert_error(
        await client.get("/auth/status", headers=bearer(token)),
        401,
        "Token blacklisted. Please log in again.",
    )
    await assert_error(await client.post("/auth/logout", headers=bearer(token)), 401)


async def test_signup(client: Any) -> None:
    body = {
        "login_method": "signup",
        "first_name": "dinara",
        "last_name": "s",
        "email": "dinara@example.com",
        "password": PASSWORD,
    }
    response = await client.post("/signup", json=body)
    assert response.status_code == 200
    assert await response.get_json() == {
        "success": True,
        "message": "User successfully created and a confirmation email has been sent via email.",
    }
    response = await client.post("/login", json={"email": body["email"], "password": PASSWORD})
    user = (await response.get_json())["user"]
    assert (user["first_name"], user["last_name"], user["email"]) == ("dinara", "s", body["email"])
    without_email = {k: v for k, v in body.items() if k != "email"}
    await assert_error(await client.post("/signup", json=without_email), 422, "Email is required.")
    without_password = {k: v for k, v in body.items() if k != "password"}
    await assert_error(
        await client.post("/signup", json=without_password), 422, "Password is required."
    )
    await assert_error(
        await client.post("/signup", json={**body, "login_method": "myspace"}),
        400,
        "Invalid login method",
    )
    await assert_error(await client.post("/signup", json={**body, "email": "not-an-email"}), 422)
    await assert_error(await client.post("/signup", json={**body, "password": "short"}), 422)
