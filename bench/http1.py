"""A minimal HTTP/1.1 client on raw asyncio Protocols, and the message framing it shares with the
bench's agent stubs (``bench.stub_server``).

Why: the benchmarks' browsers, wallets and agent stubs run on the same 2 cores as the app they
measure, so they must cost far less per request than the app does. This client finds a response's
end and its few framing headers with ``bytes.find`` (``Head``) and makes no object per request but
the ``Response``. Measured on this 2-core KVM guest, keep-alive ``GET``s one after the other to
``bench.stub_server`` on uvloop: ~32 µs of CPU per request (user and system), where httpx took
~340 µs and Node 20's ``http`` module ~140 µs. Under a burst each answer tends to wake the process
on its own, and a wake-up costs this guest ~17 µs of CPU before any work (on one host the kernel
also charges a sender for its peer's TCP input), so a whole portal flow costs ~1 ms.

Scope (our servers are known): hypercorn and gunicorn answers with ``Content-Length`` bodies,
``Transfer-Encoding: chunked`` or (HTTP/1.0 style) a body ended by the server's close; interim
1xx answers skipped; ``Content-Encoding: gzip`` / ``deflate`` decoded (we offer them, as browsers
do; our servers do not compress). One request at a time per connection, no pipelining; idle
keep-alive connections are pooled per client and the most recently used one is taken first.

A kept-alive connection the server closes while a request is on its way (hypercorn closes one
after ``keep_alive_timeout``, 5 s, gunicorn after 2 s) fails with ``ConnectionClosed``; like
browsers (RFC 9110 §9.2.2), a client resends an idempotent request (``GET``, ``HEAD``) once on a
new connection when no byte of an answer had arrived, and never resends a ``POST``.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

HEAD_END = b"\r\n\r\n"
CRLF = b"\r\n"
MAX_HEAD = 64 * 1024
UNTIL_CLOSE = -1
CHUNKED = -2
IDEMPOTENT = frozenset({"GET", "HEAD"})
USER_AGENT = "issuer-bench/1 (raw asyncio)"

Headers = list[tuple[str, str]]


class ProtocolError(Exception):
    """The peer sent something this client or stub does not parse."""


class ConnectionClosed(ConnectionError):
    """The server closed the connection before its answer was complete.

    ``received`` is how many bytes of the answer had arrived (0: none, the request may be resent
    if it is idempotent and the connection was a reused one); ``idle`` how long (seconds) a
    reused connection had been idle in the pool before this request, ``None`` for a new one."""

    def __init__(self, received: int, request: str = "", idle: float | None = None) -> None:
        where = "a new connection" if idle is None else f"a connection idle {idle:.2f} s"
        prefix = f"{request}: " if request else ""
        super().__init__(
            f"{prefix}closed by the server after {received} bytes of the answer, on {where}"
        )
        self.received = received
        self.request = request
        self.idle = idle


# --- message framing (shared with bench.stub_server) ------------------------------------------


class Head:
    """A message head (without the blank line that ends it): its start line, and its headers
    looked up with ``bytes.find`` in a lower-cased copy — no object per header unless all of
    them are asked for (``items()``)."""

    __slots__ = ("line", "lower", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.lower = raw.lower()
        end = raw.find(CRLF)
        self.line = raw[: end if end >= 0 else len(raw)].decode("latin-1")

    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        needle = b"\r\n" + name.lower().encode() + b":"
        values, pos = [], self.lower.find(needle)
        while pos >= 0:
            start = pos + len(needle)
            end = self.raw.find(CRLF, start)
            values.append(self.raw[start : end if end >= 0 else None].strip().decode("latin-1"))
            pos = self.lower.find(needle, start)
        return values

    def get(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        needle = b"\r\n" + name.lower().encode() + b":"
        pos = self.lower.find(needle)
        if pos < 0:
            return None
        start = pos + len(needle)
        end = self.raw.find(CRLF, start)
        return self.raw[start : end if end >= 0 else None].strip().decode("latin-1")

    def items(self) -> Headers:
        """All headers as ``(lower-case name, value)`` pairs, in order."""
        headers = []
        for line in self.raw.decode("latin-1").split("\r\n")[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise ProtocolError(f"bad header line {line[:80]!r}")
            headers.append((name.strip().lower(), value.strip()))
        return headers

    def body_length(self, *, response: bool) -> int:
        """How the body is delimited: a byte count, ``CHUNKED``, or (answers only)
        ``UNTIL_CLOSE`` (RFC 9112 §6.3). Answers that never carry one are the caller's to know."""
        coding = self.get("transfer-encoding")
        if coding is not None and coding.lower().endswith("chunked"):
            return CHUNKED
        length = self.get("content-length")
        if length is not None:
            return int(length)
        return UNTIL_CLOSE if response else 0

    def closes(self) -> bool:
        """Whether the connection ends after this message (``Connection: close``, HTTP/1.0)."""
        version = self.line.split(" ", 1)[0] if self.line.startswith("HTTP/") else self.line[-8:]
        return version != "HTTP/1.1" or "close" in (self.get("connection") or "").lower()


def take_chunked(buffer: bytearray) -> tuple[bytes, int] | None:
    """A complete chunked body at the start of ``buffer``: ``(body, bytes it took)``, or
    ``None`` while it is incomplete (it is parsed again from the start when more arrives)."""
    pos, parts = 0, list[bytes]()
    while True:
        line_end = buffer.find(CRLF, pos)
        if line_end < 0:
            return None
        size = int(bytes(buffer[pos:line_end]).split(b";", 1)[0], 16)
        if size == 0:
            if buffer[line_end + 2 : line_end + 4] == CRLF:
                return b"".join(parts), line_end + 4
            trailers_end = buffer.find(HEAD_END, line_end)
            return None if trailers_end < 0 else (b"".join(parts), trailers_end + 4)
        start = line_end + 2
        if len(buffer) < start + size + 2:
            return None
        parts.append(bytes(buffer[start : start + size]))
        pos = start + size + 2


def decoded(body: bytes, head: Head) -> bytes:
    """``body`` without its ``Content-Encoding`` (gzip or deflate)."""
    coding = (head.get("content-encoding") or "identity").lower()
    if coding == "gzip":
        return zlib.decompress(body, 16 + zlib.MAX_WBITS)
    if coding == "deflate":
        return zlib.decompress(body)
    return body


# --- the client -------------------------------------------------------------------------------


class Response:
    """One answer: ``status``, its ``head`` and the decoded ``body``."""

    __slots__ = ("body", "head", "status")

    def __init__(self, status: int, head: Head, body: bytes) -> None:
        self.status = status
        self.head = head
        self.body = body

    @property
    def headers(self) -> Headers:
        return self.head.items()

    def header(self, name: str) -> str | None:
        return self.head.get(name)

    def header_list(self, name: str) -> list[str]:
        return self.head.get_all(name)

    @property
    def status_code(self) -> int:
        """httpx's name for ``status``."""
        return self.status

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


class _Connection(asyncio.Protocol):
    """One keep-alive TCP connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Response] | None = None
        self.head: tuple[int, Head] | None = None
        self.length = 0
        self.received = 0
        self.no_body = False
        self.closed = False
        self.reusable = True
        self.idle_since: float | None = None  # loop time it went back to the pool
        self.idle_for: float | None = None  # how long it had been idle when last taken

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, data: bytes, method: str) -> asyncio.Future[Response]:
        assert self.transport is not None and self.waiter is None
        self.waiter = asyncio.get_running_loop().create_future()
        self.received, self.head, self.no_body = 0, None, method == "HEAD"
        self.transport.write(data)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # nothing asked: a 408 or garbage, the connection is done
            self.reusable = False
            return
        self.received += len(data)
        self.buffer += data
        try:
            self._parse()
        except (ProtocolError, ValueError, IndexError, zlib.error) as exc:
            self.reusable = False
            self._fail(ProtocolError(str(exc)))

    def _parse(self) -> None:
        while self.head is None:
            end = self.buffer.find(HEAD_END)
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    raise ProtocolError("answer head too long")
                return
            head = Head(bytes(self.buffer[:end]))
            del self.buffer[: end + 4]
            status = int(head.line.split(" ", 2)[1])
            if 100 <= status < 200:
                continue  # 100 Continue and other interim answers
            self.head = (status, head)
            bodiless = self.no_body or status in (204, 304)
            self.length = 0 if bodiless else head.body_length(response=True)
            if head.closes():
                self.reusable = False
        if self.length >= 0:
            if len(self.buffer) < self.length:
                return
            body = bytes(self.buffer[: self.length])
            del self.buffer[: self.length]
        elif self.length == CHUNKED:
            taken = take_chunked(self.buffer)
            if taken is None:
                return
            body, used = taken
            del self.buffer[:used]
        else:
            return  # UNTIL_CLOSE: finished by the server's close
        self._finish(body)

    def _finish(self, body: bytes) -> None:
        assert self.head is not None and self.waiter is not None
        status, head = self.head
        response = Response(status, head, decoded(body, head))  # may raise: the waiter is kept
        if self.buffer:
            self.reusable = False  # bytes nobody asked for
        waiter, self.waiter, self.head = self.waiter, None, None
        if not waiter.done():
            waiter.set_result(response)

    def _fail(self, exc: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def eof_received(self) -> bool:
        self._lost()
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()

    def _lost(self) -> None:
        self.closed = True
        if self.waiter is None or self.waiter.done():
            return
        if self.head is not None and self.length == UNTIL_CLOSE:
            body = bytes(self.buffer)
            self.buffer.clear()
            try:
                self._finish(body)
            except zlib.error as exc:
                self._fail(ProtocolError(str(exc)))
        else:
            self.waiter.set_exception(ConnectionClosed(self.received))
            self.waiter = None

    def timed_out(self) -> None:
        self.reusable = False
        self._fail(TimeoutError("no complete answer in time"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def origin_of(url: str) -> tuple[str, int, str]:
    """``http://host:port/prefix`` → ``(host, port, "/prefix")`` (plain http only)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only http://host[:port] URLs: {url!r}")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")


class Client:
    """Keep-alive connections to one server, shared by every caller (each visitor sends its
    own ``Cookie``: nothing is stored here).

    ``connections`` caps the requests in flight (each holds one connection); ``timeout``
    (seconds) bounds each exchange. Counters: ``opened`` connections, ``resent`` requests.
    """

    def __init__(self, base_url: str, connections: int | None = None, timeout: float = 60.0):
        self.host, self.port, self.prefix = origin_of(base_url)
        self.origin = f"http://{self.host}:{self.port}"
        self.timeout = timeout
        self.idle: list[_Connection] = []
        self.limit = asyncio.Semaphore(connections) if connections else None
        self.common = (
            f"Host: {self.host}:{self.port}\r\nUser-Agent: {USER_AGENT}\r\n"
            "Accept-Encoding: gzip, deflate\r\n"
        )
        self.opened = 0
        self.resent = 0

    async def request(
        self, method: str, path: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b""
    ) -> Response:
        """Send one request (``path`` below the base URL's path) and read its whole answer."""
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
        if body or method not in IDEMPOTENT:
            lines += f"Content-Length: {len(body)}\r\n"
        data = f"{method} {self.prefix}{path} HTTP/1.1\r\n{self.common}{lines}\r\n".encode()
        if body:
            data += body
        if self.limit is None:
            return await self._send(method, data)
        async with self.limit:
            return await self._send(method, data)

    async def get(self, path: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
        return await self.request("GET", path, headers)

    async def post(
        self, path: str, body: bytes, content_type: str, headers: Iterable[tuple[str, str]] = ()
    ) -> Response:
        return await self.request("POST", path, [("Content-Type", content_type), *headers], body)

    async def _send(self, method: str, data: bytes) -> Response:
        connection, reused = await self._connection()
        try:
            response = await self._exchange(connection, data, method)
        except ConnectionClosed as exc:
            if not (reused and exc.received == 0 and method in IDEMPOTENT):
                raise
            self.resent += 1
            connection = await self._open()
            response = await self._exchange(connection, data, method)
        if connection.reusable and not connection.closed:
            connection.idle_since = asyncio.get_running_loop().time()
            self.idle.append(connection)
        else:
            connection.close()
        return response

    async def _exchange(self, connection: _Connection, data: bytes, method: str) -> Response:
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.timeout, connection.timed_out)
        try:
            return await connection.send(data, method)
        except ConnectionClosed as exc:
            connection.close()
            line = data[: data.find(b" HTTP/1.1")].decode("latin-1")
            raise ConnectionClosed(exc.received, line, connection.idle_for) from None
        except BaseException:
            connection.close()
            raise
        finally:
            timer.cancel()

    async def _connection(self) -> tuple[_Connection, bool]:
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed and connection.reusable:
                since = connection.idle_since or 0.0
                connection.idle_for = asyncio.get_running_loop().time() - since
                return connection, True
            connection.close()
        return await self._open(), False

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(_Connection, self.host, self.port)
        self.opened += 1
        return connection

    async def aclose(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
