"""The agents' HTTP plumbing (httpx on aiohttp's transport) against raw loopback servers: every
way an agent can fail becomes ``AgentUnavailable`` (a 503 for the visitor), never a 500."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from issuer.issuance.agents.base import AgentUnavailable
from issuer.issuance.agents.http import call, endpoint, make_client
from issuer.issuance.agents.local import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def server(handle: Handler) -> AsyncIterator[str]:
    """A raw TCP server on loopback running ``handle`` per connection; yields its base URL."""
    tasks: set[asyncio.Task[None]] = set()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handle(reader, writer)
        finally:
            writer.close()

    listening = await asyncio.start_server(connected, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/admin"
    finally:
        for task in tasks:
            task.cancel()
        listening.close()


def answering(status: str, body: bytes, seen: list[bytes] | None = None) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if seen is not None:
            seen.append(head)
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n")
             if line.lower().startswith(b"content-length:")),
            0,
        )  # fmt: skip
        await reader.readexactly(length)
        writer.write(
            b"HTTP/1.1 " + status.encode() + b"\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        await writer.drain()

    return handle


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.sleep(30)


async def hangs_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Le")  # and gone


async def test_an_answer_is_its_json_and_the_call_carries_the_key() -> None:
    seen: list[bytes] = []
    async with server(answering("200 OK", b'{"ready": true}', seen)) as url:
        client = make_client(url, 2.0, {"X-API-Key": "agent-key"})
        try:
            found = await call(
                client, "POST", endpoint(client, "/status/ready", probe="1"), json={}
            )
        finally:
            await client.aclose()
    assert found == {"ready": True}
    assert seen[0].startswith(b"POST /admin/status/ready?probe=1 HTTP/1.1")
    assert b"x-api-key: agent-key" in seen[0].lower()


@pytest.mark.parametrize(
    ("handle", "words"),
    [
        (answering("500 Internal Server Error", b'{"error": 1}'), "answered"),
        (answering("200 OK", b"not json"), "invalid JSON"),
        (silent, "in time"),
        (hangs_up, "could not be reached"),
    ],
    ids=["500", "not JSON", "no answer in time", "connection closed mid-answer"],
)
async def test_every_failure_is_agent_unavailable(handle: Handler, words: str) -> None:
    async with server(handle) as url:
        client = make_client(url, 0.5)
        try:
            with pytest.raises(AgentUnavailable, match=words):
                await call(client, "GET", "/status/ready")
        finally:
            await client.aclose()


async def test_an_agent_nobody_listens_for_is_agent_unavailable() -> None:
    client = make_client(f"http://127.0.0.1:{free_port()}", 0.5)
    try:
        with pytest.raises(AgentUnavailable, match="could not be reached"):
            await call(client, "GET", "/status/ready")
    finally:
        await client.aclose()
