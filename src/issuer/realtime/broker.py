"""The realtime broker: topics, and one bounded queue per listener.

Everything pushed to a websocket goes through here: the issuance portal's session snapshots
(topic ``issuance:<session id>``) and the Pusher channels (``pusher:<channel>``).

- :class:`Broker` fans out inside one process (SQLite: one worker).
- :class:`PostgresBroker` sends every message with ``pg_notify`` (inside the transaction that
  caused it, or on its own) and LISTENs on a dedicated asyncpg connection, so a message
  published by any worker or host reaches every listener. NOTIFY payloads are limited to 8000
  bytes: a bigger message is stored in ``realtime_payloads`` and the notification carries its
  id. A lost LISTEN connection is re-opened with backoff, and the ``on_reconnect`` hooks replay
  what listeners may have missed (notifications sent meanwhile are gone).

A listener's queue is bounded: a message that finds it full marks the listener
:attr:`~Listener.overflowed` (counted in ``issuer_realtime_dropped_total``) and the websocket
behind it is closed with a clear code, so a slow client never blocks the others nor grows
memory without bound.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from typing import Any

import asyncpg
from prometheus_client import Counter
from sqlalchemy import ColumnElement, Text, cast, delete, func, insert, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from issuer.clock import Clock
from issuer.db import Database, after_commit
from issuer.realtime.models import RealtimePayload

log = logging.getLogger(__name__)
CHANNEL = "issuer_realtime"
# How the LISTEN connection names itself in pg_stat_activity.
LISTENER_NAME = "issuer listen"
# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; leave room for the envelope.
NOTIFY_LIMIT = 7900
Message = dict[str, Any]
Replay = Callable[[list[str]], Awaitable[list[tuple[str, Message]]]]
DROPPED = Counter(
    "issuer_realtime_dropped_total", "Listeners dropped because their queue was full", ["kind"]
)


class Overflowed(Exception):
    """The listener fell too far behind; its messages are no longer delivered."""


class Listener:
    """One subscriber (a websocket) and its bounded queue. ``kind`` labels the metric.

    Waiting costs one future per empty queue, not a task per message (this is the hot path
    of every push)."""

    def __init__(self, maxsize: int, kind: str = "listener") -> None:
        self.maxsize = maxsize
        self.overflowed = asyncio.Event()
        self.kind = kind
        self._messages: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, message: Message) -> None:
        if self.overflowed.is_set():
            return
        if len(self._messages) >= self.maxsize:
            self.overflowed.set()
            DROPPED.labels(self.kind).inc()
        else:
            self._messages.append(message)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Message:
        """The next message; raises :class:`Overflowed` once the queue overflowed."""
        while True:
            if self.overflowed.is_set():
                raise Overflowed
            if self._messages:
                return self._messages.popleft()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


class Broker:
    """In-process fan-out."""

    # Whether a statement can publish itself, with :func:`notification` among its columns
    # (PostgreSQL); otherwise the caller delivers with :meth:`deliver` once it committed.
    notifies_in_sql = False

    def __init__(self, queue_size: int = 256) -> None:
        self.queue_size = queue_size
        self._topics: dict[str, set[Listener]] = defaultdict(set)
        self._replays: list[Replay] = []

    # --- listening ---------------------------------------------------------------------------

    def listener(self, kind: str = "listener") -> Listener:
        return Listener(self.queue_size, kind)

    def add(self, topic: str, listener: Listener) -> None:
        self._topics[topic].add(listener)

    def remove(self, topic: str, listener: Listener) -> None:
        listeners = self._topics.get(topic)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del self._topics[topic]

    @asynccontextmanager
    async def subscribe(self, topic: str, kind: str = "listener") -> AsyncIterator[Listener]:
        """A listener of ``topic`` for the duration of the block."""
        listener = self.listener(kind)
        self.add(topic, listener)
        try:
            yield listener
        finally:
            self.remove(topic, listener)

    def listener_count(self, topic: str) -> int:
        return len(self._topics.get(topic, ()))

    @property
    def topics(self) -> list[str]:
        return list(self._topics)

    def watch(
        self, channel: str, on_payload: Callable[[str], None], on_state: Callable[[bool], None]
    ) -> None:
        """Hear ``channel``'s notifications (``on_payload``) while the cross-worker connection
        is up; ``on_state(True)`` once listening, ``on_state(False)`` when the connection is
        lost. One process has no such connection: never called."""

    def on_reconnect(self, replay: Replay) -> None:
        """``replay(topics)``: what to deliver again after a lost cross-worker connection, as
        ``(topic, message)`` pairs, for the topics listened to now."""
        self._replays.append(replay)

    # --- publishing --------------------------------------------------------------------------

    def deliver(self, topic: str, message: Message) -> None:
        """To this process's listeners of ``topic``, now."""
        for listener in tuple(self._topics.get(topic, ())):
            listener.offer(message)

    async def stage(self, session: AsyncSession, topic: str, message: Message) -> None:
        """Inside the transaction that caused ``message``: delivered once it commits."""
        after_commit(session, lambda: self.deliver(topic, message))

    async def publish(self, topic: str, message: Message) -> None:
        """Outside any transaction: delivered now, to every worker's listeners."""
        self.deliver(topic, message)

    async def run(self, stopping: asyncio.Event) -> None:
        """Nothing to listen to in one process."""

    async def purge(self) -> int:
        return 0


class PostgresBroker(Broker):
    """Cross-worker fan-out through PostgreSQL ``LISTEN/NOTIFY``."""

    notifies_in_sql = True

    def __init__(
        self,
        dsn: str,
        db: Database,
        clock: Clock,
        *,
        queue_size: int = 256,
        max_backoff: float = 5.0,
    ) -> None:
        super().__init__(queue_size)
        self._dsn = dsn
        self._db = db
        self._clock = clock
        self._max_backoff = max_backoff
        self._lost = asyncio.Event()
        # Notifications in the order PostgreSQL sent them; one consumer delivers them in that
        # order (a message by reference is read before the ones after it).
        self._incoming: asyncio.Queue[str] = asyncio.Queue()
        self._watchers: list[tuple[str, Callable[[str], None], Callable[[bool], None]]] = []

    def watch(
        self, channel: str, on_payload: Callable[[str], None], on_state: Callable[[bool], None]
    ) -> None:
        self._watchers.append((channel, on_payload, on_state))

    def _terminated(self, _conn: Any) -> None:
        self._watching(False)
        self._lost.set()

    def _watching(self, up: bool) -> None:
        for _channel, _on_payload, on_state in self._watchers:
            on_state(up)

    async def stage(self, session: AsyncSession, topic: str, message: Message) -> None:
        # Delivered by PostgreSQL on commit, to every listener in every worker (this one too).
        payload = json.dumps({"t": topic, "m": message}, separators=(",", ":"))
        if len(payload.encode()) > NOTIFY_LIMIT:
            ref = await session.scalar(
                insert(RealtimePayload)
                .values(payload=payload, created_at=self._clock.now())
                .returning(RealtimePayload.id)
            )
            payload = json.dumps({"ref": ref})
        await session.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload}
        )

    async def publish(self, topic: str, message: Message) -> None:
        # Autocommit: the notification is one round trip, not BEGIN, NOTIFY and COMMIT (a
        # message by reference is stored, and committed, before its notification).
        async with self._db.statement() as session:
            await self.stage(session, topic, message)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._incoming.put_nowait(payload)

    async def _consume(self) -> None:
        """Deliver notifications one after the other, in the order they came."""
        while True:
            payload = await self._incoming.get()
            try:
                found = json.loads(payload)
                if "ref" in found:
                    await self._fetch(int(found["ref"]))
                else:
                    self.deliver(str(found["t"]), found["m"])
            except (ValueError, KeyError, TypeError):
                log.warning("ignored a malformed notification on %s", CHANNEL)

    async def _fetch(self, ref: int) -> None:
        """A message too big for NOTIFY: read it from ``realtime_payloads``."""
        try:
            async with self._db.session() as session:
                payload = await session.scalar(
                    select(RealtimePayload.payload).where(RealtimePayload.id == ref)
                )
        except Exception:
            log.exception("realtime payload %s could not be read", ref)
            return
        if payload is None:
            log.warning("realtime payload %s is gone", ref)
            return
        found = json.loads(payload)
        self.deliver(str(found["t"]), found["m"])

    async def purge(self, older_than: timedelta = timedelta(hours=1)) -> int:
        """Forget stored payloads every listener has had time to read."""
        async with self._db.transaction() as session:
            result = await session.execute(
                delete(RealtimePayload).where(
                    RealtimePayload.created_at < self._clock.now() - older_than
                )
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def _watch(self, conn: asyncpg.Connection, stopping: asyncio.Event) -> None:
        """Return when the connection is lost (a silent network drop is caught by a ping) or
        when the worker stops."""
        while not stopping.is_set():
            lost = asyncio.ensure_future(self._lost.wait())
            stop = asyncio.ensure_future(stopping.wait())
            # A watcher trusts what it has not heard: a silent drop must be found within a
            # second or two, not fifteen.
            every, within = (1.0, 1.0) if self._watchers else (15.0, 5.0)
            done, _ = await asyncio.wait({lost, stop}, timeout=every, return_when="FIRST_COMPLETED")
            lost.cancel()
            stop.cancel()
            if done:
                return
            try:
                await conn.fetchval("SELECT 1", timeout=within)
            except Exception:
                return

    async def _replay(self) -> None:
        topics = self.topics
        for replay in self._replays:
            try:
                for topic, message in await replay(topics):
                    self.deliver(topic, message)
            except Exception:
                log.exception("replay after reconnect failed")

    async def run(self, stopping: asyncio.Event) -> None:
        """LISTEN until ``stopping``, reconnecting with backoff. Started without waiting for
        the database (readiness reports it down); every (re)connect replays what the
        listeners may have missed meanwhile."""
        consumer = asyncio.create_task(self._consume())
        try:
            await self._listen(stopping)
        finally:
            consumer.cancel()

    async def _listen(self, stopping: asyncio.Event) -> None:
        backoff = 0.1
        while not stopping.is_set():
            try:
                conn = await asyncpg.connect(
                    self._dsn, timeout=10, server_settings={"application_name": LISTENER_NAME}
                )
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("LISTEN connection failed (%s); retrying in %.1fs", exc, backoff)
                with suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            try:
                self._lost.clear()
                conn.add_termination_listener(self._terminated)
                await conn.add_listener(CHANNEL, self._on_notify)
                for channel, on_payload, _on_state in self._watchers:
                    await conn.add_listener(channel, _payload_only(on_payload))
                self._watching(True)
                backoff = 0.1
                await self._replay()
                await self._watch(conn, stopping)
                if not stopping.is_set():
                    log.warning("LISTEN connection lost; reconnecting")
            finally:
                self._watching(False)
                with suppress(Exception):
                    await conn.close(timeout=2)


def notification(topic: ColumnElement[str], message: ColumnElement[Any]) -> ColumnElement[Any]:
    """``pg_notify`` of ``message`` (a JSON expression) to ``topic``'s listeners in every
    worker, as a column of a statement that publishes what it changed: sent when that statement
    commits, in the envelope :class:`PostgresBroker` reads. The message must stay well under
    NOTIFY's 8000 bytes (there is no fallback to ``realtime_payloads`` here)."""
    envelope = func.json_build_object(literal_column("'t'"), topic, literal_column("'m'"), message)
    return func.pg_notify(literal_column(f"'{CHANNEL}'"), cast(envelope, Text))


def _payload_only(on_payload: Callable[[str], None]) -> Callable[[Any, int, str, str], None]:
    """asyncpg's listener signature ``(connection, pid, channel, payload)``."""

    def listener(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        on_payload(payload)

    return listener
