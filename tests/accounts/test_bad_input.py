"""Bad input of any kind gets a 4xx in the one error shape, never a 500 (SECURITY.md)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
from quart import Quart

from tests.accounts.conftest import ERROR_KEYS, PASSWORD, bearer, from_ip, register_and_login

JSON = "application/json"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# (method, path, takes a JSON body)
ENDPOINTS = [
    ("POST", "/register", True),
    ("POST", "/auth/register", True),
    ("POST", "/signup", True),
    ("POST", "/login", True),
    ("POST", "/auth/login", True),
    ("POST", "/token/refresh", True),
    ("POST", "/update_password", True),
    ("POST", "/generate_array", True),
    ("POST", "/resend_confirmation", True),
    ("POST", "/forgot_password", True),
    ("POST", "/reset_password/not-a-token/not-a-uid", True),
    ("POST", "/verify/not-a-token/not-a-uid", True),
    ("POST", "/logout", False),
    ("POST", "/auth/logout", False),
    ("GET", "/sessions", False),
    ("GET", "/auth/status", False),
    ("DELETE", "/sessions/x", False),
]
FIELDS = (
    "username",
    "email",
    "password",
    "first_name",
    "last_name",
    "login_method",
    "refresh_token",
    "existing_password",
    "new_password",
    "sentence",
    "csrf_token",
)


def json_bodies() -> list[bytes]:
    """Raw bodies sent as ``application/json``."""
    values: list[Any] = [
        None,
        1,
        -1.5,
        True,
        [],
        {},
        [1, "a"],
        {"nested": {"deeper": [1]}},
        "a" * 2000,  # longer than any field allows
        "a\u0000b",  # NUL: PostgreSQL text cannot hold it
        "\ud800",  # a lone surrogate: not encodable as UTF-8
        "\u202e\u0301",
    ]
    bodies = [json.dumps({field: value for field in FIELDS}).encode() for value in values]
    # One field at a time too, so that each handler meets them past its other checks.
    bodies += [json.dumps({field: value}).encode() for field in FIELDS for value in values[9:11]]
    bodies += [
        b"",
        b"null",
        b"[]",
        b'"just a string"',
        b"{}",
        b"{not json",
        b'{"username": "\xff\xfe", "password": "\xc3\x28 invalid utf-8"}',
        b"\xef\xbb\xbf{}",
        b"[" * 5000 + b"]" * 5000,  # deeper than the parser's recursion limit
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
        b'{"username": 1e999, "password": NaN}',
        b'{"username": ' + b"9" * 5000 + b"}",
        json.dumps({"username": "x" * 70_000}).encode(),  # above MAX_CONTENT_LENGTH
    ]
    return bodies


OTHER_TYPES = [
    ("text/plain", b"username=alice&password=x"),
    ("application/xml", b"<login><username>alice</username></login>"),
    ("application/json; charset=utf-16", "{}".encode("utf-16")),
    ("application/x-www-form-urlencoded", b"username=%ff%fe&password=%00&csrf_token=x"),
    ("application/x-www-form-urlencoded", b"&&&==&%zz"),
    ("multipart/form-data; boundary=xyz", b"--xyz\r\ngarbage"),
    ("multipart/form-data", b"no boundary at all"),
]


def distinct_addresses() -> Iterator[dict[str, Any]]:
    """Every request from its own address, so the sweep gets past the per-IP limits (the rate
    limiter and its key functions still run; the limits themselves are tested elsewhere)."""
    for n in itertools.count():
        yield from_ip(f"198.18.{n // 256 % 256}.{n % 256}")


async def check(response: Any, sent_type: str, what: str, *, may_succeed: bool = False) -> None:
    raw = await response.get_data(as_text=True)
    if may_succeed and response.status_code == 200:
        return
    assert 400 <= response.status_code < 500, (what, response.status_code, raw[:300])
    # JSON API paths never answer with an HTML page, form posts of the pages included.
    assert response.mimetype == JSON, (what, raw[:300])
    body = json.loads(raw)
    assert body["success"] is False and body["error"] and body["message"], (what, body)
    assert set(body) <= ERROR_KEYS, (what, body)
    assert "Traceback" not in raw and "sqlalchemy" not in raw.lower(), (what, raw[:300])


@pytest.fixture
def overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    return {**overrides, "generate_array_quota": 10_000}


async def test_bad_bodies_never_500(app: Quart, client: Any) -> None:
    login = await register_and_login(client)
    auth = bearer(login["token"])
    addresses = distinct_addresses()
    bodies = [(JSON, body) for body in json_bodies()] + OTHER_TYPES
    for method, path, takes_body in ENDPOINTS:
        if not takes_body:
            continue
        # The /auth/… aliases share their handlers: a sample is enough for them.
        for content_type, data in bodies if not path.startswith("/auth/") else bodies[::5]:
            response = await client.open(
                path,
                method=method,
                data=data,
                headers={**auth, "Content-Type": content_type},
                **next(addresses),
            )
            what = f"{method} {path} {content_type} {data[:60]!r}"
            # Some of these bodies carry a sentence /generate_array can take.
            await check(response, content_type, what, may_succeed=path == "/generate_array")
    # The login still works: nothing above broke the account or the session.
    assert (await client.get("/auth/status", headers=auth)).status_code == 200


async def test_bad_headers_and_paths_never_500(app: Quart, client: Any) -> None:
    login = await register_and_login(client)
    addresses = distinct_addresses()
    headers: list[dict[str, str]] = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + "a" * 5000},
        {"Authorization": "Bearer a.b.c"},
        {"Authorization": "Bearer \u00e9\u00e8.x.y"},
        {"Authorization": "Basic dXNlcjpwYXNz"},  # a real Basic user:pass pair
        {"Authorization": "Digest username=x"},
        {"Authorization": "Bearer " + login["refresh_token"]},
        {"Cookie": "issuer_auth=forged; issuer_session=forged"},
        {"X-CSRF-Token": "x" * 5000, "Cookie": "issuer_auth=" + "a" * 3000},
    ]
    for method, path, _ in ENDPOINTS:
        for header in headers:
            response = await client.open(
                path, method=method, json={"sentence": "x"}, headers=header, **next(addresses)
            )
            await check(response, JSON, f"{method} {path} {header}")
    auth = bearer(login["token"])
    for session_id in ("a%00b", "%ff%fe", "x" * 5000, "..%2f..%2fetc", "%ud800"):
        response = await client.delete(f"/sessions/{session_id}", headers=auth)
        await check(response, JSON, f"DELETE /sessions/{session_id}")
    for token, uid in (("a%00b", "c%00d"), ("%ff%fe", "%ud800"), ("x" * 300, "y"), ("x", "")):
        for action in ("verify", "reset_password"):
            path = f"/{action}/{token}/{uid}"
            response = await client.post(path, json={"password": PASSWORD}, **next(addresses))
            await check(response, JSON, f"POST {path}")
    for username in ("a%00b", "%ff", "x" * 5000):
        response = await client.get(f"/dashboard/{username}")
        assert response.status_code in (302, 303, 403, 404), username


async def test_nul_and_surrogates_in_identifiers(client: Any) -> None:
    """Each endpoint's own fields, individually: NUL and lone surrogates are refused (4xx)."""
    for path, body in (
        ("/register", {"username": "ali\u0000ce", "password": PASSWORD}),
        ("/register", {"email": "a\u0000@example.com", "password": PASSWORD}),
        ("/signup", {"email": "b\u0000@example.com", "password": PASSWORD}),
        ("/signup", {"email": "c@example.com", "password": PASSWORD, "first_name": "\u0000"}),
        ("/login", {"username": "ali\u0000ce", "password": PASSWORD}),
        ("/login", {"email": "\ud800@example.com", "password": PASSWORD}),
        ("/login", {"username": "alice", "password": "\ud800"}),
    ):
        response = await client.post(path, json=body)
        await check(response, JSON, f"{path} {body!r}")
