"""Publishing domain events to RabbitMQ with aio-pika: a durable topic exchange, persistent
messages and publisher confirms (a publish returns only once the broker has taken it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractRobustConnection

log = logging.getLogger(__name__)


class EventPublisher:
    def __init__(self, url: str, exchange: str, *, timeout: float = 10.0) -> None:
        self._url = url
        self._exchange_name = exchange
        self._timeout = timeout
        self._connection: AbstractRobustConnection | None = None
        self._exchange: AbstractExchange | None = None
        # A batch is published concurrently: one connection for all, not one each.
        self._lock = asyncio.Lock()

    async def _ready(self) -> AbstractExchange:
        async with self._lock:
            if self._exchange is None or self._connection is None or self._connection.is_closed:
                # Close a broken connection first: a robust one left behind reconnects on its
                # own and stays open for ever (one leaked connection per broker outage).
                await self.close()
                self._connection = await aio_pika.connect_robust(self._url, timeout=self._timeout)
                channel = await self._connection.channel(publisher_confirms=True)
                self._exchange = await channel.declare_exchange(
                    self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
                )
            return self._exchange

    async def publish(self, event_id: str, topic: str, body: dict[str, Any]) -> None:
        """Publish and wait for the broker's confirm; raises on failure (the outbox retries)."""
        exchange = await self._ready()
        message = aio_pika.Message(
            json.dumps(body, separators=(",", ":"), default=str).encode(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=event_id,
            type=topic,
        )
        try:
            await exchange.publish(
                message, routing_key=topic, timeout=self._timeout, mandatory=False
            )
        except Exception:
            self._exchange = None  # reconnect on the next try
            raise

    async def close(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), self._timeout)
