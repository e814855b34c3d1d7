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

from issuer.db import after_commit

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
        """Called inside the transaction that produced ``snapshot``: deliver it once that
        transaction has committed."""
        after_commit(session, lambda: self.deliver(snapshot))

    async def run(self, stopping: asyncio.Event) -> None:
        """Nothing to listen to in one process."""


class PostgresBroker(LocalBroker):
    """Cross-worker fan-out through PostgreSQL ``LISTEN/NOTIFY``."""

    def __init__(
        self,
        dsn: str,
        load: Callable[[list[str]], Awaitable[list[Snapshot]]],
        *,
        max_backoff: float = 5.0,
    ) -> None:
        """``load``: the stored snapshots of the given sessions (replayed after a lost LISTEN
        connection, whose notifications are gone)."""
        super().__init__()
        self._dsn = dsn
        self._load = load
        self._max_backoff = max_backoff
        self._lost = asyncio.Event()

    async def stage(self, session: AsyncSession, snapshot: Snapshot) -> None:
        # Delivered by PostgreSQL on commit, to every listener in every worker (this one too).
        await session.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": CHANNEL, "payload": json.dumps(snapshot, separators=(",", ":"))},
        )

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            self.deliver(json.loads(payload))
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed notification on %s", CHANNEL)

    async def _watch(self, conn: asyncpg.Connection, stopping: asyncio.Event) -> None:
        """Return when the connection is lost (a silent network drop is caught by a ping) or
        when the worker stops."""
        while not stopping.is_set():
            lost = asyncio.ensure_future(self._lost.wait())
            stop = asyncio.ensure_future(stopping.wait())
            done, _ = await asyncio.wait({lost, stop}, timeout=15, return_when="FIRST_COMPLETED")
            lost.cancel()
            stop.cancel()
            if done:
                return
            try:
                await conn.fetchval("SELECT 1", timeout=5)
            except Exception:
                return

    async def run(self, stopping: asyncio.Event) -> None:
        """LISTEN until ``stopping``, reconnecting with backoff. Started without waiting for
        the database (readiness reports it down); every (re)connect replays the stored state
        of the sessions watched meanwhile."""
        backoff = 0.1
        while not stopping.is_set():
            try:
                conn = await asyncpg.connect(self._dsn, timeout=10)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("LISTEN connection failed (%s); retrying in %.1fs", exc, backoff)
                with suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            try:
                self._lost.clear()
                conn.add_termination_listener(lambda _c: self._lost.set())
                await conn.add_listener(CHANNEL, self._on_notify)
                backoff = 0.1
                # Notifications sent while we were away are gone: replay stored state.
                for snapshot in await self._load(self.watched):
                    self.deliver(snapshot)
                await self._watch(conn, stopping)
                if not stopping.is_set():
                    log.warning("LISTEN connection lost; reconnecting")
            finally:
                with suppress(Exception):
                    await conn.close(timeout=2)
