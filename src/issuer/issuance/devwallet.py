"""Development only: a local ACA-Py issuer and the "Use the local test wallet" button.

With ``ISSUER_AGENT=local`` (the development default when no agent is configured) the app
starts an ACA-Py issuer and an auto-accepting ACA-Py holder as subprocesses, so anyone can watch
the whole flow without a phone. This blueprint is only registered in development.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from quart import Blueprint, request, session
from quart_schema import document_response, validate_response

from issuer.errors import Forbidden, NotFound, Unavailable
from issuer.issuance.agents.acapy import AcaPyAgent
from issuer.issuance.agents.local import LocalAgent, LocalAgentSpec
from issuer.issuance.routes import current_row
from issuer.issuance.schemas import WebhookAck
from issuer.lib.csrf import HEADER, csrf_valid
from issuer.schemas import ErrorBody
from issuer.web.bodies import takes_no_body
from issuer.web.context import services

log = logging.getLogger(__name__)
blueprint = Blueprint("devwallet", __name__)


class LocalAgents:
    """The local ACA-Py issuer (webhooks to this app) and an auto-accepting test wallet.

    Built complete: ports and keys are chosen here, so ``agent`` (the issuer's admin client)
    exists before the processes do; ``start()`` launches them when the app starts serving.
    """

    def __init__(
        self, binary: str, *, webhook_url: str, webhook_key: str, timeout: float,
        credential_type: str,
    ) -> None:  # fmt: skip
        self.binary = binary
        admin_key = secrets.token_urlsafe(24)
        self.issuer = LocalAgent(
            LocalAgentSpec(
                label="issuer", webhook_url=f"{webhook_url}#{webhook_key}", admin_api_key=admin_key
            ),
            binary,
        )
        self.holder = LocalAgent(LocalAgentSpec(label="test-wallet", holder=True), binary)
        self.agent = AcaPyAgent(
            self.issuer.admin_url,
            api_key=admin_key,
            timeout=timeout,
            credential_type=credential_type,
        )

    @property
    def test_wallet_url(self) -> str:
        return self.holder.admin_url

    async def start(self) -> None:
        if not os.path.exists(self.binary):  # noqa: ASYNC240  (one stat at startup)
            raise RuntimeError(
                f"ACA-Py not found at {self.binary}: run `make acapy` or set ISSUER_ACAPY_BIN"
            )
        await self.issuer.start()
        await self.holder.start()
        log.info(
            "local ACA-Py issuer at %s, test wallet at %s", self.issuer.admin_url,
            self.holder.admin_url,
        )  # fmt: skip

    async def stop(self) -> None:
        await asyncio.gather(self.holder.stop(), self.issuer.stop())


def invitation_message(invitation_url: str) -> dict[str, Any]:
    """Decode the out-of-band message from an invitation URL's ``oob`` parameter."""
    encoded = parse_qs(urlsplit(invitation_url).query).get("oob", [""])[0]
    padded = encoded + "=" * (-len(encoded) % 4)
    message: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return message


@blueprint.post("/dev/test-wallet")
@takes_no_body
@validate_response(WebhookAck)
@document_response(ErrorBody, 403)
@document_response(ErrorBody, 404)
@document_response(ErrorBody, 503)
async def use_test_wallet() -> WebhookAck:
    """Development only: the local test wallet receives this session's invitation."""
    if not csrf_valid(session, request.headers.get(HEADER)):
        raise Forbidden("The page has expired; reload it.", code="csrf_failed")
    wallet = services().test_wallet_url
    if not wallet:
        raise Unavailable("The local test wallet is not running.", code="no_test_wallet")
    row = await current_row()
    if not row.invitation_url:
        raise NotFound("There is no invitation to accept.", code="no_session")
    async with httpx.AsyncClient(base_url=wallet, timeout=10) as client:
        try:
            response = await client.post(
                "/out-of-band/receive-invitation",
                params={"auto_accept": "true"},
                json=invitation_message(row.invitation_url),
            )
        except httpx.HTTPError as exc:
            raise Unavailable(
                "The local test wallet is not running.", code="no_test_wallet"
            ) from exc
    if response.status_code >= 400:
        raise Unavailable("The test wallet refused the invitation.", code="test_wallet_failed")
    return WebhookAck()
