"""Fan-out of session snapshots to the websockets that listen for them.

One queue per listener, as in Quart's chat-broker example. ``LocalBroker`` fans out inside one
process (SQLite: one worker). ``PostgresBroker`` sends every snapshot with ``pg_notify`` inside
the transaction that changed the row, and LISTENs on a dedicated asyncpg connection, so a
webhook handled by one worker or host reaches a websocket held by any other. If that connection
drops, it reconnects with backoff and replays the stored state of every watched session, so no
change is lost while it was away.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger(__name__)

CHANNEL = "issuance_state"
Snapshot = dict[str, Any]


class LocalBroker:
    """In-process fan-out: ``publish`` after commit reaches every local listener."""

    def __init__(self) -> None:
        self._listeners: dict[str, set[asyncio.Queue[Snapshot]]] = defaultdict(set)

    @asynccontextmanager
    async def subscribe(self, session_id: str) -> AsyncIterator[asyncio.Queue[Snapshot]]:
        queue: asyncio.Queue[Snapshot] = asyncio.Queue()
        self._listeners[session_id].add(queue)
        try:
            yield queue
        finally:
            listeners = self._listeners.get(session_id)
            if listeners is not None:
                listeners.discard(queue)
                if not listeners:
                    del self._listeners[session_id]

    def listener_count(self, session_id: str) -> int:
        return len(self._listeners.get(session_id, ()))

    @property
    def watched(self) -> list[str]:
        return list(self._listeners)

    def deliver(self, snapshot: Snapshot) -> None:
        for queue in self._listeners.get(snapshot["id"], ()):
            queue.put_nowait(snapshot)

    async def stage(self, session: AsyncSession, snapshot: Snapshot) -> None:
        """Called inside the transaction that produced ``snapshot``."""

    def committed(self, snapshot: Snapshot) -> None:
        """Called after that transaction committed."""
        self.deliver(snapshot)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class PostgresBroker(LocalBroker):
    """Cross-worker fan-out through PostgreSQL ``LISTEN/NOTIFY``."""

    def __init__(
        self, dsn: str, resync: Callable[[list[str]], Awaitable[None]], *, max_backoff: float = 5.0
    ) -> None:
        super().__init__()
        self._dsn = dsn
        self._resync = resync
        self._max_backoff = max_backoff
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()

    async def stage(self, session: AsyncSession, snapshot: Snapshot) -> None:
        # Delivered by PostgreSQL on commit, to every listener in every worker (this one too).
        await session.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": CHANNEL, "payload": json.dumps(snapshot, separators=(",", ":"))},
        )

    def committed(self, snapshot: Snapshot) -> None:
        return None

    async def start(self) -> None:
        # Not awaited: startup must not hang on a database that is down (readiness reports it);
        # every (re)connect replays the stored state of the sessions watched meanwhile.
        self._task = asyncio.create_task(self._listen_forever(), name="pg-listen")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            self.deliver(json.loads(payload))
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed notification on %s", CHANNEL)

    async def _watch(self, conn: asyncpg.Connection) -> None:
        """Return when the connection is lost; a silent network drop is caught by a ping."""
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), timeout=15)
                return
            try:
                await conn.fetchval("SELECT 1", timeout=5)
            except Exception:
                return

    async def _listen_forever(self) -> None:
        backoff = 0.1
        while True:
            try:
                conn = await asyncpg.connect(self._dsn, timeout=10)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("LISTEN connection failed (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            try:
                self._lost.clear()
                conn.add_termination_listener(lambda _c: self._lost.set())
                await conn.add_listener(CHANNEL, self._on_notify)
                backoff = 0.1
                # Notifications sent while we were away are gone: replay stored state.
                await self._resync(self.watched)
                await self._watch(conn)
                log.warning("LISTEN connection lost; reconnecting")
            finally:
                with suppress(Exception):
                    await conn.close(timeout=2)
