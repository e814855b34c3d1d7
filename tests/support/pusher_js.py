"""The real ``pusher-js`` client (npm, Node build) driven from the tests, one per Node process.

``tests/support/pusher/client.mjs`` runs it (pinned in ``tests/support/pusher/package-lock.json``,
installed by ``make test`` or ``npm ci`` in that folder) with the websocket transport only, no TLS
and no stats, against ``ws://<host>:<port>/app/<key>?protocol=7&client=js&version=<pusher-js>``
and channel authorization by ``POST <auth_endpoint>`` (form ``socket_id``, ``channel_name``) with
the given headers::

    async with PusherJs(host="127.0.0.1", port=port, key="app-key",
                        headers={"Authorization": f"Bearer {token}"}) as client:
        await client.subscribe("private-user-42")          # the "subscribed" report
        pushed = await client.next("event", channel="private-user-42", event="credential.issued")
        assert pushed["data"] == {...}                       # already JSON-decoded by pusher-js

Everything the client sees arrives as a report (a dict with a ``type``), kept in order until a
``next`` (or ``subscribe``) call takes it:

- ``{"type": "state", "state": "connecting"|"connected"|"unavailable"|"failed"|"disconnected",
  "previous": ..., "socket_id": ...}`` (``socket_id`` when connected) on every state change;
- ``{"type": "connecting_in", "delay": seconds}`` when pusher-js schedules a reconnection;
- ``{"type": "error", "error_type": ..., "code": ..., "message": ..., "error": {...}}`` for each
  ``error`` of ``pusher.connection`` (a ``pusher:error`` message, a close code of 4000 and up,
  a failed handshake);
- ``{"type": "subscribed", "channel": ..., "data": ...}``, for presence channels with
  ``"members": {"me": {"id", "info"}, "count": n, "list": [{"id", "info"}, ...]}``;
- ``{"type": "subscription_error", "channel": ..., "status": ..., "error": ...,
  "error_type": ...}``;
- ``{"type": "event", "channel": ..., "event": ..., "data": ..., "user_id": ...}`` (``user_id``
  only when the server sent one, i.e. client events on presence channels);
- ``{"type": "member_added"|"member_removed", "channel": ..., "member": {"id", "info"},
  "count": n}``.

pusher-js reconnects by itself after a close code below 4000 (in 1 s), 4100-4199 (in 1 s) or
4200-4299 (at once); 4000 makes it retry with TLS (wss), which never connects here. The new
``connected`` state report carries the new socket ID (``socket_id`` follows it) and every channel
is subscribed again, each with a new ``subscribed`` report. Close codes 4001-4099 and 4300 and up
end in ``disconnected``, with no retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support import node as node_support
from tests.support.node import package_ready, require_package

PUSHER_DIR = Path(__file__).resolve().parent / "pusher"
CLIENT_SCRIPT = PUSHER_DIR / "client.mjs"
PACKAGE = "pusher-js"
VERSION = "8.6.0"
CONNECT_TIMEOUT = 15.0
COMMAND_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0

Report = dict[str, Any]


class PusherJsError(RuntimeError):
    """The client process failed: did not connect, exited, or refused a command."""


class SubscriptionRefused(Exception):
    """``pusher:subscription_error``: ``status`` is the auth endpoint's HTTP status (``None``
    when the refusal came from elsewhere), ``error`` pusher-js's message."""

    def __init__(self, status: int | None, error: Any, report: Report | None = None) -> None:
        super().__init__(f"subscription refused (status {status}): {error}")
        self.status = status
        self.error = error
        self.report = report or {}


def node_modules_ready() -> bool:
    """True when the pinned npm package is installed next to this harness."""
    return package_ready(PUSHER_DIR, PACKAGE, VERSION)


def require_node_modules() -> None:
    require_package(PUSHER_DIR, PACKAGE, VERSION)


def node_binary() -> str:
    return node_support.node_binary("pusher-js")


class PusherJs:
    """One pusher-js client in its own ``node`` process, for the duration of an ``async with``.

    ``auth_endpoint`` defaults to ``http://<host>:<port>/pusher/auth``; ``headers`` go with every
    authorization request (the Node build cannot send ``Cookie``: use ``Authorization``);
    ``options`` are merged into the ``Pusher`` options last (``activityTimeout``, ...). Entering
    waits up to ``connect_timeout`` for the ``connected`` state (raising ``PusherJsError`` with
    the reports and Node's stderr otherwise) unless ``wait_connected`` is false, in which case
    the state reports are left for ``next``.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        key: str,
        auth_endpoint: str | None = None,
        headers: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
        wait_connected: bool = True,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.host = host
        self.port = port
        self.key = key
        self.auth_endpoint = auth_endpoint or f"http://{host}:{port}/pusher/auth"
        self.headers = dict(headers or {})
        self.options = dict(options or {})
        self.wait_connected = wait_connected
        self.connect_timeout = connect_timeout
        self.socket_id: str | None = None
        self.state: str | None = None
        self.returncode: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._stderr = bytearray()
        self._reports: list[Report] = []
        self._seen: list[Report] = []
        self._changed = asyncio.Condition()
        self._pending: dict[int, asyncio.Future[Report]] = {}
        self._next_id = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    # -- the process ---------------------------------------------------------------------

    async def __aenter__(self) -> PusherJs:
        require_node_modules()
        env = {**os.environ, "NO_COLOR": "1"}
        # stdin stays open while we run: the client exits when it closes, so it cannot outlive
        # this process even if the block never reaches its cleanup.
        self._process = await asyncio.create_subprocess_exec(
            node_binary(), str(CLIENT_SCRIPT),
            cwd=PUSHER_DIR, env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self._process.stdout is not None and self._process.stderr is not None
        self._tasks = [
            asyncio.create_task(self._read(self._process.stdout)),
            asyncio.create_task(self._collect(self._process.stderr)),
        ]
        try:
            await self._command(
                "connect",
                key=self.key,
                host=self.host,
                port=self.port,
                authEndpoint=self.auth_endpoint,
                headers=self.headers,
                options=self.options,
            )
            if self.wait_connected:
                await self._wait_connected()
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _wait_connected(self) -> None:
        try:
            async with asyncio.timeout(self.connect_timeout):
                while True:
                    report = await self._take(_matcher("state", None, None))
                    if report["state"] == "connected":
                        return
                    if report["state"] in ("failed", "disconnected"):
                        raise PusherJsError(self._describe(f"went {report['state']}"))
        except TimeoutError:
            raise PusherJsError(
                self._describe(f"was not connected within {self.connect_timeout:g} s")
            ) from None

    async def _stop(self) -> None:
        process = self._process
        if process is None:
            return
        if process.returncode is None and not self._closed:
            with contextlib.suppress(PusherJsError, TimeoutError, ConnectionError):
                await self._command("disconnect", timeout=STOP_TIMEOUT)
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if process.stdin is not None:
            with contextlib.suppress(ConnectionError):
                await process.stdin.wait_closed()
        for task in self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(task, STOP_TIMEOUT)
        self.returncode = process.returncode
        self._process = None

    async def _read(self, stream: asyncio.StreamReader) -> None:
        try:
            while line := await stream.readline():
                text = line.decode(errors="replace").strip()
                if not text:
                    continue
                try:
                    message = json.loads(text)
                except ValueError:
                    self._stderr.extend(f"[stdout, not JSON] {text}\n".encode())
                    continue
                if "ok" in message and "type" not in message:
                    future = self._pending.pop(message.get("id"), None)
                    if future is not None and not future.done():
                        future.set_result(message)
                    continue
                if message.get("type") == "state":
                    self.state = message.get("state")
                    if message.get("state") == "connected":
                        self.socket_id = message.get("socket_id")
                async with self._changed:
                    self._reports.append(message)
                    self._seen.append(message)
                    self._changed.notify_all()
        finally:
            self._closed = True
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(PusherJsError(self._describe("exited")))
            self._pending.clear()
            async with self._changed:
                self._changed.notify_all()

    async def _collect(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self._stderr.extend(chunk)

    # -- commands ------------------------------------------------------------------------

    async def _command(self, op: str, *, timeout: float = COMMAND_TIMEOUT, **fields: Any) -> Any:
        process = self._process
        if process is None or process.stdin is None or self._closed:
            raise PusherJsError(self._describe("is not running"))
        self._next_id += 1
        command_id = self._next_id
        future: asyncio.Future[Report] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        process.stdin.write(json.dumps({"id": command_id, "op": op, **fields}).encode() + b"\n")
        try:
            await process.stdin.drain()
            async with asyncio.timeout(timeout):
                answer = await future
        except TimeoutError:
            problem = f"did not answer {op!r} within {timeout:g} s"
            raise PusherJsError(self._describe(problem)) from None
        finally:
            self._pending.pop(command_id, None)
        if not answer.get("ok"):
            raise PusherJsError(f"pusher-js refused {op!r}: {answer.get('error')}")
        return answer.get("result")

    async def subscribe(self, channel: str, timeout: float = COMMAND_TIMEOUT) -> Report:
        """Subscribe and wait for the outcome: the ``subscribed`` report, or
        ``SubscriptionRefused`` on ``pusher:subscription_error``."""
        await self._command("subscribe", channel=channel)
        report = await self.next(("subscribed", "subscription_error"), channel, timeout=timeout)
        if report["type"] == "subscription_error":
            raise SubscriptionRefused(report.get("status"), report.get("error"), report)
        return report

    async def unsubscribe(self, channel: str) -> None:
        """``pusher.unsubscribe(channel)`` (the protocol has no answer to wait for)."""
        await self._command("unsubscribe", channel=channel)

    async def trigger(self, channel: str, event: str, data: Any) -> bool:
        """``channel.trigger(event, data)`` on a subscribed channel: a ``client-`` event.
        True when pusher-js handed it to the websocket."""
        return bool(await self._command("trigger", channel=channel, event=event, data=data))

    async def send_event(self, event: str, data: Any, channel: str | None = None) -> bool:
        """``pusher.send_event(event, data, channel)``: any raw protocol event."""
        return bool(await self._command("send_event", event=event, data=data, channel=channel))

    async def status(self) -> Report:
        """pusher-js's view: ``{"state", "socket_id", "channels": {name: {subscribed,
        pending}}}``."""
        result: Report = await self._command("status")
        return result

    async def disconnect(self) -> int | None:
        """``pusher.disconnect()`` and wait for the process to end; returns its exit code."""
        await self._stop()
        return self.returncode

    # -- reports -------------------------------------------------------------------------

    async def next(
        self,
        type: str | tuple[str, ...] | None = None,
        channel: str | None = None,
        event: str | None = None,
        timeout: float = COMMAND_TIMEOUT,
    ) -> Report:
        """The oldest report not yet taken that matches (``type`` may be a tuple of types),
        waiting up to ``timeout`` s for it; the others stay queued for later calls."""
        try:
            async with asyncio.timeout(timeout):
                return await self._take(_matcher(type, channel, event))
        except TimeoutError:
            wanted = {"type": type, "channel": channel, "event": event}
            raise PusherJsError(
                self._describe(f"reported nothing matching {wanted} within {timeout:g} s")
            ) from None

    async def _take(self, matches: Callable[[Report], bool]) -> Report:
        async with self._changed:
            while True:
                for index, report in enumerate(self._reports):
                    if matches(report):
                        return self._reports.pop(index)
                if self._closed:
                    raise PusherJsError(self._describe("exited before reporting it"))
                await self._changed.wait()

    @property
    def pending(self) -> list[Report]:
        """The reports not taken yet, oldest first."""
        return list(self._reports)

    @property
    def history(self) -> list[Report]:
        """Every report so far, taken or not."""
        return list(self._seen)

    @property
    def stderr(self) -> str:
        return self._stderr.decode(errors="replace")

    def _describe(self, problem: str) -> str:
        process = self._process
        code = process.returncode if process is not None else self.returncode
        exited = f" (exit code {code})" if code is not None else ""
        reports = "\n".join(json.dumps(report) for report in self._seen[-20:]) or "(none)"
        stderr = self.stderr[-8000:] or "(empty)"
        return (
            f"pusher-js ({CLIENT_SCRIPT.name}, ws://{self.host}:{self.port}/app/{self.key}) "
            f"{problem}{exited}; its last reports:\n{reports}\nits stderr:\n{stderr}"
        )


def _matcher(
    type: str | tuple[str, ...] | None,
    channel: str | None,
    event: str | None,
) -> Callable[[Report], bool]:
    types = (type,) if isinstance(type, str) else type

    def matches(report: Report) -> bool:
        return (
            (types is None or report.get("type") in types)
            and (channel is None or report.get("channel") == channel)
            and (event is None or report.get("event") == event)
        )

    return matches
