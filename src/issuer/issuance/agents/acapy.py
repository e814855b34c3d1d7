"""ACA-Py's admin API: DIDComm out-of-band invitations and W3C VC (``ld_proof``) offers.

The issuer signs with a ``did:key`` (Ed25519) it creates once in the agent's wallet; the
credential's ``@context`` is the VC 1.1 context plus an inline term map for the configured
attributes, because only contexts bundled in ACA-Py resolve offline (see ACAPY.md).
Record states are read back with ``GET /connections`` and ``GET /issue-credential-2.0/records``
so sessions whose webhooks were missed can be reconciled.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any

from issuer.issuance.agents.base import (
    AgentUnavailable,
    ConnectionStatus,
    ExchangeState,
    ExchangeStatus,
    Invitation,
)
from issuer.issuance.agents.http import call, endpoint, make_client

log = logging.getLogger(__name__)

DIDEXCHANGE = "https://didcomm.org/didexchange/1.1"
# The same request for every invitation, encoded once.
INVITATION_REQUEST = json.dumps({"handshake_protocols": [DIDEXCHANGE], "use_public_did": False})
JSON_BODY = {"Content-Type": "application/json"}
VC_CONTEXT = "https://www.w3.org/2018/credentials/v1"
VOCAB = "urn:issuer:vocab#"


def exchange_status(record: dict[str, Any]) -> ExchangeState:
    """Map an ``issue_credential_v2_0`` record (or webhook body) to an exchange status.

    ``done`` is the only success; ``abandoned`` is a decline when the holder sent a problem
    report (``error_msg`` starts with ``issuance-abandoned``) and a failure otherwise.
    """
    state = record.get("state")
    if state == "done":
        return ExchangeState(ExchangeStatus.ACCEPTED, None)
    if state == "abandoned":
        reason = str(record.get("error_msg") or "abandoned")
        declined = reason.startswith("issuance-abandoned")
        return ExchangeState(
            ExchangeStatus.DECLINED if declined else ExchangeStatus.FAILED, reason[:500]
        )
    return ExchangeState(ExchangeStatus.PENDING, state)


def connection_is_active(record: dict[str, Any]) -> bool:
    return record.get("state") == "active" or record.get("rfc23_state") == "completed"


class AcaPyAgent:
    pushes_events = True

    def __init__(
        self, admin_url: str, *, api_key: str, timeout: float, credential_type: str
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else None
        self._client = make_client(admin_url, timeout, headers)
        # The hot path's URLs, parsed once (httpx parses and merges a relative URL and its
        # query on every request: a fifth of a call's CPU).
        self._invitation_url = endpoint(
            self._client, "/out-of-band/create-invitation", auto_accept="true"
        )
        self._offer_url = endpoint(self._client, "/issue-credential-2.0/send-offer")
        self._credential_type = credential_type
        self._did: str | None = None
        self._did_lock = asyncio.Lock()

    async def issuer_did(self) -> str:
        """The wallet's ``did:key`` (created on first use, then reused)."""
        if self._did is None:
            async with self._did_lock:
                if self._did is None:
                    found = await call(self._client, "GET", "/wallet/did", params={"method": "key"})
                    results = found.get("results") or []
                    if results:
                        self._did = str(results[0]["did"])
                    else:
                        created = await call(
                            self._client,
                            "POST",
                            "/wallet/did/create",
                            json={"method": "key", "options": {"key_type": "ed25519"}},
                        )
                        self._did = str(created["result"]["did"])
        return self._did

    async def create_invitation(self) -> Invitation:
        body = await call(
            self._client,
            "POST",
            self._invitation_url,
            content=INVITATION_REQUEST,
            headers=JSON_BODY,
        )
        try:
            return Invitation(
                url=str(body["invitation_url"]),
                invitation_msg_id=str(body["invi_msg_id"]),
                connection_id=body.get("connection_id"),
            )
        except (KeyError, TypeError) as exc:
            raise AgentUnavailable("ACA-Py's invitation has no invitation_url") from exc

    async def connection_status(self, invitation: Invitation) -> ConnectionStatus:
        body = await call(
            self._client,
            "GET",
            "/connections",
            params={"invitation_msg_id": invitation.invitation_msg_id or ""},
        )
        for record in body.get("results") or []:
            if connection_is_active(record):
                return ConnectionStatus(str(record["connection_id"]), active=True)
        return ConnectionStatus(invitation.connection_id, active=False)

    def credential(self, issuer: str, attributes: dict[str, str]) -> dict[str, Any]:
        terms: dict[str, Any] = {self._credential_type: f"{VOCAB}{self._credential_type}"}
        terms.update({name: f"{VOCAB}{name}" for name in attributes})
        return {
            "@context": [VC_CONTEXT, terms],
            "type": ["VerifiableCredential", self._credential_type],
            "issuer": issuer,
            "issuanceDate": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "credentialSubject": dict(attributes),
        }

    async def send_offer(self, connection_id: str, attributes: dict[str, str]) -> str:
        issuer = await self.issuer_did()
        payload = {
            "connection_id": connection_id,
            "auto_issue": True,
            "auto_remove": False,
            "comment": f"{self._credential_type} offer",
            "filter": {
                "ld_proof": {
                    "credential": self.credential(issuer, attributes),
                    "options": {"proofType": "Ed25519Signature2018"},
                }
            },
        }
        body = await call(self._client, "POST", self._offer_url, json=payload)
        try:
            return str(body["cred_ex_id"])
        except (KeyError, TypeError) as exc:
            raise AgentUnavailable("ACA-Py's offer has no cred_ex_id") from exc

    async def exchange_state(self, exchange_id: str) -> ExchangeState:
        body = await call(self._client, "GET", f"/issue-credential-2.0/records/{exchange_id}")
        return exchange_status(body.get("cred_ex_record") or body)

    async def abandon(self, exchange_id: str, reason: str) -> None:
        await call(
            self._client,
            "POST",
            f"/issue-credential-2.0/records/{exchange_id}/problem-report",
            json={"description": reason},
        )

    async def ready(self) -> bool:
        try:
            body = await call(self._client, "GET", "/status/ready")
        except AgentUnavailable:
            return False
        return bool(body.get("ready"))

    async def aclose(self) -> None:
        await self._client.aclose()
