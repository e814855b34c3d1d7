"""Who is on the other end: the client address behind trusted proxies, and its user agent."""

from __future__ import annotations

from quart import has_request_context, request, websocket

from issuer.lib.network import Client, client_ip
from issuer.web.context import services

MAX_USER_AGENT = 300


def remote_ip() -> str:
    """The client's address; ``X-Forwarded-For`` counts only from ``ISSUER_TRUSTED_PROXIES``
    (ASVS 4.1.3)."""
    source = request if has_request_context() else websocket
    forwarded = source.headers.get("X-Forwarded-For")
    return client_ip(source.remote_addr, forwarded, services().trusted_proxies)


def current_client() -> Client:
    agent = request.headers.get("User-Agent") or None
    return Client(ip=remote_ip(), user_agent=agent[:MAX_USER_AGENT] if agent else None)
