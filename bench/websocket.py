"""A minimal RFC 6455 websocket client on a raw asyncio Protocol, for the bench's browsers.

It does what a browser's ``new WebSocket(url)`` does on the wire, and no more: the opening
handshake with a random ``Sec-WebSocket-Key`` (checked against ``Sec-WebSocket-Accept``), the
page's ``Origin`` and cookie, and — unless asked not to — the permessage-deflate offer Chromium
sends (``permessage-deflate; client_max_window_bits``, RFC 7692); messages the server compressed
are inflated (with or without context takeover, as negotiated). Text and binary messages
(fragmented or not) are queued for ``recv()``; pings are answered with pongs; a close frame from
the server is answered with one (the closing handshake, RFC 6455 §5.5.1) and then the server
closes the TCP connection, as it should (§7.1.1). ``close()`` starts the closing handshake from
this side. Frames this client sends are masked (§5.3); it sends no pings of its own.

Cost: the handshake is one write and one read, a small message a few slices of one buffer; no
task per connection (``recv()`` waits on a future the protocol resolves).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
import zlib
from collections import deque
from typing import cast

from bench.http1 import HEAD_END, MAX_HEAD, Head, ProtocolError

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OFFER = "permessage-deflate; client_max_window_bits"
TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
NORMAL_CLOSURE = 1000
DEFLATE_TAIL = b"\x00\x00\xff\xff"


class InvalidHandshake(ProtocolError):
    """The server did not switch protocols, or answered the handshake wrongly."""


class ConnectionClosed(ConnectionError):
    """The websocket is closed; ``code`` is the close code received (1006: none)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"websocket closed: {code} {reason}".rstrip())
        self.code = code


def masked(payload: bytes, key: bytes) -> bytes:
    """``payload`` XOR the repeated 4-byte ``key`` (RFC 6455 §5.3), as one integer operation."""
    if not payload:
        return b""
    size = len(payload)
    repeated = (key * (size // 4 + 1))[:size]
    value = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return value.to_bytes(size, "big")


def frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame."""
    key = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    return head + key + masked(payload, key)


def expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no websocket message in time"))


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


class Inflater:
    """permessage-deflate as the server agreed to it (RFC 7692 §7)."""

    def __init__(self, parameters: str) -> None:
        params = {p.split("=")[0].strip(): p for p in parameters.split(";")[1:]}
        bits = params.get("server_max_window_bits", "=15").split("=")[-1].strip('" ')
        self.wbits = -int(bits or 15)
        self.takeover = "server_no_context_takeover" not in params
        self.inflater = zlib.decompressobj(self.wbits)

    def inflate(self, data: bytes) -> bytes:
        if not self.takeover:
            self.inflater = zlib.decompressobj(self.wbits)
        return self.inflater.decompress(data + DEFLATE_TAIL)


class WebSocket(asyncio.Protocol):
    """One client websocket: ``recv()`` text messages (``str``; binary ones as ``bytes``)."""

    def __init__(self, request: bytes, key: str) -> None:
        self.request = request
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.messages: deque[str | bytes] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.inflater: Inflater | None = None
        self.fragments: list[bytes] = []
        self.fragment_opcode = 0
        self.fragment_compressed = False
        self.close_sent = False
        self.close_code: int | None = None
        self.extensions = ""

    # --- the opening handshake ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            if not self.opened.done():
                self._handshake()
            if self.opened.done() and not self.opened.exception():
                self._frames()
        except (ProtocolError, ValueError, IndexError, zlib.error) as exc:
            self._abort(exc)

    def _handshake(self) -> None:
        end = self.buffer.find(HEAD_END)
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                raise InvalidHandshake("handshake answer head too long")
            return
        head = Head(bytes(self.buffer[:end]))
        del self.buffer[: end + 4]
        status = head.line.split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            raise InvalidHandshake(f"server refused the websocket: {head.line}")
        if head.get("sec-websocket-accept") != accept_key(self.key):
            raise InvalidHandshake("wrong Sec-WebSocket-Accept")
        self.extensions = head.get("sec-websocket-extensions") or ""
        if self.extensions:
            if not self.extensions.startswith("permessage-deflate"):
                raise InvalidHandshake(f"extension not offered: {self.extensions}")
            self.inflater = Inflater(self.extensions)
        self.opened.set_result(None)

    # --- frames ---------------------------------------------------------------------------------

    def _frames(self) -> None:
        buffer = self.buffer
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            if second & 0x80:
                raise ProtocolError("the server masked a frame")
            size, start = second & 0x7F, 2
            if size == 126:
                if len(buffer) < 4:
                    return
                size, start = struct.unpack_from("!H", buffer, 2)[0], 4
            elif size == 127:
                if len(buffer) < 10:
                    return
                size, start = struct.unpack_from("!Q", buffer, 2)[0], 10
            if len(buffer) < start + size:
                return
            payload = bytes(buffer[start : start + size])
            del buffer[: start + size]
            self._frame(first, payload)

    def _frame(self, first: int, payload: bytes) -> None:
        opcode, final, compressed = first & 0x0F, first & 0x80, bool(first & 0x40)
        if opcode in (TEXT, BINARY):
            self.fragment_opcode, self.fragment_compressed = opcode, compressed
            self.fragments = [payload]
        elif opcode == CONTINUATION:
            self.fragments.append(payload)
        elif opcode == PING:
            self._write(PONG, payload)
            return
        elif opcode == PONG:
            return
        elif opcode == CLOSE:
            self._closing(payload)
            return
        else:
            raise ProtocolError(f"unknown opcode {opcode}")
        if final:
            self._deliver(b"".join(self.fragments))
            self.fragments = []

    def _deliver(self, data: bytes) -> None:
        if self.fragment_compressed:
            if self.inflater is None:
                raise ProtocolError("compressed frame without permessage-deflate")
            data = self.inflater.inflate(data)
        self.messages.append(data.decode() if self.fragment_opcode == TEXT else data)
        self._wake()

    def _closing(self, payload: bytes) -> None:
        code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
        self.close_code = code
        if not self.close_sent:
            self._write(CLOSE, payload[:2])  # echo the code (RFC 6455 §5.5.1)
            self.close_sent = True
        self._wake()

    def _write(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame(opcode, payload))

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _abort(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(
                InvalidHandshake("the server closed the connection before answering the handshake")
            )
        if self.close_code is None:
            self.close_code = 1006
        if not self.closed.done():
            self.closed.set_result(None)
        self._wake()

    # --- the page's side ----------------------------------------------------------------------

    async def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message; ``ConnectionClosed`` once the server closed and none is left,
        ``TimeoutError`` if none came within ``timeout`` seconds."""
        while not self.messages:
            if self.close_code is not None:
                raise ConnectionClosed(self.close_code)
            loop = asyncio.get_running_loop()
            self.waiter = waiter = loop.create_future()
            timer = None if timeout is None else loop.call_later(timeout, expire, waiter)
            try:
                await waiter
            finally:
                self.waiter = None
                if timer is not None:
                    timer.cancel()
        return self.messages.popleft()

    async def send(self, text: str) -> None:
        """Send one (uncompressed) text message."""
        if self.close_sent:
            raise ConnectionClosed(self.close_code or 1006)
        self._write(TEXT, text.encode())

    async def close(self, code: int = NORMAL_CLOSURE, timeout: float = 10.0) -> None:
        """The closing handshake: our close frame (unless the server's came first and was
        answered), the server's, then the server closes TCP; aborted after ``timeout``."""
        if not self.close_sent:
            self.close_sent = True
            self._write(CLOSE, struct.pack("!H", code))
        if self.closed.done() or self.transport is None:
            return
        timer = asyncio.get_running_loop().call_later(timeout, self.transport.abort)
        try:
            await self.closed
        finally:
            timer.cancel()

    def timed_out(self) -> None:
        self._abort(TimeoutError("no websocket handshake answer in time"))


async def connect(
    host: str,
    port: int,
    path: str,
    headers: list[tuple[str, str]],
    *,
    deflate: bool = True,
    timeout: float = 30.0,
) -> WebSocket:
    """Open ``ws://host:port/path`` with ``headers`` (e.g. ``Origin``, ``Cookie``); raises
    ``InvalidHandshake`` if the server does not switch protocols."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    offer = f"Sec-WebSocket-Extensions: {OFFER}\r\n" if deflate else ""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{offer}{lines}\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    _, socket = await loop.create_connection(lambda: WebSocket(request, key), host, port)
    timer = loop.call_later(timeout, socket.timed_out)
    try:
        await socket.opened
    except BaseException:
        if socket.transport is not None:
            socket.transport.abort()
        raise
    finally:
        timer.cancel()
    return socket
