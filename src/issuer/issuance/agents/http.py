"""Shared httpx plumbing for agents: one client per agent, explicit timeouts, one error type."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from issuer.issuance.agents.base import AgentUnavailable

log = logging.getLogger(__name__)


def make_client(
    base_url: str, timeout: float, headers: dict[str, str] | None = None
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        headers=headers,
    )


def endpoint(client: httpx.AsyncClient, path: str, **query: str) -> httpx.URL:
    """The absolute URL of ``path`` (and ``query``) on ``client``'s base URL, to build once."""
    return client.base_url.join(path.lstrip("/")).copy_merge_params(query)


async def call(client: httpx.AsyncClient, method: str, url: str | httpx.URL, **kwargs: Any) -> Any:
    """Send one request and return its JSON body; any failure becomes ``AgentUnavailable``."""
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise AgentUnavailable(f"the agent did not answer {method} {url} in time") from exc
    except httpx.HTTPError as exc:
        raise AgentUnavailable(f"the agent could not be reached ({type(exc).__name__})") from exc
    if response.status_code >= 400:
        log.warning("agent %s %s -> %s: %s", method, url, response.status_code, response.text[:300])
        raise AgentUnavailable(f"the agent answered {method} {url} with {response.status_code}")
    try:
        return response.json()
    except ValueError as exc:
        raise AgentUnavailable(f"the agent answered {method} {url} with invalid JSON") from exc
