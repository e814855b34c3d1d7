"""Development only: the outbox page, a stand-in mailbox when no SMTP server is configured."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, current_app, render_template
from quart_schema import hide
from sqlalchemy import select

from issuer.outbox.models import OutboxMessage

blueprint = Blueprint("dev_outbox", __name__)


@blueprint.get("/dev/outbox")
@hide
async def dev_outbox() -> Any:
    """The 50 newest emails of the outbox, with their state (development only)."""
    async with current_app.extensions["db"].sessions() as session:
        rows = await session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.kind == "email")
            .order_by(OutboxMessage.id.desc())
            .limit(50)
        )
        messages = list(rows)
    return await render_template("dev_outbox.html", messages=messages, lang="en")
