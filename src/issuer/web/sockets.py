"""Websocket helpers: refusals that clients can read, and closing when the worker stops."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from quart import current_app, websocket

POLICY_VIOLATION = 1008  # RFC 6455 §7.4.1
GOING_AWAY = 1001
TRY_AGAIN_LATER = 1013  # RFC 6455 §7.4 (IANA registry): a listener too slow was dropped
T = TypeVar("T")


async def refuse(reason: str) -> None:
    """Refuse this websocket with close code 1008 and ``reason``. Closing before the upgrade
    would reach the client as a bare HTTP 403 (hypercorn drops the code and the reason), so
    the handshake completes first."""
    await websocket.accept()
    await websocket.close(POLICY_VIOLATION, reason)


class ShuttingDown(Exception):
    """The worker is stopping; the websocket has been closed with 1001."""


async def until_shutdown(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable``, unless the worker starts shutting down first: then close this
    websocket with 1001 (going away) and raise :class:`ShuttingDown`."""
    work = asyncio.ensure_future(awaitable)
    shutdown: asyncio.Event = current_app.shutdown_event  # type: ignore[assignment]
    stopping = asyncio.ensure_future(shutdown.wait())
    try:
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the client went away: the work stops with the handler
        work.cancel()
        raise
    finally:
        stopping.cancel()
    if work.done():
        return work.result()
    work.cancel()
    await websocket.close(GOING_AWAY, "server shutting down")
    raise ShuttingDown
