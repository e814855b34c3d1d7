"""The wallet's ways in: the short invitation URL ``GET /i/<id>`` and the page's wallet links.

Aries RFC 0434 ("URL shortening"): the QR code carries ``{ISSUER_PUBLIC_BASE_URL}/i/<id>``
(version ≤ 4 instead of ~19 for ACA-Py's ~600-character URL, so it scans easily and renders in a
fraction of the time); a wallet fetches it with ``Accept: application/json`` and gets the
invitation message, anything else is redirected to the agent's long URL. A visitor on the phone
itself gets the ``didcomm://`` deep link and the short URL as plain links.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from quart import Blueprint, Response, redirect, request
from quart_schema import document_response
from werkzeug.datastructures import MIMEAccept

from issuer.issuance.invitations import deep_link, message_json, short_url
from issuer.issuance.models import IssuanceSession
from issuer.issuance.schemas import InvitationMessage
from issuer.issuance.states import State
from issuer.lib.qr import qr_svg
from issuer.schemas import ErrorBody
from issuer.web.context import services, settings
from issuer.web.openapi import html_page

blueprint = Blueprint("invitations", __name__)
JSON = "application/json"
# Per session and short-lived: no cache may keep it, and the answer depends on ``Accept``.
NOT_CACHED = {"Cache-Control": "no-store", "Vary": "Accept"}


@dataclass(frozen=True, slots=True)
class WalletLinks:
    """What the page offers the wallet: ``qr`` (an inline ``<svg>``) encodes ``short_url``
    (the agent's long URL for sessions stored before short URLs); ``deep_link`` is
    ``didcomm://?oob=…`` (``None`` when the agent's URL carries no message)."""

    qr: str
    short_url: str | None
    deep_link: str | None


async def wallet_links(row: IssuanceSession, title: str) -> WalletLinks | None:
    """The links of a session still waiting for its wallet; ``None`` once it is past that."""
    if row.state != State.INVITED or not row.invitation_url:
        return None
    short = None
    if row.invitation_public_id:
        short = short_url(settings().public_base_url, row.invitation_public_id)
    qr = await asyncio.to_thread(qr_svg, short or row.invitation_url, title=title)
    return WalletLinks(qr, short, deep_link(row.invitation_url))


def wants_json(accept: MIMEAccept) -> bool:
    """Whether ``Accept`` names ``application/json`` itself (not through ``*/*``, which
    browsers send too), with a quality above 0."""
    return any(value.lower() == JSON and quality > 0 for value, quality in accept)


@blueprint.get("/i/<string(minlength=16, maxlength=16):public_id>")
@html_page(302)
@document_response(InvitationMessage, 200)
@document_response(ErrorBody, 404)
async def short_invitation(public_id: str) -> Any:
    """An invitation by its short URL: the invitation message as JSON, or a redirect to it.

    Aries RFC 0434, "URL shortening": a request whose ``Accept`` names ``application/json``
    gets the out-of-band invitation message the agent created (``Content-Type:
    application/json; charset=utf-8``); any other gets a 302 to the agent's invitation URL
    (``?oob=`` and the message in base64url). The URL works while its session waits for the
    wallet (``invited``, until ``ISSUER_INVITATION_TIMEOUT``); then, or for an unknown id, 404
    ``no_invitation``.
    """
    url = await services().issuance.invitation_url(public_id)
    if wants_json(request.accept_mimetypes) and (message := message_json(url)) is not None:
        return Response(message, content_type=f"{JSON}; charset=utf-8", headers=NOT_CACHED)
    response = redirect(url, 302)
    response.headers.update(NOT_CACHED)
    return response
