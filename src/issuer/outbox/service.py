"""Writing to the outbox inside the caller's transaction (nothing is sent here).

``Outbox.email`` renders the message now (so a template error fails the use case, not the
dispatcher) and stores it; ``Outbox.event`` stores a domain event for the broker. Either wakes
this worker's dispatcher once the transaction commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from issuer.clock import Clock
from issuer.db import after_commit
from issuer.outbox import queries
from issuer.outbox.models import OutboxMessage
from issuer.outbox.templates import render_email


class Outbox:
    def __init__(
        self, clock: Clock, wake: Callable[[], None], *, publishes_events: bool = True
    ) -> None:
        """``wake``: tells the dispatcher that rows were committed (it polls otherwise).
        ``publishes_events``: a message broker is configured. Without one, a domain event
        that is no user's entity event (those also go to the websockets) has nowhere to go: it
        is recorded as delivered when it is written, and the dispatcher never sees it."""
        self._clock = clock
        self._wake = wake
        self._publishes_events = publishes_events

    def _add(self, session: AsyncSession, message: OutboxMessage) -> uuid.UUID:
        now = self._clock.now()
        message.created_at = message.available_at = now
        session.add(message)
        if message.kind == "event" and message.seq is None and not self._publishes_events:
            message.sent_at = now  # recorded, as a delivery with no broker would leave it
        else:
            after_commit(session, self._wake)
        return message.event_id

    async def event(
        self,
        session: AsyncSession,
        topic: str,
        data: dict[str, Any],
        *,
        user_id: int | None = None,
    ) -> uuid.UUID:
        """Store domain event ``topic`` (e.g. ``user.created``) with ``data``; returns its id.

        With ``user_id`` it is one of that user's entity events and gets the user's next event
        number (``seq``): the increment locks the user's row until the transaction ends, so a
        user's events commit in the order of their numbers and a client that saw number *n*
        missed exactly those above it."""
        message = OutboxMessage(
            event_id=uuid.uuid4(), kind="event", topic=topic, payload={"data": data}
        )
        if user_id is not None:
            message.user_id = user_id
            message.seq = await queries.next_event_seq(session, user_id)
        return self._add(session, message)

    def event_row(self, session: AsyncSession, topic: str, data: dict[str, Any]) -> dict[str, Any]:
        """The outbox values of entity event ``topic`` with ``data``, for a statement of the
        caller's that inserts the row together with the user's next event number (as
        ``issuer.accounts.queries.open_login`` does: one statement instead of three). The
        dispatcher is woken once ``session``'s transaction commits."""
        now = self._clock.now()
        after_commit(session, self._wake)
        return {
            "event_id": uuid.uuid4(),
            "kind": "event",
            "topic": topic,
            "payload": {"data": data},
            "created_at": now,
            "available_at": now,
            "attempts": 0,
        }

    def email(
        self,
        session: AsyncSession,
        template: str,
        *,
        to: str,
        language: str | None,
        context: dict[str, Any],
    ) -> uuid.UUID:
        """Store the email ``template`` for ``to``, rendered in ``language`` (fallback English)."""
        subject, text, html = render_email(template, language, context)
        message = OutboxMessage(
            event_id=uuid.uuid4(),
            kind="email",
            topic=template,
            payload={"to": to, "subject": subject, "text": text, "html": html},
        )
        return self._add(session, message)
