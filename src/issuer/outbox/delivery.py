"""Where outbox messages go: emails to SMTP (or the log in development), events to RabbitMQ."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from issuer.lib.mail import SmtpSettings, build_message, send
from issuer.outbox.amqp import EventPublisher
from issuer.outbox.models import OutboxMessage

log = logging.getLogger("issuer.mail")


class NoTransport(RuntimeError):
    """No SMTP server is configured outside development: the email waits (and retries)."""


class Delivery:
    def __init__(
        self,
        *,
        smtp: SmtpSettings | None,
        publisher: EventPublisher | None,
        development: bool,
        realtime: Callable[[OutboxMessage], Awaitable[None]] | None = None,
    ) -> None:
        """``realtime``: delivers an entity event to the websockets (the Pusher channels)."""
        self.smtp = smtp
        self.publisher = publisher
        self.realtime = realtime
        self.development = development

    async def __call__(self, message: OutboxMessage) -> None:
        if message.kind == "email":
            await self._email(message)
        elif message.kind == "event":
            await self._event(message)
        else:
            raise ValueError(f"unknown outbox kind {message.kind!r}")

    async def _email(self, message: OutboxMessage) -> None:
        payload = message.payload
        if self.smtp is None:
            if not self.development:
                raise NoTransport("no SMTP server configured (ISSUER_SMTP_HOST)")
            # Development only: the log and /dev/outbox stand in for a mailbox.
            log.info("mail to %s: %s\n%s", payload["to"], payload["subject"], payload["text"])
            return
        email = build_message(
            self.smtp.sender,
            payload["to"],
            payload["subject"],
            payload["text"],
            payload.get("html"),
            str(message.event_id),
        )
        await send(self.smtp, email)
        log.info("mail %s sent (%s)", message.event_id, message.topic)

    async def _event(self, message: OutboxMessage) -> None:
        if self.realtime is not None and message.seq is not None:
            await self.realtime(message)
        if self.publisher is None:
            return  # no broker configured: the event stays recorded in the outbox only
        body = {
            "id": str(message.event_id),
            "type": message.topic,
            "occurred_at": message.created_at.isoformat(),
            "data": message.payload.get("data", {}),
        }
        await self.publisher.publish(str(message.event_id), message.topic, body)
