"""What hypercorn and the app do at the edges, against a served process (``hypercorn.toml``):
malformed ``Host`` headers, bodies that never finish, garbage websocket frames, websocket
refusals, and SIGTERM with websockets open.

The credential agent is the REST stub (``tests.support.rest_stub``) in this event loop.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import struct
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from issuer.issuance.agents.local import free_port
from tests.conftest import migrate
from tests.support.portal import ORIGIN, cookie_header, live, open_session
from tests.support.rest_stub import RestStub
from tests.support.servers import ServerProcess, process_tree, stop_gracefully

BAD_HOSTS = ("a..b", ".", "a" * 64 + ".example")


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
async def stub() -> AsyncIterator[RestStub]:
    async with RestStub().serve() as served:
        yield served


def env_for(stub: RestStub, database_url: str, **extra: str) -> dict[str, str]:
    return {
        "ISSUER_ENV": "development",  # plain-HTTP clients drop Secure cookies
        "ISSUER_DATABASE_URL": database_url,
        "ISSUER_SECRET_KEY": secrets.token_urlsafe(32),
        "ISSUER_ALLOWED_ORIGINS": ORIGIN,
        "ISSUER_AGENT": "rest",
        "ISSUER_REST_CONNECTION_URL": stub.url,
        "ISSUER_REST_ISSUER_URL": stub.url,
        "ISSUER_REST_CREDENTIAL_DEFINITION_ID": "cred-def",
        "ISSUER_ACAPY_ADMIN_URL": "",
        "ISSUER_TEST_WALLET_ADMIN_URL": "",
        **extra,
    }


@pytest.fixture(scope="module")
def sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('edges') / 'issuer.db'}"
    migrate(url)
    yield url


async def serve(stub: RestStub, url: str, tmp: Path, *args: str, **env: str) -> ServerProcess:
    server = ServerProcess(free_port(), env_for(stub, url, **env), tmp / "server.log", args=args)
    # Starting blocks (it polls /health); the stub in this loop must keep answering meanwhile.
    return await asyncio.to_thread(server.start)


async def raw_exchange(port: int, request: bytes, *, read_for: float = 5.0) -> tuple[bytes, float]:
    """Send ``request`` and read until the server closes; what came back and when (s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(request)
    await writer.drain()
    received = b""
    try:
        async with asyncio.timeout(read_for):
            while chunk := await reader.read(65536):
                received += chunk
    finally:
        writer.close()
    return received, time.monotonic() - started


async def test_malformed_host_headers_are_400_in_the_json_shape(
    stub: RestStub, sqlite_file: str, tmp_path: Path
) -> None:
    server = await serve(stub, sqlite_file, tmp_path)
    try:
        for host in BAD_HOSTS:
            for request in (
                f"GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
                f"GET /ws/issuance/x HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            ):
                answer, _ = await raw_exchange(server.port, request.encode())
                head, _, body = answer.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 400"), (host, answer[:200])
                assert b'"error":"bad_request"' in body and b"Host" in body, body
        assert "Traceback" not in server.log_tail(500)
    finally:
        stop_gracefully(server)


async def test_malformed_host_in_the_test_client(app: Any) -> None:
    client = app.test_client()
    response = await client.get("/health", headers={"Host": "a..b"})
    assert response.status_code == 400
    assert (await response.get_json())["error"] == "bad_request"


async def test_a_body_that_never_arrives_in_full_gets_408(
    stub: RestStub, sqlite_file: str, tmp_path: Path
) -> None:
    server = await serve(stub, sqlite_file, tmp_path, ISSUER_BODY_TIMEOUT="1")
    try:
        head = (
            b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n"
        )
        answer, took = await raw_exchange(server.port, head + b'{"user": "')
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b'"error":"request_timeout"' in answer
        assert 0.9 <= took < 5, took
    finally:
        stop_gracefully(server)


async def test_a_silent_connection_is_closed_by_the_read_timeout(
    stub: RestStub, sqlite_file: str, tmp_path: Path
) -> None:
    server = await serve(
        stub, sqlite_file, tmp_path, "--read-timeout", "1", ISSUER_BODY_TIMEOUT="60"
    )
    try:
        head = (
            b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n"
        )
        answer, took = await raw_exchange(server.port, head + b'{"user": "', read_for=20)
        assert answer == b"" and 0.9 <= took < 5, (answer[:200], took)
    finally:
        stop_gracefully(server)


def masked_frame(opcode: int, payload: bytes, *, first: int | None = None) -> bytes:
    """One client frame (FIN set, masked, as RFC 6455 requires of clients)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return (
        bytes([first if first is not None else 0x80 | opcode, 0x80 | len(payload)]) + mask + masked
    )


async def open_raw_socket(port: int, session_id: str, cookie: str) -> Any:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws/issuance/{session_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Origin: {ORIGIN}\r\nCookie: {cookie}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def close_code(reader: asyncio.StreamReader) -> int:
    """Read frames until the server's close frame; its status code."""
    async with asyncio.timeout(5):
        while True:
            first, second = await reader.readexactly(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
            payload = await reader.readexactly(length)
            if first & 0x0F == 0x8:
                return int(struct.unpack("!H", payload[:2])[0])


async def test_garbage_frames_are_answered_with_a_close_frame(
    stub: RestStub, sqlite_file: str, tmp_path: Path
) -> None:
    server = await serve(stub, sqlite_file, tmp_path)
    cases = [
        (b"GARBAGE!", 1002),
        (masked_frame(0x1, b"x", first=0xA1), 1002),  # RSV2 set
        (masked_frame(0x3, b"x"), 1002),  # reserved opcode
        (masked_frame(0x1, b"\xff\xfe"), 1007),  # text that is not UTF-8
    ]
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            session_id, _ = await open_session(client)
            for frame, expected in cases:
                reader, writer = await open_raw_socket(
                    server.port, session_id, cookie_header(client)
                )
                try:
                    writer.write(frame)
                    await writer.drain()
                    assert await close_code(reader) == expected, frame
                finally:
                    writer.close()
        assert "Traceback" not in server.log_tail(500)
    finally:
        stop_gracefully(server)


async def test_refusals_reach_a_real_client_as_close_code_1008(
    stub: RestStub, sqlite_file: str, tmp_path: Path
) -> None:
    server = await serve(stub, sqlite_file, tmp_path)
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            session_id, _ = await open_session(client)
            for origin, cookie, reason in (
                ("https://evil.example", cookie_header(client), "origin not allowed"),
                (ORIGIN, "", "not your session"),
            ):
                async with websockets.connect(
                    f"ws://127.0.0.1:{server.port}/ws/issuance/{session_id}",
                    origin=origin,  # type: ignore[arg-type]
                    additional_headers={"Cookie": cookie} if cookie else {},
                ) as ws:
                    with pytest.raises(websockets.ConnectionClosedError) as closed:
                        await asyncio.wait_for(ws.recv(), 5)
                assert closed.value.rcvd is not None
                assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, reason)
    finally:
        stop_gracefully(server)


async def test_sigterm_closes_open_websockets_with_1001_at_once(
    stub: RestStub, sqlite_file: str, tmp_path: Path
) -> None:
    server = await serve(stub, sqlite_file, tmp_path)
    assert server.proc is not None
    children = process_tree(server.proc.pid)[1:]
    async with httpx.AsyncClient(base_url=server.url) as client:
        session_id, _ = await open_session(client)
        async with (
            live(server.port, session_id, cookie_header(client)) as first,
            live(server.port, session_id, cookie_header(client)) as second,
        ):
            for ws in (first, second):
                await asyncio.wait_for(ws.recv(), 5)  # the stored state
            signalled = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)  # as docker stop does: the master only
            for ws in (first, second):
                with pytest.raises(websockets.ConnectionClosedOK) as closed:
                    await asyncio.wait_for(ws.recv(), 5)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
            # At once: far from the 10 s graceful timeout (3 s leaves room for a loaded CI).
            assert time.monotonic() - signalled < 3.0
    # Well inside the 10 s graceful timeout, and nothing was cut short.
    code = await asyncio.to_thread(server.proc.wait, 5)
    assert code == 0 and time.monotonic() - signalled < 5
    log = server.log_tail(300)
    assert "Traceback" not in log and "CancelledError" not in log, log
    # The worker, and multiprocessing's resource tracker a moment after it.
    deadline = time.monotonic() + 3
    while (left := [pid for pid in children if running(pid)]) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert left == []
