"""Small, version-checked adapters to hypercorn 0.18 (and wsproto 1.2/1.3) for what they do not
let us configure. Each names the line it works around; ``install()`` refuses to start on a
version it was not tested with, so an upgrade fails loudly instead of silently changing what
clients see.

- **Shutdown notice.** A worker learns that shutdown started only after the graceful wait
  (``app.shutdown_event`` is set by the lifespan shutdown), so open websockets were cut with
  1011 at the end of it. The worker's shutdown trigger (``asyncio/run.py`` ``worker_serve``
  looks up ``check_multiprocess_shutdown_event`` after loading the app) now also sets every
  app's ``shutdown_event`` the moment the master asks the workers to stop; our websockets then
  close with 1001 at once.
- **Ping task.** ``WSStream._send_pings`` sleeps a whole ping interval between checks of
  ``closed``, so a closed websocket's connection lived on for up to 20 s, past the graceful
  timeout. It is cancelled when its stream closes.
- **A worker that cannot be left behind.** A worker (``workers >= 1``) leaves SIGTERM at its
  default action and never notices its master dying, so a SIGTERM to the whole process group
  (systemd, supervisor's ``stopasgroup``, ``timeout``) killed it before ``after_serving`` and a
  SIGKILLed master left it serving. :func:`tie_worker_to_master` makes SIGTERM in the worker a
  SIGTERM to the master (hypercorn's own graceful path) and shuts the worker down gracefully
  when the master is gone. The SIGTERM is passed on only if the master has not started the
  shutdown itself within :data:`FORWARD_AFTER`: a signal to the whole group reaches the master
  too, and hypercorn's master calls ``shutdown_event.set()`` inside its Python signal handler
  (``run.py`` ``shutdown``), where ``multiprocessing.Event`` takes a lock that is not
  reentrant; a second SIGTERM landing while the first handler holds it deadlocked the master
  for good (the worker then blocked in ``is_set()`` and the agents outlived the graceful
  timeout).
- **Compression.** ``Handshake.accept()`` (``ws_stream.py``) always offers and accepts
  ``PerMessageDeflate()``: ~90 KB of zlib state per open websocket. ``ISSUER_WS_COMPRESSION``
  picks what the name ``PerMessageDeflate`` there means: ``off`` (the default: an extension
  that declines every offer, so the ``101`` carries no ``Sec-WebSocket-Extensions``),
  ``no-context-takeover`` (compress each message on its own, nothing kept between messages),
  or ``on`` (hypercorn's behaviour).
- **A listening socket per worker.** With ``workers > 1`` the master binds one socket and every
  worker listens and accepts on that same socket (``asyncio/run.py`` ``worker_serve``:
  ``start_server(sock=...)``), so whichever worker wakes first takes every pending connection:
  at 64 keep-alive connections one worker often served them all. Each worker now binds and
  listens on a socket of its own (``SO_REUSEPORT``, which hypercorn already sets on the
  master's socket when it has several workers) and the kernel spreads new connections across
  them by their addresses; the master's socket stays bound (the port is held) but never
  listens. ``ISSUER_REUSE_PORT=false`` restores hypercorn's behaviour. On Linux a connection
  still queued on a worker that stops is reset, so stop workers after draining them (the
  orchestrator's ``preStop``).
- **A request that met the keep-alive timer.** ``TCPServer._idle_timeout`` (``asyncio/
  tcp_server.py``) closes a kept-alive connection ``keep_alive_timeout`` after its last answer
  without looking whether a next request has arrived meanwhile; uvloop runs due timers before
  it reads sockets, so a busy worker closed connections that already carried a request, and a
  ``POST`` lost that way is never resent by the client (RFC 9112 §9.3.1.1; 1–4 of 500 in a
  burst). The timer now leaves a connection with unread bytes (in the stream's buffer or the
  socket's, ``FIONREAD``) to be read; its next idle spell starts the timer again.
- **Close frames on bad input.** For a malformed frame wsproto yields a ``CloseConnection``
  (1002, or 1007 for invalid UTF-8) while its state is still OPEN, and hypercorn then drops the
  TCP connection without a close frame (``ws_stream.py`` answers a close only in
  REMOTE_CLOSING). The connection class marks such a close as the peer's, so hypercorn sends
  the close frame with wsproto's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
import termios
import weakref
from collections.abc import Callable, Generator
from typing import Any

from quart import Quart
from wsproto.connection import Connection, ConnectionState
from wsproto.events import CloseConnection, Event
from wsproto.extensions import PerMessageDeflate

from issuer.lib.versions import require_tested

log = logging.getLogger(__name__)
TESTED = {"hypercorn": ("0.18.",), "wsproto": ("1.2.", "1.3.")}
MARK = "_issuer_adapted"
_apps: weakref.WeakSet[Quart] = weakref.WeakSet()


def check_versions() -> None:
    """Refuse versions of the patched packages these adapters were not tested with."""
    require_tested(TESTED, "issuer/web/server.py")


class ClosingConnection(Connection):
    """A wsproto connection that answers a protocol error with a close frame."""

    def events(self) -> Generator[Event, None, None]:
        for event in super().events():
            if isinstance(event, CloseConnection) and self.state is ConnectionState.OPEN:
                self._state = ConnectionState.REMOTE_CLOSING  # reply with the close, then end
            yield event


def request_waiting(server: Any) -> bool:
    """Whether bytes a connection's protocol has not read yet wait: in its ``StreamReader``'s
    buffer (asyncio's private ``_buffer``) or in the kernel's socket buffer."""
    if getattr(server.reader, "_buffer", None):
        return True
    sock = server.writer.get_extra_info("socket")
    try:
        waiting = fcntl.ioctl(sock.fileno(), termios.FIONREAD, bytes(4))
    except (AttributeError, OSError, ValueError):
        return False
    return int.from_bytes(waiting, sys.byteorder) > 0


async def _idle_timeout(self: Any) -> None:
    """``TCPServer._idle_timeout``, which closes an idle kept-alive connection, unless a
    request came as the time ran out."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(self.context.terminated.wait(), self.config.keep_alive_timeout)
    if not self.context.terminated.is_set() and request_waiting(self):
        return  # read it; once the connection is idle again hypercorn restarts the timer
    await asyncio.shield(self._initiate_server_close())


def notify_shutdown(app: Quart) -> None:
    """Set ``app.shutdown_event`` in this worker as soon as hypercorn starts shutting it down
    (Quart sets it only once the graceful wait is over)."""
    _apps.add(app)


def _shutdown_started() -> None:
    log.info("shutdown started: closing websockets")
    for app in list(_apps):
        event = getattr(app, "shutdown_event", None)  # made when the app starts serving
        if event is not None:
            event.set()


class DeclinedDeflate(PerMessageDeflate):
    """permessage-deflate that is never agreed to (``ISSUER_WS_COMPRESSION=off``)."""

    def accept(self, offer: str) -> bool:
        return False


class MessageDeflate(PerMessageDeflate):
    """permessage-deflate without context takeover either way (RFC 7692 §7.1.1): each message
    is compressed alone, so no zlib state lives between messages."""

    def __init__(self) -> None:
        super().__init__(client_no_context_takeover=True, server_no_context_takeover=True)


COMPRESSION: dict[str, type[PerMessageDeflate]] = {
    "off": DeclinedDeflate,
    "no-context-takeover": MessageDeflate,
    "on": PerMessageDeflate,
}


def own_listening_socket(shared: socket.socket) -> socket.socket:
    """A new TCP socket bound to ``shared``'s address with ``SO_REUSEPORT``, not listening
    yet (asyncio's ``start_server`` listens with hypercorn's backlog)."""
    mine = socket.socket(shared.family, socket.SOCK_STREAM)
    try:
        mine.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        mine.bind(shared.getsockname())
        mine.setblocking(False)
    except OSError:
        mine.close()
        raise
    return mine


def worker_sockets(sockets: Any) -> Any:
    """hypercorn's ``Sockets`` with each plain TCP socket shared through ``SO_REUSEPORT``
    replaced by one of this worker's own (TLS, QUIC and Unix sockets stay shared)."""
    from hypercorn.config import Sockets

    def mine(sock: socket.socket) -> socket.socket:
        tcp = sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
        if tcp and sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT):
            return own_listening_socket(sock)
        return sock

    insecure = [mine(sock) for sock in sockets.insecure_sockets]
    return Sockets(sockets.secure_sockets, insecure, sockets.quic_sockets)


def install(compression: str = "off", *, reuse_port: bool = True) -> None:
    """Apply the adapters (idempotent); ``compression`` as ``ISSUER_WS_COMPRESSION``,
    ``reuse_port`` as ``ISSUER_REUSE_PORT``."""
    check_versions()
    import hypercorn.asyncio.run as run
    import hypercorn.asyncio.tcp_server as tcp_server
    import hypercorn.protocol.ws_stream as ws_stream
    from hypercorn.protocol.events import StreamClosed

    # The name ``uvloop_worker``/``asyncio_worker`` call once the app is loaded (in a worker
    # the master spawned, which passes the sockets it bound).
    serve = getattr(run, "worker_serve")  # noqa: B009
    original = getattr(serve, "__wrapped__", serve)
    if reuse_port and hasattr(socket, "SO_REUSEPORT"):

        async def worker_serve(*args: Any, sockets: Any = None, **kwargs: Any) -> Any:
            if sockets is not None:
                sockets = worker_sockets(sockets)
            return await original(*args, sockets=sockets, **kwargs)

        setattr(worker_serve, "__wrapped__", original)  # noqa: B010
        setattr(run, "worker_serve", worker_serve)  # noqa: B010
    else:
        setattr(run, "worker_serve", original)  # noqa: B010

    # The name ``Handshake.accept()`` instantiates for every websocket.
    setattr(ws_stream, "PerMessageDeflate", COMPRESSION[compression])  # noqa: B010

    # The name ``Handshake.accept()`` instantiates.
    setattr(ws_stream, "Connection", ClosingConnection)  # noqa: B010
    trigger = getattr(run, "check_multiprocess_shutdown_event")  # noqa: B009
    if not getattr(trigger, MARK, False):

        async def notifying_trigger(*args: Any, **kwargs: Any) -> None:
            await trigger(*args, **kwargs)  # returns when the master set the shutdown event
            _shutdown_started()

        setattr(notifying_trigger, MARK, True)
        setattr(run, "check_multiprocess_shutdown_event", notifying_trigger)  # noqa: B010

    # The method every kept-alive connection's idle timer runs.
    setattr(tcp_server.TCPServer, "_idle_timeout", _idle_timeout)  # noqa: B010

    stream = ws_stream.WSStream
    if not getattr(stream, MARK, False):
        send_pings, handle = stream._send_pings, stream.handle

        async def _send_pings(self: Any) -> None:
            self._issuer_ping_task = asyncio.current_task()
            await send_pings(self)

        async def _handle(self: Any, event: Any) -> None:
            await handle(self, event)
            task = getattr(self, "_issuer_ping_task", None)
            if isinstance(event, StreamClosed) and task not in (None, asyncio.current_task()):
                task.cancel()

        stream._send_pings, stream.handle = _send_pings, _handle  # type: ignore[method-assign]
        setattr(stream, MARK, True)


def in_hypercorn_worker() -> bool:
    """Whether this process is a worker hypercorn's master spawned."""
    me = multiprocessing.current_process()
    parent = multiprocessing.parent_process()
    target = getattr(me, "_target", None)
    return (
        parent is not None
        and getattr(me, "_kwargs", {}).get("shutdown_event") is not None
        and getattr(target, "__module__", "").startswith("hypercorn.")
    )


async def freeze_startup_heap() -> None:
    """In a hypercorn worker, once started (``before_serving``, last): move every object made
    so far (modules, the ORM's mappers, schemas, templates) out of the garbage collector's
    reach (``gc.freeze()``, Python 3.7+). They live as long as the worker anyway; otherwise
    each full collection walks all of them, a pause that lands in the p99 of whatever request
    is waiting. Not in tests, which build many apps in one process."""
    if in_hypercorn_worker():
        gc.collect()
        gc.freeze()


async def tie_worker_to_master() -> None:
    """In a hypercorn worker (``before_serving``): SIGTERM here stops every worker gracefully
    (through the master; setting the shutdown event ourselves would make the master start a
    new worker), and a master that died (SIGKILL) shuts this worker down instead of leaving it
    serving. A no-op outside hypercorn's spawned workers (``workers = 0`` handles signals
    itself). Reads multiprocessing's private ``_target``/``_kwargs``: if they change, nothing
    is tied, and the local agents still die with the worker (``issuer.lib.processes``)."""
    parent = multiprocessing.parent_process()
    if not in_hypercorn_worker() or parent is None or parent.pid is None:
        return
    event = multiprocessing.current_process()._kwargs["shutdown_event"]  # type: ignore[attr-defined]
    loop = asyncio.get_running_loop()

    def alone() -> None:
        loop.remove_reader(parent.sentinel)
        if not event.is_set():
            log.warning("the hypercorn master is gone; shutting this worker down")
            event.set()  # hypercorn's own graceful path; nobody is left to start a new one

    loop.add_signal_handler(signal.SIGTERM, sigterm_forwarder(parent, event, alone))
    loop.add_reader(parent.sentinel, alone)  # readable (EOF) once the master has exited


# How long a worker that got SIGTERM waits for its master to start the shutdown on its own
# (the signal went to the whole process group) before passing the signal on.
FORWARD_AFTER = 1.0


def sigterm_forwarder(
    master: Any, shutdown_event: Any, alone: Callable[[], None], *, after: float = FORWARD_AFTER
) -> Callable[[], None]:
    """The worker's SIGTERM handler (run on its event loop): if ``master`` (a
    ``multiprocessing`` process handle) is gone, ``alone()``; otherwise, ``after`` seconds
    later, SIGTERM to the master unless ``shutdown_event`` is set by then — the master was
    signalled too and is shutting down, and a second SIGTERM could land inside its handler
    (see the module's notes: that deadlocks hypercorn's master)."""

    pending: list[asyncio.TimerHandle] = []

    def forward() -> None:
        if master.is_alive() and not shutdown_event.is_set():
            os.kill(master.pid, signal.SIGTERM)

    def on_sigterm() -> None:
        if not master.is_alive():
            alone()
        elif not pending:  # one forward at most: two could deadlock the master just the same
            pending.append(asyncio.get_running_loop().call_later(after, forward))

    return on_sigterm
