"""The Pusher side of the realtime broker: connections, channel subscriptions, presence
members, client events, publishing, and the replay of missed entity events.

A connection has one bounded :class:`~issuer.realtime.broker.Listener`, added to the broker
topic ``pusher:<channel>`` of every channel it subscribes to; a published event is one
serialised frame, shared by every listener. Who is subscribed where is also written to
``channel_subscriptions`` (refreshed by each worker while it runs), so presence member lists and
the Events API's channel list are the same in every worker and host.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, update

from issuer.accounts import queries as accounts
from issuer.clock import Clock
from issuer.db import Database
from issuer.outbox import queries as outbox_queries
from issuer.outbox.models import OutboxMessage
from issuer.realtime import protocol
from issuer.realtime.broker import Broker, Listener
from issuer.realtime.entities import ENTITY_EVENTS, as_pusher_event, owner_of
from issuer.realtime.models import ChannelSubscription
from issuer.realtime.protocol import PusherApp, frame, kind_of

log = logging.getLogger(__name__)
HEARTBEAT = 30.0  # seconds between a worker's refreshes of its subscription rows
STALE = timedelta(seconds=3 * HEARTBEAT)  # rows older than this belong to a dead worker
MAX_CHANNELS = 100  # per connection


class Refusal(Exception):
    """A client request the protocol answers with an error (``frame`` is what to send)."""

    def __init__(self, frame_text: str) -> None:
        super().__init__(frame_text)
        self.frame = frame_text


class OverCapacity(Exception):
    """This worker holds its maximum of connections."""


@dataclass
class Bucket:
    """A token bucket: ``rate`` per second, bursts of up to ``rate``."""

    rate: float
    tokens: float = 0.0
    at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.rate

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class Connection:
    socket_id: str
    listener: Listener
    bucket: Bucket
    # channel -> the presence member (user_id) this connection is, or None
    channels: dict[str, str | None] = field(default_factory=dict)
    closed: bool = False


class Hub:
    def __init__(
        self,
        db: Database,
        broker: Broker,
        clock: Clock,
        app: PusherApp,
        *,
        max_connections: int,
        client_event_rate: float,
        replay_window: int,
        replay_max: int,
    ) -> None:
        self.db = db
        self.broker = broker
        self.clock = clock
        self.app = app
        self.max_connections = max_connections
        self.client_event_rate = client_event_rate
        self.replay_window = timedelta(seconds=replay_window)
        # A replay goes through the connection's own queue: it must fit with room to spare.
        self.replay_max = max(1, min(replay_max, broker.queue_size // 2))
        self.worker = secrets.token_hex(8)
        self.connections: dict[str, Connection] = {}

    # --- connections ------------------------------------------------------------------------

    def connect(self) -> Connection:
        """A new connection and its ``socket_id``; :class:`OverCapacity` past the limit."""
        if len(self.connections) >= self.max_connections:
            raise OverCapacity
        socket_id = f"{secrets.randbelow(10**9) + 1}.{secrets.randbelow(10**9) + 1}"
        connection = Connection(
            socket_id, self.broker.listener("pusher"), Bucket(self.client_event_rate)
        )
        self.connections[socket_id] = connection
        return connection

    async def disconnect(self, connection: Connection) -> None:
        """Forget the connection: its listeners at once, then its rows (one statement), then
        tell presence channels it left."""
        connection.closed = True
        self.connections.pop(connection.socket_id, None)
        channels = dict(connection.channels)
        connection.channels.clear()
        for channel in channels:
            self.broker.remove(topic(channel), connection.listener)
        try:
            async with self.db.transaction() as session:
                await session.execute(
                    delete(ChannelSubscription).where(
                        ChannelSubscription.socket_id == connection.socket_id
                    )
                )
            for channel, user_id in channels.items():
                if user_id is not None and not await self._is_member(channel, user_id):
                    text = frame("pusher_internal:member_removed", {"user_id": user_id}, channel)
                    await self.broker.publish(topic(channel), {"frame": text, "except": None})
        except Exception:  # the rows go stale and the heartbeat forgets them
            log.warning("could not forget connection %s", connection.socket_id, exc_info=True)

    # --- subscriptions ----------------------------------------------------------------------

    async def subscribe(
        self, connection: Connection, channel: str, auth: str, channel_data: str | None
    ) -> str:
        """Subscribe after checking the channel's signature; the
        ``pusher_internal:subscription_succeeded`` frame. Raises :class:`Refusal`."""
        if not protocol.CHANNEL_NAME.fullmatch(channel):
            raise Refusal(subscription_error(channel, "Invalid channel name", 400))
        kind = kind_of(channel)
        if kind == "encrypted":
            raise Refusal(subscription_error(channel, "Encrypted channels are not supported", 400))
        member: tuple[str, Any] | None = None
        if kind in ("private", "presence"):
            data = channel_data if kind == "presence" else None
            if not self.app.auth_valid(connection.socket_id, channel, auth or "", data):
                log.info("subscription refused: bad signature channel=%s", channel)
                raise Refusal(subscription_error(channel, "Invalid signature", 401))
        if kind == "presence":
            member = presence_member(channel_data)
            if member is None:
                raise Refusal(subscription_error(channel, "Invalid channel_data", 400))
        if channel in connection.channels:  # subscribing twice: already there
            return await self._succeeded(channel, kind)
        if len(connection.channels) >= MAX_CHANNELS:
            raise Refusal(subscription_error(channel, "Too many channels on one connection", 400))
        user_id = member[0] if member else None
        # Whether the user is there already, asked before this row is stored and again after
        # (the leaving side deletes, then asks). Silent only if both say so: of two sockets
        # joining at once, one saw nobody before; of one joining while another leaves, the
        # joiner's second look or the leaver's look sees the other, so a member_removed is
        # always followed by a member_added. At worst a member_added repeats (pusher-js keeps
        # one entry per user).
        there_before = user_id is not None and await self._is_member(channel, user_id)
        async with self.db.transaction() as session:
            await session.merge(
                ChannelSubscription(
                    socket_id=connection.socket_id, channel=channel, worker=self.worker,
                    user_id=user_id, user_info=member[1] if member else None,
                    seen_at=self.clock.now(),
                )
            )  # fmt: skip
        if connection.closed:  # it went away meanwhile: undo
            await self.disconnect(connection)
            raise Refusal(subscription_error(channel, "Connection closed", 400))
        connection.channels[channel] = user_id
        self.broker.add(topic(channel), connection.listener)
        if member is not None and not (
            there_before and await self._is_member(channel, member[0], connection)
        ):
            text = frame(
                "pusher_internal:member_added", {"user_id": member[0], "user_info": member[1]},
                channel,
            )  # fmt: skip
            await self.broker.publish(
                topic(channel), {"frame": text, "except": connection.socket_id}
            )
        return await self._succeeded(channel, kind)

    async def _succeeded(self, channel: str, kind: str) -> str:
        data: dict[str, Any] = {}
        if kind == "presence":
            members = await self.members(channel)
            data = {"presence": {
                "ids": [m for m, _ in members], "hash": dict(members), "count": len(members),
            }}  # fmt: skip
        return frame("pusher_internal:subscription_succeeded", data, channel)

    async def unsubscribe(self, connection: Connection, channel: str) -> None:
        if channel not in connection.channels:
            return
        user_id = connection.channels.pop(channel)
        self.broker.remove(topic(channel), connection.listener)
        async with self.db.transaction() as session:
            await session.execute(
                delete(ChannelSubscription).where(
                    ChannelSubscription.socket_id == connection.socket_id,
                    ChannelSubscription.channel == channel,
                )
            )
        if user_id is not None and not await self._is_member(channel, user_id):
            text = frame("pusher_internal:member_removed", {"user_id": user_id}, channel)
            await self.broker.publish(topic(channel), {"frame": text, "except": None})

    async def _is_member(
        self, channel: str, user_id: str, besides: Connection | None = None
    ) -> bool:
        """Whether ``user_id`` has a live subscription to ``channel`` (on a connection other
        than ``besides``), in any worker."""
        query = select(ChannelSubscription.socket_id).where(
            ChannelSubscription.channel == channel,
            ChannelSubscription.user_id == user_id,
            ChannelSubscription.seen_at > self.clock.now() - STALE,
        )
        if besides is not None:
            query = query.where(ChannelSubscription.socket_id != besides.socket_id)
        async with self.db.session() as session:
            found = await session.scalar(query.limit(1))
        return found is not None

    async def members(self, channel: str) -> list[tuple[str, Any]]:
        """A presence channel's members, ``(user_id, user_info)``, once each, in every worker."""
        async with self.db.session() as session:
            rows = await session.execute(
                select(ChannelSubscription.user_id, ChannelSubscription.user_info)
                .where(
                    ChannelSubscription.channel == channel,
                    ChannelSubscription.user_id.is_not(None),
                    ChannelSubscription.seen_at > self.clock.now() - STALE,
                )
                .order_by(ChannelSubscription.seen_at)
            )
            found: dict[str, Any] = {}
            for user_id, info in rows:
                found.setdefault(str(user_id), info)
        return list(found.items())

    async def occupied(self, prefix: str = "") -> dict[str, dict[str, int]]:
        """Channels with at least one subscriber (in any worker): their subscription count and,
        for presence channels, their number of distinct members."""
        async with self.db.session() as session:
            rows = await session.execute(
                select(
                    ChannelSubscription.channel,
                    func.count(),
                    func.count(func.distinct(ChannelSubscription.user_id)),
                )
                .where(
                    ChannelSubscription.channel.startswith(prefix, autoescape=True),
                    ChannelSubscription.seen_at > self.clock.now() - STALE,
                )
                .group_by(ChannelSubscription.channel)
            )
            return {
                str(channel): {"subscription_count": int(n), "user_count": int(users)}
                for channel, n, users in rows
            }

    # --- events -----------------------------------------------------------------------------

    async def publish(
        self, channels: Iterable[str], event: str, data: str, *, socket_id: str | None = None
    ) -> None:
        """An event on ``channels`` (to everyone but ``socket_id``), in every worker."""
        for channel in channels:
            text = frame(event, data, channel)
            await self.broker.publish(topic(channel), {"frame": text, "except": socket_id})

    async def client_event(
        self, connection: Connection, channel: str, event: str, data: Any
    ) -> None:
        """Relay a ``client-`` event to the channel's other subscribers (private and presence
        channels the connection is in; rate limited). Raises :class:`Refusal`."""
        if not event.startswith("client-") or channel not in connection.channels:
            raise Refusal(error_frame(None, "Client event not allowed on this channel"))
        if kind_of(channel) not in ("private", "presence") or owner_of(channel) is not None:
            raise Refusal(
                error_frame(None, "Client events are for private and presence channels, "
                            "not entity channels")
            )  # fmt: skip
        if not connection.bucket.take():
            raise Refusal(
                error_frame(
                    protocol.CLIENT_EVENT_REJECTED, "Client event rejected due to rate limit"
                )
            )
        extra = {}
        user_id = connection.channels.get(channel)
        if user_id is not None:
            extra["user_id"] = user_id
        text = frame(event, data, channel, **extra)
        await self.broker.publish(topic(channel), {"frame": text, "except": connection.socket_id})

    async def deliver_entity_event(self, message: OutboxMessage) -> None:
        """The outbox's delivery of an entity event: on its user's channel, to every worker."""
        found = as_pusher_event(message)
        if found is not None:
            channel, event, body = found
            await self.publish([channel], event, json.dumps(body, separators=(",", ":")))

    async def replay(self, connection: Connection, channel: str, since: int) -> list[str]:
        """The frames of the entity events the connection's user missed on ``channel``: those
        numbered above ``since``, within the replay window, at most ``replay_max``; then
        ``issuer:replayed`` ``{"through": n, "more": bool}``: the channel has no event numbered
        up to ``n`` left to replay (the next replay starts there; ``more``: this one was cut
        short, ask again now). A client must not start the next one after the highest number
        it saw live instead: the outbox retries a failed delivery after later events went out,
        so a lower number can still be on its way."""
        owner = owner_of(channel)
        if owner is None or channel not in connection.channels:
            raise Refusal(error_frame(None, "Replay is for your entity channels you subscribed to"))
        entity, user_hex = owner
        topics = [t for t, (e, _) in ENTITY_EVENTS.items() if e == entity]
        rows: list[OutboxMessage] = []
        through = since
        async with self.db.session() as session:
            user = await accounts.user_by_entity(session, uuid.UUID(hex=user_hex))
            if user is not None:
                # Read before the events: every number up to it is committed (a user's
                # numbers commit in order), so the events read next include all of them.
                through = max(user.event_seq, since)
                rows = await outbox_queries.user_events_since(
                    session, user.id, since, topics=topics,
                    after=self.clock.now() - self.replay_window, limit=self.replay_max,
                )  # fmt: skip
        more = len(rows) == self.replay_max  # cut short: the rest is for the next replay
        if more and rows[-1].seq is not None:
            through = rows[-1].seq
        frames = []
        for row in rows:
            if (found := as_pusher_event(row)) is not None:
                _, event, body = found
                frames.append(frame(event, body, channel))
        frames.append(frame("issuer:replayed", {"through": through, "more": more}, channel))
        return frames

    async def after_reconnect(self, topics: list[str]) -> list[tuple[str, Any]]:
        """The broker's LISTEN connection was lost (notifications meanwhile are gone): every
        Pusher connection is closed with 4200, so its client reconnects at once and replays."""
        return [(t, {"close": 4200}) for t in topics if t.startswith("pusher:")]

    # --- housekeeping -----------------------------------------------------------------------

    async def heartbeat(self, stopping: asyncio.Event) -> None:
        """Supervised loop: keep this worker's subscription rows fresh, forget stale ones (of
        workers that died without cleaning up)."""
        while not stopping.is_set():
            try:
                now = self.clock.now()
                live = list(self.connections)
                async with self.db.transaction() as session:
                    for start in range(0, len(live), 500):  # this worker's open sockets only
                        await session.execute(
                            update(ChannelSubscription)
                            .where(ChannelSubscription.worker == self.worker)
                            .where(ChannelSubscription.socket_id.in_(live[start : start + 500]))
                            .values(seen_at=now)
                        )
                    await session.execute(
                        delete(ChannelSubscription).where(ChannelSubscription.seen_at < now - STALE)
                    )
            except Exception:
                log.exception("channel subscription heartbeat failed")
            try:
                await asyncio.wait_for(stopping.wait(), HEARTBEAT)
            except TimeoutError:
                continue

    async def close(self) -> None:
        """Forget this worker's subscriptions (a graceful stop)."""
        try:
            async with self.db.transaction() as session:
                await session.execute(
                    delete(ChannelSubscription).where(ChannelSubscription.worker == self.worker)
                )
        except Exception:
            log.warning("could not forget this worker's channel subscriptions", exc_info=True)


def topic(channel: str) -> str:
    return f"pusher:{channel}"


def presence_member(channel_data: str | None) -> tuple[str, Any] | None:
    """``(user_id, user_info)`` of presence ``channel_data`` (a JSON string)."""
    try:
        data = json.loads(channel_data or "")
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("user_id"), str | int):
        return None
    return str(data["user_id"]), data.get("user_info")


def subscription_error(channel: str, message: str, status: int) -> str:
    return frame(
        "pusher:subscription_error", {"type": "AuthError", "error": message, "status": status},
        channel,
    )  # fmt: skip


def error_frame(code: int | None, message: str) -> str:
    return frame("pusher:error", {"code": code, "message": message})
