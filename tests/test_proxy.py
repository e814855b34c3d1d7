"""HTTPS behind a proxy (``issuer.web.proxy``): ``X-Forwarded-Proto`` and ``X-Forwarded-Host``
believed from trusted proxies only, and ``ISSUER_FORCE_HTTPS`` (308 for pages, 403 for the
rest, probes exempt).

Through Quart's test client with the peer address set in the ASGI scope (``client``), and
served by hypercorn on loopback with httpx and the ``websockets`` client. Neither database
matters here, so the app runs on SQLite only.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from quart import Quart, request, session, url_for, websocket
from quart.testing.connections import WebsocketResponseError
from werkzeug.datastructures import Headers

from issuer import create_app
from issuer.issuance.agents.local import free_port
from issuer.web.errors import error_response
from issuer.web.proxy import HttpsGate, last_value, parse_host
from tests.fakes import FakeAgent
from tests.support.servers import InProcessServer

PROXY = {"client": ("10.1.2.3", 40000)}  # in ISSUER_TRUSTED_PROXIES below
STRANGER = {"client": ("203.0.113.9", 40000)}  # not
HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
HTTPS = {"X-Forwarded-Proto": "https"}
REFUSAL = {
    "success": False,
    "error": "https_required",
    "message": "HTTPS is required; this request was not processed.",
}


def add_probes(app: Quart) -> Quart:
    """A page and a websocket that report what the app believes about the request."""

    @app.get("/probe")
    async def probe() -> dict[str, Any]:
        session["seen"] = True  # so the answer sets the session cookie
        return {
            "scheme": request.scheme,
            "host": request.host,
            "secure": request.is_secure,
            "health": url_for("ops.health", _external=True),
        }

    @app.websocket("/probe/ws")
    async def probe_ws() -> None:
        await websocket.accept()
        await websocket.send_json({"scheme": websocket.scheme, "host": websocket.host})

    return app


def build(sqlite_url: str, **settings: Any) -> Quart:
    overrides = {
        "env": "test",
        "database_url": sqlite_url,
        "secret_key": secrets.token_urlsafe(32),
        "sweep_interval": 3600,
        "agent": None,
        "rate_limits_enabled": False,
        **settings,
    }
    return add_probes(create_app(overrides, agent=FakeAgent()))


@pytest.fixture
async def proxied(sqlite_url: str) -> AsyncIterator[Quart]:
    """Behind a trusted proxy (10.0.0.0/8), HTTPS not forced."""
    app = build(sqlite_url, trusted_proxies="10.0.0.0/8")
    async with app.test_app():
        yield app


@pytest.fixture
async def forced(sqlite_url: str) -> AsyncIterator[Quart]:
    """Behind a trusted proxy (10.0.0.0/8) with ``force_https``."""
    app = build(sqlite_url, trusted_proxies="10.0.0.0/8", force_https=True)
    async with app.test_app():
        yield app


async def probe(app: Quart, peer: dict[str, Any], headers: Any) -> dict[str, Any]:
    response = await app.test_client().get("/probe", headers=headers, scope_base=peer)
    assert response.status_code == 200, await response.get_data(as_text=True)
    return dict(await response.get_json())


# --- the header rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("portal.example", ("portal.example", None)),
        ("portal.example:8443", ("portal.example", 8443)),
        ("192.0.2.7:80", ("192.0.2.7", 80)),
        ("[2001:db8::1]:443", ("2001:db8::1", 443)),
        ("xn--bcher-kva.example", ("xn--bcher-kva.example", None)),
    ],
)
def test_valid_hosts_parse(value: str, parsed: tuple[str, int | None]) -> None:
    assert parse_host(value) == parsed


@pytest.mark.parametrize(
    "value",
    ["", "a..b", "evil.example/path", "evil.example@portal", "a b", "host:0", "host:65536",
     "host:", "[::1", "[not-ipv6]", "-dash.example", "a" * 64 + ".example", "bücher.example",
     "portal.example\r\nX-Injected: 1", "portal.example:443:443"],
)  # fmt: skip
def test_invalid_hosts_do_not_parse(value: str) -> None:
    assert parse_host(value) is None


def test_the_right_most_value_counts_across_repeated_fields() -> None:
    one = [(b"x-forwarded-proto", b"http, https")]
    assert last_value(one, b"x-forwarded-proto") == "https"
    repeated = [(b"x-forwarded-proto", b"https"), (b"X-Forwarded-Proto", b"http")]
    assert last_value(repeated, b"x-forwarded-proto") == "http"
    assert last_value([(b"x-forwarded-proto", b"https, ")], b"x-forwarded-proto") is None
    assert last_value([], b"x-forwarded-proto") is None


# --- forwarded headers through the app -----------------------------------------------------


async def test_a_trusted_proxy_makes_the_request_https_on_its_public_host(
    proxied: Quart,
) -> None:
    seen = await probe(proxied, PROXY, {**HTTPS, "X-Forwarded-Host": "portal.example"})
    assert seen == {
        "scheme": "https",
        "host": "portal.example",
        "secure": True,
        "health": "https://portal.example/health",
    }
    response = await proxied.test_client().get("/probe", headers=HTTPS, scope_base=PROXY)
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("issuer_session=") and "Secure" in cookie and "HttpOnly" in cookie
    # With a port, and the proxy's own Host replaced rather than duplicated.
    seen = await probe(
        proxied,
        PROXY,
        {"Host": "10.1.2.4:5000", **HTTPS, "X-Forwarded-Host": "portal.example:8443"},
    )
    assert seen["host"] == "portal.example:8443"
    assert seen["health"] == "https://portal.example:8443/health"


async def test_anyone_else_s_forwarded_headers_are_ignored(proxied: Quart) -> None:
    seen = await probe(proxied, STRANGER, {**HTTPS, "X-Forwarded-Host": "evil.example"})
    assert seen == {
        "scheme": "http",
        "host": "localhost",
        "secure": False,
        "health": "http://localhost/health",
    }
    # No peer address at all (a unix socket) is no trusted proxy either.
    seen = await probe(proxied, {"client": None}, HTTPS)
    assert seen["scheme"] == "http"


@pytest.mark.parametrize(
    "host", ["evil.example/path", "evil.example@x", "a..b", "host:99999", "a b", "[::1"]
)
async def test_a_malformed_forwarded_host_is_ignored(proxied: Quart, host: str) -> None:
    seen = await probe(proxied, PROXY, {**HTTPS, "X-Forwarded-Host": host})
    assert seen["host"] == "localhost"
    assert seen["health"] == "https://localhost/health"  # the valid proto still counts


async def test_only_the_right_most_forwarded_value_counts(proxied: Quart) -> None:
    # The client sent "https"; the trusted proxy appended what it saw: "http".
    seen = await probe(proxied, PROXY, {"X-Forwarded-Proto": "https, http"})
    assert seen["scheme"] == "http"
    seen = await probe(proxied, PROXY, Headers([("X-Forwarded-Proto", "https"),
                                               ("X-Forwarded-Proto", "http")]))  # fmt: skip
    assert seen["scheme"] == "http"
    seen = await probe(proxied, PROXY, {"X-Forwarded-Proto": "http, https"})
    assert seen["scheme"] == "https"
    # An invalid right-most value is ignored, not replaced by one further left.
    seen = await probe(proxied, PROXY, {"X-Forwarded-Proto": "https, gopher"})
    assert seen["scheme"] == "http"
    seen = await probe(
        proxied, PROXY, {**HTTPS, "X-Forwarded-Host": "portal.example, evil.example/x"}
    )
    assert seen["host"] == "localhost"


async def test_a_trusted_proxy_s_websocket_is_wss(proxied: Quart) -> None:
    headers = {**HTTPS, "X-Forwarded-Host": "portal.example"}
    async with proxied.test_client().websocket(
        "/probe/ws", headers=headers, scope_base=PROXY
    ) as ws:
        assert await ws.receive_json() == {"scheme": "wss", "host": "portal.example"}


async def test_nothing_wraps_the_app_when_neither_setting_is_on(sqlite_url: str) -> None:
    def gated(app: Quart) -> bool:
        # Inside the request observer (issuer.web.observe), the outermost layer.
        return isinstance(app.asgi_app.app, HttpsGate)  # type: ignore[attr-defined]

    assert not gated(build(sqlite_url))
    assert gated(build(sqlite_url, force_https=True))
    assert gated(build(sqlite_url, trusted_proxies="10.0.0.1"))


# --- force_https through the app -----------------------------------------------------------


async def test_a_plain_http_page_is_redirected_to_https(forced: Quart) -> None:
    client = forced.test_client()
    headers = {**HTML, "Host": "portal.example"}
    for method in ("GET", "HEAD"):
        response = await client.open(
            "/en", method=method, query_string={"a": "1", "b": "x y"}, headers=headers,
            scope_base=STRANGER,
        )  # fmt: skip
        assert response.status_code == 308, method
        assert response.headers["Location"] == "https://portal.example/en?a=1&b=x+y"
    # An explicit :80 is the plain port, not the HTTPS one.
    response = await client.get("/en", headers={**HTML, "Host": "portal.example:80"})
    assert response.headers["Location"] == "https://portal.example/en"
    response = await client.get("/en", headers={**HTML, "Host": "portal.example:8080"})
    assert response.headers["Location"] == "https://portal.example:8080/en"


async def test_a_stranger_cannot_claim_https(forced: Quart) -> None:
    headers = {**HTML, **HTTPS, "Host": "portal.example", "X-Forwarded-Host": "evil.example"}
    response = await forced.test_client().get("/probe", headers=headers, scope_base=STRANGER)
    assert response.status_code == 308
    assert response.headers["Location"] == "https://portal.example/probe"


async def test_https_through_the_trusted_proxy_is_served(forced: Quart) -> None:
    headers = {**HTML, **HTTPS, "X-Forwarded-Host": "portal.example"}
    seen = await probe(forced, PROXY, headers)
    assert seen["scheme"] == "https" and seen["health"] == "https://portal.example/health"
    response = await forced.test_client().get("/en", headers=headers, scope_base=PROXY)
    assert response.status_code == 200
    # The proxy saw plain HTTP from its client: redirected to the public host.
    headers = {**HTML, "X-Forwarded-Proto": "http", "X-Forwarded-Host": "portal.example"}
    response = await forced.test_client().get("/en", headers=headers, scope_base=PROXY)
    assert response.status_code == 308
    assert response.headers["Location"] == "https://portal.example/en"


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("POST", "/auth/login", {"Content-Type": "application/json"}),
        ("POST", "/name", HTML),  # a form post: not redirected either
        ("PUT", "/api/me/picture", HTML),
        ("GET", "/auth/status", {**HTML, "Authorization": "Bearer abc"}),
        ("GET", "/api/posts", HTML),
        ("GET", "/check_connection/", {"Accept": "*/*"}),
        ("GET", "/en", {"Accept": "application/json"}),
        ("GET", "/en", {"Accept": "application/json, text/html;q=0.5"}),
        ("GET", "/en", {}),
    ],
)
async def test_anything_but_a_page_is_refused_in_the_json_shape(
    forced: Quart, method: str, path: str, headers: dict[str, str]
) -> None:
    response = await forced.test_client().open(
        path, method=method, headers=headers, data=b'{"username": "a", "password": "b"}'
    )
    assert response.status_code == 403
    assert "Location" not in response.headers
    assert response.content_type == "application/json"
    body = await response.get_data()
    assert json.loads(body) == REFUSAL
    async with forced.app_context():  # byte for byte what the app's error handler sends
        assert body == await error_response(403, REFUSAL["error"], REFUSAL["message"]).get_data()


async def test_a_page_without_a_valid_host_is_refused(forced: Quart) -> None:
    response = await forced.test_client().get("/en", headers={**HTML, "Host": "a..b"})
    assert response.status_code == 403


async def test_a_plain_websocket_is_refused(forced: Quart) -> None:
    client = forced.test_client()
    async with client.websocket("/probe/ws", headers={"Origin": "http://localhost"}) as ws:
        with pytest.raises(WebsocketResponseError) as refused:
            await ws.receive()
    assert refused.value.response.status_code == 403
    assert json.loads(await refused.value.response.get_data()) == REFUSAL


async def test_probes_and_scrapers_are_exempt(forced: Quart) -> None:
    client = forced.test_client()
    for path in ("/health", "/health/ready", "/metrics"):
        assert (await client.get(path, headers=HTML)).status_code == 200, path
    # Only those exact paths.
    assert (await client.get("/health/", headers=HTML)).status_code == 308
    assert (await client.get("/healthz", headers=HTML)).status_code == 308


# --- served by hypercorn on loopback -------------------------------------------------------


async def test_served_behind_a_loopback_proxy(sqlite_url: str) -> None:
    app = build(sqlite_url, trusted_proxies="127.0.0.1/32", force_https=True)
    port = free_port()
    async with (
        InProcessServer(app, port) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        page = await http.get("/en?x=1", headers={**HTML, "Host": "portal.example"})
        assert page.status_code == 308
        assert page.headers["Location"] == "https://portal.example/en?x=1"
        login = await http.post("/auth/login", json={"username": "a", "password": "b"})
        assert login.status_code == 403 and login.json() == REFUSAL
        assert (await http.get("/health")).status_code == 200
        seen = await http.get("/probe", headers={**HTTPS, "X-Forwarded-Host": "portal.example"})
        assert seen.status_code == 200
        assert seen.json()["health"] == "https://portal.example/health"
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(f"ws://127.0.0.1:{port}/probe/ws", open_timeout=10):
                pass
        assert refused.value.response.status_code == 403
        assert json.loads(refused.value.response.body or b"") == REFUSAL
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/probe/ws", additional_headers=HTTPS, open_timeout=10
        ) as ws:
            assert json.loads(await ws.recv())["scheme"] == "wss"


async def test_served_without_trusting_loopback(sqlite_url: str) -> None:
    app = build(sqlite_url, trusted_proxies="10.0.0.0/8", force_https=True)
    async with (
        InProcessServer(app, free_port()) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        headers = {**HTML, **HTTPS, "Host": "portal.example", "X-Forwarded-Host": "evil.example"}
        page = await http.get("/probe", headers=headers)
        assert page.status_code == 308
        assert page.headers["Location"] == "https://portal.example/probe"
