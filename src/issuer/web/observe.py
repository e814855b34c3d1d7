"""One ASGI layer around the app for what every answer needs: its request id, the browser
protections in its headers, its latency in the metrics and its line in the access log.

It replaces four Quart hooks (a request id and a timer before, the security headers, the metric
and the log line after): measured on ``GET /health``, Quart's hooks and werkzeug's ``Headers``
cost about a third of the request, this layer a few microseconds. The headers are appended to
the ASGI ``http.response.start`` message as prepared byte pairs; a header the route set itself
(``Content-Security-Policy`` of the API viewers, ``Referrer-Policy`` of the recovery page)
wins over the default. Websockets get their request id only (their handshake answer is
hypercorn's).

The route pattern (``/reset_password/<token>/<uidb64>``, never the path, whose parts can be
secrets; ASVS 16.3.1) comes from the request's matched rule, which
:class:`issuer.web.bodies.IssuerRequest` leaves in the ASGI scope under :data:`ROUTE`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from time import perf_counter
from typing import Any

from prometheus_client import Histogram

from issuer.lib.network import parse_host
from issuer.logs import request_id

# Plain mappings: hypercorn's TypedDicts would make every key lookup a union of types.
Scope = Any
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

# The scope key under which the request leaves its route pattern.
ROUTE = "issuer.route"
UNMATCHED = "<unmatched>"
REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
ACCESS = logging.getLogger("issuer.access")
# No 'unsafe-inline', no '*': scripts and styles come from our own static files only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# Sent unless the route set its own.
DEFAULT_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"referrer-policy", b"same-origin"),
)
ALWAYS_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
# RFC 6797; two years, the preload lists' minimum.
HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")


# ``GET /health`` is answered here only for a plain ``Host`` (issuer.lib.network.parse_host);
# anything else (an empty label, IDNA, several Host headers) takes the full path, where werkzeug
# judges it (issuer.web.application: a bad Host is a 400).
def plain_host(headers: list[tuple[bytes, bytes]]) -> bool:
    """Exactly one ``Host`` header, and an unremarkable one."""
    hosts = [value for name, value in headers if name == b"host"]
    return len(hosts) == 1 and parse_host(hosts[0].decode("latin-1")) is not None


def new_request_id() -> str:
    """16 hex digits (64 random bits)."""
    return os.urandom(8).hex()


class RequestObserver:
    """Wraps an ASGI app. ``secure``: it is reached over HTTPS (everywhere but development),
    so answers carry HSTS. ``latency``: the histogram observed once per answer, labelled
    ``method``, ``route``, ``status``; seconds from the request's arrival to its last byte
    handed to the server."""

    def __init__(self, app: ASGIApp, *, secure: bool, latency: Histogram) -> None:
        self.app = app
        self.latency = latency
        self.always = ALWAYS_HEADERS + ((HSTS,) if secure else ())
        # One histogram child per (method, route, status), found without the library's lock.
        self._series: dict[tuple[str, str, int], Any] = {}
        # Path → (headers, body) of GET answers that never change (the liveness probe).
        self._fixed: dict[str, tuple[list[tuple[bytes, bytes]], bytes]] = {}

    def answer_directly(self, path: str, body: bytes, content_type: bytes) -> None:
        """Answer ``GET path`` with ``body`` here, without the framework: for ``/health``,
        which orchestrators and load balancers call every few seconds per instance, and whose
        answer is fixed when the app is built. It gets the same headers, log line and metric as
        any answer; other methods (``HEAD``, ``OPTIONS``) still reach the route."""
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        self._fixed[path] = (headers, body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        rid = (
            given.decode("ascii")
            if given is not None and REQUEST_ID.fullmatch(given)
            else new_request_id()
        )
        request_id.set(rid)
        if kind != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = 0

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                present = {name for name, _ in headers}
                headers.extend(h for h in DEFAULT_HEADERS if h[0] not in present)
                headers.extend(self.always)
                headers.append((b"x-request-id", rid.encode()))
                message["headers"] = headers
                await send(message)
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                await send(message)
                self._answered(scope, status, perf_counter() - started)
            else:
                await send(message)

        fixed = self._fixed.get(scope["path"]) if scope["method"] == "GET" else None
        if fixed is not None and plain_host(scope["headers"]):
            headers, body = fixed
            scope[ROUTE] = scope["path"]
            await observed_send({"type": "http.response.start", "status": 200, "headers": headers})
            await observed_send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, observed_send)

    def _answered(self, scope: Scope, status: int, seconds: float) -> None:
        method, route = scope["method"], scope.get(ROUTE) or UNMATCHED
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = self.latency.labels(method, route, str(status))
        series.observe(seconds)
        if ACCESS.isEnabledFor(logging.INFO):
            ACCESS.info(
                "%s %s %s %.1fms", method, route, status, seconds * 1000,
                extra={"method": method, "route": route, "status": status,
                       "duration_ms": round(seconds * 1000, 3)},
            )  # fmt: skip
