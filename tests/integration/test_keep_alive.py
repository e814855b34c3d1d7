"""hypercorn's keep-alive timer and a request that arrives as it runs out
(``issuer.web.server``: the idle close leaves a connection with unread bytes to be read).

The race needs a late worker: uvloop runs due timers before it reads sockets, so in a busy
worker the timer's close could run after the next request had reached the socket, and the
request (a ``POST`` that no client resends) was lost. The tests drive the replaced timer with
a real socket that holds, or does not hold, a request; a served hypercorn shows the normal
case still holds: an idle connection is closed after the keep-alive time.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import uvloop
from hypercorn.asyncio import serve
from hypercorn.config import Config

from issuer.issuance.agents.local import free_port
from issuer.web import server

REQUEST = b"POST /name HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected pair of sockets: the server's end and the client's."""
    ours, theirs = socket.socketpair()
    try:
        yield ours, theirs
    finally:
        ours.close()
        theirs.close()


def connection(sock: socket.socket, buffered: bytes = b"") -> Any:
    """What ``TCPServer._idle_timeout`` reads of its server: the stream's buffer, the socket,
    the shutdown event, the keep-alive time; records whether it closed."""
    closed: list[bool] = []

    async def close() -> None:
        closed.append(True)

    return SimpleNamespace(
        reader=SimpleNamespace(_buffer=bytearray(buffered)),
        writer=SimpleNamespace(get_extra_info=lambda name: sock if name == "socket" else None),
        context=SimpleNamespace(terminated=asyncio.Event()),
        config=SimpleNamespace(keep_alive_timeout=0.01),
        _initiate_server_close=close,
        closed=closed,
    )


async def test_an_idle_connection_is_closed(pair: tuple[socket.socket, socket.socket]) -> None:
    idle = connection(pair[0])
    await server._idle_timeout(idle)
    assert idle.closed == [True]


async def test_a_request_in_the_socket_is_left_to_be_read(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    theirs.sendall(REQUEST)
    busy = connection(ours)
    assert server.request_waiting(busy)
    await server._idle_timeout(busy)
    assert busy.closed == []


async def test_a_request_in_the_streams_buffer_is_left_to_be_read(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    busy = connection(pair[0], buffered=REQUEST)
    await server._idle_timeout(busy)
    assert busy.closed == []


async def test_at_shutdown_the_connection_is_closed_anyway(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    theirs.sendall(REQUEST)
    stopping = connection(ours)
    stopping.context.terminated.set()
    await server._idle_timeout(stopping)
    assert stopping.closed == [True]


async def ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    await send(start)
    await send({"type": "http.response.body", "body": b"ok"})


async def served_twice(keep_alive: float) -> tuple[bytes, bytes, bytes]:
    """Two requests within the keep-alive time on one connection, then an idle wait past it:
    the two answers and what the idle connection read last (``b""``: closed)."""
    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.keep_alive_timeout = keep_alive
    config.accesslog = None
    stop = asyncio.Event()
    serving = asyncio.ensure_future(serve(ok, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    for _ in range(500):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            break
        except OSError:
            await asyncio.sleep(0.01)
    answers = []
    for _ in range(2):
        writer.write(REQUEST)
        head = await reader.readuntil(b"\r\n\r\n")
        answers.append(head + await reader.readexactly(2))
    last = await asyncio.wait_for(reader.read(1), 10 * keep_alive)
    writer.close()
    stop.set()
    await serving
    return answers[0], answers[1], last


def test_a_served_connection_is_kept_alive_then_closed_when_idle() -> None:
    server.install()  # as create_app() does
    first, second, last = uvloop.run(served_twice(keep_alive=1.0))
    assert first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 200")
    assert last == b""
