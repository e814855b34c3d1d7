"""Development only: the outbox page, a stand-in mailbox when no SMTP server is configured."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, render_template

from issuer.outbox import queries
from issuer.web.context import services
from issuer.web.openapi import html_page

blueprint = Blueprint("dev_outbox", __name__)


@blueprint.get("/dev/outbox")
@html_page()
async def dev_outbox() -> Any:
    """The 50 newest emails of the outbox, with their state (development only)."""
    async with services().db.session() as session:
        messages = await queries.latest(session, "email", 50)
    return await render_template("dev_outbox.html", messages=messages, lang="en")
