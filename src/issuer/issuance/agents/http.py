"""Shared httpx plumbing for agents: one client per agent, explicit timeouts, one error type.

The client is httpx's, on aiohttp's transport (``httpx-aiohttp``): httpcore's connection pool
looks at every connection for every queued request (its cost grows with the square of the
requests in flight: a fifth of the worker's CPU when 500 visitors start at once, 200 ms from
the agent), aiohttp's finds one in constant time. Calls, timeouts and errors stay httpx's.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from issuer.issuance.agents.base import AgentUnavailable

log = logging.getLogger(__name__)


def make_client(
    base_url: str, timeout: float, headers: dict[str, str] | None = None
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=AiohttpTransport(limits=httpx.Limits(max_connections=200)),
        base_url=base_url.rstrip("/"),
        timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
        headers=headers,
    )


def endpoint(client: httpx.AsyncClient, path: str, **query: str) -> httpx.URL:
    """The absolute URL of ``path`` (and ``query``) on ``client``'s base URL, to build once."""
    return client.base_url.join(path.lstrip("/")).copy_merge_params(query)


def unreachable(method: str, url: str | httpx.URL, exc: Exception) -> str:
    """What failed, from aiohttp's own error where the transport wrapped it in an httpx one
    (it reports a refused connection as a ``ConnectTimeout``)."""
    cause = exc.__cause__ if isinstance(exc.__cause__, aiohttp.ClientError) else exc
    if isinstance(cause, TimeoutError) or (
        cause is exc and isinstance(exc, httpx.TimeoutException)
    ):
        return f"the agent did not answer {method} {url} in time"
    return f"the agent could not be reached ({type(cause).__name__})"


async def call(client: httpx.AsyncClient, method: str, url: str | httpx.URL, **kwargs: Any) -> Any:
    """Send one request and return its JSON body; any failure becomes ``AgentUnavailable``."""
    try:
        response = await client.request(method, url, **kwargs)
    except (httpx.HTTPError, aiohttp.ClientError, TimeoutError) as exc:
        raise AgentUnavailable(unreachable(method, url, exc)) from exc
    if response.status_code >= 400:
        log.warning("agent %s %s -> %s: %s", method, url, response.status_code, response.text[:300])
        raise AgentUnavailable(f"the agent answered {method} {url} with {response.status_code}")
    try:
        return response.json()
    except ValueError as exc:
        raise AgentUnavailable(f"the agent answered {method} {url} with invalid JSON") from exc
