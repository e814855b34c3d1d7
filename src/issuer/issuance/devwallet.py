"""Development only: a local ACA-Py issuer and the "Use the local test wallet" button.

With ``ISSUER_AGENT=local`` (the development default when no agent is configured) the app
starts an ACA-Py issuer and an auto-accepting ACA-Py holder as subprocesses, so anyone can watch
the whole flow without a phone. This blueprint is only registered in development.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from quart import Blueprint, Quart, current_app, request, session
from quart_schema import validate_response

from issuer.config import Settings
from issuer.errors import APIError
from issuer.issuance.agents.acapy import AcaPyAgent
from issuer.issuance.agents.local import LocalAgent, LocalAgentSpec, free_port
from issuer.issuance.routes import current_id, service
from issuer.issuance.schemas import WebhookAck
from issuer.lib.csrf import HEADER, csrf_valid

log = logging.getLogger(__name__)
blueprint = Blueprint("devwallet", __name__)


async def start_local_agents(app: Quart, settings: Settings) -> AcaPyAgent:
    """Start the issuer (webhooks to this app) and the test wallet; stop both at shutdown."""
    binary = settings.acapy_bin
    if not os.path.exists(binary):  # noqa: ASYNC240  (one stat at startup)
        raise RuntimeError(
            f"ACA-Py not found at {binary}: run `make acapy` or set ISSUER_ACAPY_BIN"
        )
    if not settings.webhook_api_key:
        settings.webhook_api_key = secrets.token_urlsafe(24)
    admin_key = secrets.token_urlsafe(24)
    issuer = LocalAgent(
        LocalAgentSpec(
            label="issuer",
            admin_port=free_port(),
            inbound_port=free_port(),
            webhook_url=f"http://127.0.0.1:{settings.port}/webhooks#{settings.webhook_api_key}",
            admin_api_key=admin_key,
        ),
        binary,
    )
    holder = LocalAgent(
        LocalAgentSpec(
            label="test-wallet",
            admin_port=free_port(),
            inbound_port=free_port(),
            webhook_url=None,
            admin_api_key=None,
            holder=True,
        ),
        binary,
    )
    app.extensions["stop_on_shutdown"] = [issuer.stop, holder.stop]
    await issuer.start()
    await holder.start()
    log.info("local ACA-Py issuer at %s, test wallet at %s", issuer.admin_url, holder.admin_url)
    settings.test_wallet_admin_url = holder.admin_url
    app.extensions["test_wallet"] = holder.admin_url
    return AcaPyAgent(
        issuer.admin_url,
        api_key=admin_key,
        timeout=settings.agent_timeout,
        credential_type=settings.credential_type,
    )


def invitation_message(invitation_url: str) -> dict[str, Any]:
    """Decode the out-of-band message from an invitation URL's ``oob`` parameter."""
    encoded = parse_qs(urlsplit(invitation_url).query).get("oob", [""])[0]
    padded = encoded + "=" * (-len(encoded) % 4)
    message: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return message


@blueprint.before_app_serving
async def remember_wallet() -> None:
    url = current_app.config["SETTINGS"].test_wallet_admin_url
    if url:
        current_app.extensions["test_wallet"] = url


@blueprint.post("/dev/test-wallet")
@validate_response(WebhookAck)
async def use_test_wallet() -> WebhookAck:
    """Development only: the local test wallet receives this session's invitation."""
    if not csrf_valid(session, request.headers.get(HEADER)):
        raise APIError(403, "csrf_failed", "The page has expired; reload it.")
    wallet = current_app.extensions.get("test_wallet")
    if not wallet:
        raise APIError(503, "no_test_wallet", "The local test wallet is not running.")
    row = await service().get(current_id())
    if row is None or not row.invitation_url:
        raise APIError(404, "no_session", "There is no invitation to accept.")
    async with httpx.AsyncClient(base_url=wallet, timeout=10) as client:
        response = await client.post(
            "/out-of-band/receive-invitation",
            params={"auto_accept": "true"},
            json=invitation_message(row.invitation_url),
        )
    if response.status_code >= 400:
        raise APIError(502, "test_wallet_failed", "The test wallet refused the invitation.")
    return WebhookAck()
