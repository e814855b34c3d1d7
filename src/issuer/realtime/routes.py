"""The Pusher Channels protocol over our own websockets, for ``pusher-js`` and Pusher's server
libraries: ``GET /app/<key>`` (the websocket), ``POST /pusher/auth`` (channel authorization)
and the HTTP Events API (``POST /apps/<app_id>/events``, ``/batch_events``,
``GET /apps/<app_id>/channels``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import suppress
from datetime import timedelta
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from quart import Blueprint, request, websocket
from quart_rate_limiter import rate_limit
from quart_schema import (
    document_response,
    validate_querystring,
    validate_request,
    validate_response,
)

from issuer.accounts.auth import login_required, principal
from issuer.accounts.limits import ip_key
from issuer.errors import Forbidden, NotFound, Refused
from issuer.issuance.routes import origin_allowed
from issuer.ops.metrics import WEBSOCKETS
from issuer.realtime import protocol
from issuer.realtime.broker import Overflowed
from issuer.realtime.entities import owner_of
from issuer.realtime.hub import Connection, Hub, OverCapacity, Refusal, error_frame
from issuer.realtime.protocol import frame, kind_of
from issuer.schemas import ErrorBody, Input
from issuer.web.bodies import validate_json_or_form
from issuer.web.context import services, settings
from issuer.web.openapi import AUTH_ATTRIBUTE
from issuer.web.sockets import ShuttingDown, until_shutdown

log = logging.getLogger(__name__)
blueprint = Blueprint("realtime", __name__)
ChannelName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_\-=@,.;]+$")]
SocketId = Annotated[str, Field(max_length=41, pattern=r"^\d{1,20}\.\d{1,20}$")]


def hub() -> Hub:
    return services().hub


# --- the websocket -----------------------------------------------------------------------------


async def close_with(code: int, message: str) -> None:
    """Refuse as the protocol does: ``pusher:error`` with the code, then close with it."""
    await websocket.accept()
    await websocket.send(error_frame(code, message))
    await websocket.close(code, message)


@blueprint.websocket("/app/<key>")
async def pusher_socket(key: str) -> None:
    """A Pusher Channels (protocol 7) connection, as ``pusher-js`` opens it:
    ``pusher:connection_established``, then subscribe/unsubscribe, ping/pong, client events,
    and ``issuer:replay`` (``{"since": <event id>}``) for missed entity events, answered by
    those events and ``issuer:replayed`` (``{"through": <event id>}``)."""
    hub_ = hub()
    if key != hub_.app.key:
        await close_with(protocol.APP_DOES_NOT_EXIST, "Application does not exist")
        return
    # A browser's page must be ours (ASVS 4.4.1); a client without Origin is no browser. The
    # socket carries no cookie authority either way: private channels need signatures.
    origin = websocket.headers.get("Origin")
    if origin is not None and not origin_allowed(origin, websocket.headers.get("Host")):
        await close_with(protocol.UNAUTHORIZED, "Origin not allowed")
        return
    try:
        version = int(websocket.args.get("protocol", "0"))
    except ValueError:
        version = 0
    if version < protocol.PROTOCOL:
        await close_with(protocol.UNSUPPORTED_PROTOCOL, "Unsupported protocol version")
        return
    try:
        connection = hub_.connect()
    except OverCapacity:
        await close_with(protocol.OVER_CAPACITY, "Over capacity")
        return
    try:
        await websocket.accept()
        timeout = settings().pusher_activity_timeout
        await websocket.send(
            frame(
                "pusher:connection_established",
                {"socket_id": connection.socket_id, "activity_timeout": timeout},
            )
        )
        with WEBSOCKETS.labels("pusher").track_inprogress(), suppress(ShuttingDown):
            await until_shutdown(_serve(hub_, connection, timeout))
    finally:
        await hub_.disconnect(connection)


async def _serve(hub_: Hub, connection: Connection, activity: int) -> None:
    """Read and write until the client leaves, goes silent, or falls too far behind (its
    listener overflowed: the writer may be stuck in a send to a client that reads nothing, so
    it is watched apart and cancelled)."""
    writer: asyncio.Task[Any] = asyncio.ensure_future(_write(connection))
    reader: asyncio.Task[Any] = asyncio.ensure_future(_read(hub_, connection, activity))
    dropped: asyncio.Task[Any] = asyncio.ensure_future(connection.listener.overflowed.wait())
    try:
        done, _ = await asyncio.wait({writer, reader, dropped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (writer, reader, dropped):
            task.cancel()
    if dropped in done:
        log.info("pusher connection %s dropped: too slow", connection.socket_id)
        await _close(protocol.OVER_CAPACITY, "Too slow: reconnect")
    elif reader in done and not reader.cancelled() and reader.exception() is None:
        await _close(*reader.result())
    for task in done:
        failure = None if task.cancelled() or not task.done() else task.exception()
        if failure is not None:
            raise failure


async def _close(code: int, reason: str) -> None:
    """Close, but do not wait forever on a client that does not read."""
    with suppress(Exception):
        await asyncio.wait_for(websocket.close(code, reason), 10)


async def _write(connection: Connection) -> None:
    """Send what the connection's listener receives (but the sender's own events)."""
    while True:
        try:
            message = await connection.listener.get()
        except Overflowed:
            return
        if "close" in message:  # the broker lost messages: reconnect at once and replay
            await _close(int(message["close"]), "Reconnect")
            return
        if message.get("except") != connection.socket_id:
            await websocket.send(message["frame"])


async def _read(hub_: Hub, connection: Connection, activity: int) -> tuple[int, str]:
    """Handle the client's messages. Silent for ``activity`` seconds, it is pinged; silent 30 s
    more, it is gone (4201). Returns the close code and reason."""
    limit = settings().pusher_max_message_bytes
    pinged = False
    while True:
        try:
            raw = await asyncio.wait_for(websocket.receive(), 30 if pinged else activity)
        except TimeoutError:
            if pinged:
                return protocol.PONG_NOT_RECEIVED, "Pong reply not received"
            pinged = True
            connection.listener.offer({"frame": frame("pusher:ping", {})})
            continue
        pinged = False
        if len(raw) > limit:
            connection.listener.offer(
                {"frame": error_frame(protocol.CLIENT_EVENT_REJECTED, "Message too large")}
            )
            continue
        for text in await handle(hub_, connection, raw):
            connection.listener.offer({"frame": text})


def valid_since(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31


async def handle(hub_: Hub, connection: Connection, raw: str | bytes) -> list[str]:
    """One client message; the frames to send back to this connection only."""
    try:
        message = json.loads(raw)
        event = message["event"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return [error_frame(None, "Malformed message")]
    if not isinstance(message, dict) or not isinstance(event, str):
        return [error_frame(None, "Malformed message")]
    payload = message.get("data")
    data: dict[str, Any] = {}
    if isinstance(payload, str) and event.startswith(("pusher:", "issuer:")):
        with suppress(ValueError, RecursionError):
            payload = json.loads(payload)
    if isinstance(payload, dict):
        data = payload
    try:
        if event == "pusher:ping":
            return [frame("pusher:pong", {})]
        if event == "pusher:pong":
            return []
        if event == "pusher:subscribe":
            channel = str(data.get("channel", ""))
            channel_data = data.get("channel_data")
            succeeded = await hub_.subscribe(
                connection, channel, str(data.get("auth") or ""),
                channel_data if isinstance(channel_data, str) else None,
            )  # fmt: skip
            frames = [succeeded]
            if valid_since(data.get("since")):
                frames += await hub_.replay(connection, channel, data["since"])
            return frames
        if event == "pusher:unsubscribe":
            await hub_.unsubscribe(connection, str(data.get("channel", "")))
            return []
        if event == "issuer:replay":
            since: Any = data.get("since")
            if not valid_since(since):
                return [error_frame(None, 'issuer:replay needs {"since": <event id>}')]
            return await hub_.replay(connection, str(message.get("channel", "")), since)
        if event.startswith("client-"):
            channel = str(message.get("channel", ""))
            await hub_.client_event(connection, channel, event, payload)
            return []
    except Refusal as refusal:
        return [refusal.frame]
    return [error_frame(None, f"Unknown event {event[:50]}")]


# --- channel authorization ---------------------------------------------------------------------


class ChannelAuthIn(Input):
    """What ``pusher-js`` posts (a form) to authorize a private or presence subscription."""

    socket_id: SocketId
    channel_name: ChannelName


class ChannelAuthOut(BaseModel):
    """``auth``: ``<key>:<HMAC-SHA256>``; ``channel_data`` (presence): the member, as JSON."""

    auth: str
    channel_data: str | None = None


@blueprint.post("/pusher/auth")
@rate_limit(120, timedelta(minutes=1), key_function=ip_key)
@login_required
@validate_json_or_form(ChannelAuthIn, ChannelAuthIn)
@validate_response(ChannelAuthOut)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 403)
async def channel_auth(data: ChannelAuthIn) -> ChannelAuthOut:
    """Authorize a subscription (Pusher's channel authorization): your own entity channels
    ``private-<entity>-<your entity_id>``, and presence channels (as yourself). Another user's
    channel, or any other private channel, is 403; a public channel needs none (400)."""
    user = (await principal()).user
    channel = data.channel_name
    kind = kind_of(channel)
    app = hub().app
    if kind == "presence":
        member = json.dumps(
            {"user_id": user.entity_id.hex,
             "user_info": {"name": user.username or user.first_name or "someone"}},
            separators=(",", ":"),
        )  # fmt: skip
        return ChannelAuthOut(
            auth=app.channel_auth(data.socket_id, channel, member), channel_data=member
        )
    if kind != "private":
        raise Refused("Public channels need no authorization.", code="public_channel")
    owner = owner_of(channel)
    if owner is None or owner[1] != user.entity_id.hex:
        log.info("channel authorization refused channel=%s", channel)
        raise Forbidden("This channel is not yours.", code="channel_forbidden")
    return ChannelAuthOut(auth=app.channel_auth(data.socket_id, channel))


# --- the HTTP Events API -----------------------------------------------------------------------


def signed_request(func: Any) -> Any:
    """Documents the Events API's signature (``auth_key``, ``auth_timestamp``,
    ``auth_version``, ``body_md5``, ``auth_signature`` in the query)."""
    setattr(func, AUTH_ATTRIBUTE, "pusher")
    return func


async def check_signature(app_id: str) -> None:
    app = hub().app
    body = await request.get_data(as_text=False)
    if app_id != app.app_id:
        raise NotFound("Unknown app.", code="unknown_app")
    app.check_request(
        request.method, request.path, dict(request.args.items()),
        body if isinstance(body, bytes) else body.encode(),
        services().clock.now().timestamp(),
    )  # fmt: skip


EventData = Annotated[str, Field(max_length=10_240)]
EventName = Annotated[str, Field(min_length=1, max_length=200)]


class EventIn(Input):
    """``name``, ``data`` (a string, usually JSON), ``channels`` (up to 100) or ``channel``,
    and ``socket_id`` to exclude that connection."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
                for name in ("channels", "channel")
            ]
        }
    )

    name: EventName
    data: EventData
    channels: Annotated[list[ChannelName], Field(min_length=1, max_length=100)] | None = None
    channel: ChannelName | None = None
    socket_id: SocketId | None = None

    @model_validator(mode="after")
    def _a_channel(self) -> Self:
        if not self.channels and not self.channel:
            raise ValueError("channels or channel is required")
        return self

    @property
    def targets(self) -> list[str]:
        return list(self.channels or [self.channel or ""])


class BatchIn(Input):
    batch: Annotated[list[EventIn], Field(min_length=1, max_length=10)]


class EventsOut(BaseModel):
    """Pusher answers ``{}`` (with ``channels`` when ``info`` was asked for)."""

    channels: dict[str, dict[str, int]] | None = None


class ChannelsQuery(BaseModel):
    filter_by_prefix: str = Field("", max_length=200)
    info: str = Field("", max_length=100)


class ChannelsOut(BaseModel):
    channels: dict[str, dict[str, int]]


@blueprint.post("/apps/<app_id>/events")
@signed_request
@validate_request(EventIn)
@validate_response(EventsOut)
@document_response(ErrorBody, 401)
@document_response(ErrorBody, 404)
async def trigger(app_id: str, data: EventIn) -> EventsOut:
    """Trigger an event on channels (Pusher's HTTP API, signed with the app secret); 401 for a
    bad signature or a timestamp more than 600 s away, as Pusher answers."""
    await check_signature(app_id)
    await hub().publish(data.targets, data.name, data.data, socket_id=data.socket_id)
    return EventsOut()


@blueprint.post("/apps/<app_id>/batch_events")
@signed_request
@validate_request(BatchIn)
@validate_response(EventsOut)
@document_response(ErrorBody, 401)
@document_response(ErrorBody, 404)
async def trigger_batch(app_id: str, data: BatchIn) -> EventsOut:
    """Trigger up to 10 events at once (Pusher's HTTP API, signed)."""
    await check_signature(app_id)
    for event in data.batch:
        await hub().publish(event.targets, event.name, event.data, socket_id=event.socket_id)
    return EventsOut()


@blueprint.get("/apps/<app_id>/channels")
@signed_request
@validate_querystring(ChannelsQuery)
@validate_response(ChannelsOut)
@document_response(ErrorBody, 401)
@document_response(ErrorBody, 404)
async def occupied_channels(app_id: str, query_args: ChannelsQuery) -> ChannelsOut:
    """Occupied channels, in every worker (Pusher's HTTP API, signed): ``filter_by_prefix``,
    and ``info=user_count`` for presence channels' member counts."""
    await check_signature(app_id)
    found = await hub().occupied(query_args.filter_by_prefix)
    fields = {f.strip() for f in query_args.info.split(",") if f.strip()}
    return ChannelsOut(
        channels={
            name: {
                k: v
                for k, v in info.items()
                if k in fields and (k != "user_count" or kind_of(name) == "presence")
            }
            for name, info in found.items()
        }
    )
