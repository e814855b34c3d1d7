"""Writing to the outbox inside the caller's transaction (nothing is sent here).

``enqueue_email`` renders the message now (so a template error fails the request, not the
dispatcher) and stores it; ``enqueue_event`` stores a domain event for the broker.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from issuer.outbox.models import OutboxMessage
from issuer.outbox.templates import render_email


def enqueue_event(session: AsyncSession, topic: str, data: dict[str, Any]) -> uuid.UUID:
    """Store domain event ``topic`` (e.g. ``user.created``) with ``data``; returns its id."""
    event_id = uuid.uuid4()
    session.add(OutboxMessage(event_id=event_id, kind="event", topic=topic, payload={"data": data}))
    return event_id


def enqueue_email(
    session: AsyncSession,
    template: str,
    *,
    to: str,
    language: str | None,
    context: dict[str, Any],
) -> uuid.UUID:
    """Store the email ``template`` for ``to``, rendered in ``language`` (fallback English)."""
    subject, text, html = render_email(template, language, context)
    event_id = uuid.uuid4()
    session.add(
        OutboxMessage(
            event_id=event_id,
            kind="email",
            topic=template,
            payload={"to": to, "subject": subject, "text": text, "html": html},
        )
    )
    return event_id
