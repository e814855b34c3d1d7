"""HTTPS behind a TLS-terminating proxy: ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` from
trusted proxies only, and ``ISSUER_FORCE_HTTPS``.

An ASGI middleware around ``app.asgi_app``, installed by ``create_app`` only when
``ISSUER_TRUSTED_PROXIES`` or ``ISSUER_FORCE_HTTPS`` is set (no cost otherwise).

**Forwarded headers** (ASVS 5.0 4.1.3). When the direct peer (``scope["client"]``) is in a
trusted network, the scope's ``scheme`` follows ``X-Forwarded-Proto`` (``http``/``https``;
``ws``/``wss`` for websockets) and its ``Host`` header (and ``server``) follow
``X-Forwarded-Host`` (``host[:port]``: a DNS name, an IPv4 address or a bracketed IPv6
address, port 1–65535). From anyone else both are ignored. So ``request.scheme``,
``request.host``, ``request.is_secure``, ``url_for(..., _external=True)`` and the websocket's
``Origin`` check all see the public URL.

Of several values (commas in one field, or repeated fields, combined in order as RFC 9110
§5.3 says) only the **right-most** counts: it is the one the trusted proxy added itself;
anything to its left came from further away, possibly from the client. A chain of proxies
must therefore have its inner proxy pass the outer one's value on (``proxy_set_header
X-Forwarded-Proto $http_x_forwarded_proto``), not append its own. A right-most value that is
not valid is ignored as a whole, never replaced by one further left. RFC 7239 ``Forwarded``
and ``X-Forwarded-Port`` are not read.

**Force HTTPS** (ASVS 5.0 4.1.2: only pages meant for a browser redirect). When the effective
scheme is plain (``http``/``ws``):

- a *page request* — ``GET`` or ``HEAD``, no ``Authorization`` header, a path not under
  ``/api/``, and an ``Accept`` that names ``text/html`` (or ``application/xhtml+xml``) with a
  quality at least that of ``application/json`` (what browsers send for a navigation; ``*/*``
  alone is an API client) — is redirected with ``308`` to ``https://<Host><path>?<query>``
  (the same host, an explicit ``:80`` dropped);
- everything else — API calls, other methods, requests with credentials, websockets, a page
  request without a valid ``Host`` — answers ``403`` ``https_required`` in the one JSON error
  shape (``issuer.web.errors.error_response``): a redirect would have the client send its
  credentials and body in clear once more, and hide the mistake.

``/health``, ``/health/ready`` and ``/metrics`` are exempt: probes and scrapers speak plain
HTTP inside the cluster. These answers are made here, before the app, but inside
``issuer.web.observe``'s layer: they carry a request id and the security headers and are in the
access log and the latency metric (route ``<unmatched>``).
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import quote, urlsplit

from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope
from quart import Quart
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from issuer.lib.network import Network, parse_host, trusted
from issuer.web.errors import error_response

EXEMPT = frozenset({"/health", "/health/ready", "/metrics"})
CODE = "https_required"
MESSAGE = "HTTPS is required; this request was not processed."
PAGE_TYPES = ("text/html", "application/xhtml+xml")
# (scope type, X-Forwarded-Proto) -> the scope's scheme.
SCHEMES = {
    ("http", "http"): "http",
    ("http", "https"): "https",
    ("websocket", "http"): "ws",
    ("websocket", "https"): "wss",
}


def last_value(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The right-most comma-separated value of every ``name`` field together, or ``None``."""
    found = None
    for key, value in headers:
        if key.lower() == name:
            found = value
    if found is None:
        return None
    return found.decode("latin-1").rsplit(",", 1)[-1].strip() or None


def header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def peer_trusted(scope: dict[str, Any], proxies: tuple[Network, ...]) -> bool:
    client = scope.get("client")
    if not client:
        return False
    return trusted(client[0], proxies)


def forwarded(scope: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``scope`` with the scheme and host the trusted proxy reports."""
    scope = dict(scope)
    headers = list(scope["headers"])
    proto = (last_value(headers, b"x-forwarded-proto") or "").lower()
    if (scope["type"], proto) in SCHEMES:
        scope["scheme"] = SCHEMES[scope["type"], proto]
    host = last_value(headers, b"x-forwarded-host")
    parsed = parse_host(host) if host else None
    if host and parsed:
        scope["headers"] = [(k, v) for k, v in headers if k.lower() != b"host"]
        scope["headers"].append((b"host", host.encode("ascii")))
        secure = scope["scheme"] in ("https", "wss")
        scope["server"] = (parsed[0], parsed[1] or (443 if secure else 80))
    return scope


def is_page_request(scope: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> bool:
    if scope["method"] not in ("GET", "HEAD") or scope["path"].startswith("/api/"):
        return False
    if header(headers, b"authorization") is not None:
        return False
    accept = parse_accept_header(header(headers, b"accept"), MIMEAccept)
    page = max((q for kind, q in accept if kind.lower() in PAGE_TYPES), default=0)
    return page > 0 and page >= accept.quality("application/json")


def https_location(scope: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> str | None:
    """``https://<Host><path>[?<query>]`` of this request, or ``None`` without a valid Host."""
    host = header(headers, b"host")
    parsed = parse_host(host) if host else None
    if not host or parsed is None:
        return None
    if parsed[1] == 80:
        host = host.rsplit(":", 1)[0]
    target = scope.get("raw_path") or quote(scope["path"]).encode("ascii")
    path = target.decode("latin-1")
    if not path.startswith("/"):  # an absolute-form request target
        path = urlsplit(path).path or "/"
    query = scope.get("query_string") or b""
    return f"https://{host}{path}" + (f"?{query.decode('latin-1')}" if query else "")


class HttpsGate:
    """The middleware: ``HttpsGate(app.asgi_app, quart_app, proxies=..., force_https=...)``."""

    def __init__(
        self, inner: ASGIFramework, app: Quart, *, proxies: tuple[Network, ...], force_https: bool
    ) -> None:
        self.inner = inner
        self.app = app
        self.proxies = proxies
        self.force_https = force_https
        self._refusal: tuple[bytes, list[tuple[bytes, bytes]]] | None = None

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            return await self.inner(scope, receive, send)
        raw = cast(dict[str, Any], scope)
        if self.proxies and peer_trusted(raw, self.proxies):
            raw = forwarded(raw)
        if self.force_https and raw["scheme"] in ("http", "ws") and raw["path"] not in EXEMPT:
            return await self.gate(raw, send)
        await self.inner(cast(Scope, raw), receive, send)

    async def gate(self, scope: dict[str, Any], send: ASGISendCallable) -> None:
        headers = list(scope["headers"])
        if scope["type"] == "http" and is_page_request(scope, headers):
            location = https_location(scope, headers)
            if location is not None:
                redirect = [(b"location", location.encode("latin-1")), (b"content-length", b"0")]
                await send({"type": "http.response.start", "status": 308, "headers": redirect})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
        body, refusal = await self.refusal()
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 403, "headers": refusal})
            await send({"type": "http.response.body", "body": body, "more_body": False})
        elif "websocket.http.response" in (scope.get("extensions") or {}):
            await send({"type": "websocket.http.response.start", "status": 403, "headers": refusal})
            await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
        else:  # before the handshake's accept, the server answers 403 itself
            await send({"type": "websocket.close", "code": 1008, "reason": None})

    async def refusal(self) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """The 403's body and headers, made once by the app's own ``error_response``."""
        if self._refusal is not None:
            return self._refusal
        async with self.app.app_context():
            response = error_response(403, CODE, MESSAGE)
            body = await response.get_data(as_text=False)
        headers = [
            (b"content-type", response.content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"x-content-type-options", b"nosniff"),
        ]
        self._refusal = body, headers
        return body, headers


def install(app: Quart, proxies: tuple[Network, ...], *, force_https: bool) -> None:
    """Wrap ``app.asgi_app`` (Quart's documented place for ASGI middleware)."""
    gate = HttpsGate(app.asgi_app, app, proxies=proxies, force_https=force_https)
    app.asgi_app = gate  # type: ignore[method-assign]
