"""A tiny fake of ACA-Py's admin API, fast and with an optional added latency.

It answers the calls ``issuer.issuance.agents.acapy.AcaPyAgent`` makes, with the shapes the real
agent returns (see /tmp/acapy-notes.md): ``POST /out-of-band/create-invitation`` (a ~600 character
``invitation_url``, as the QR code of a real one), ``GET /connections``, ``GET /connections/{id}``,
``POST /issue-credential-2.0/send-offer``, ``GET /issue-credential-2.0/records/{id}`` (wrapped in
``cred_ex_record``), ``.../problem-report``, ``GET /status/ready``, ``GET /wallet/did`` and
``POST /wallet/did/create``. ``send-offer`` accepts any ``connection_id``, so a benchmark may post
the ``connections`` webhook itself with an id of its own.

Played like the real agent (``connect_after`` / ``accept_after`` set, seconds): that long after it
answered ``create-invitation`` the holder's connection turns ``active``, and that long after
``send-offer`` the exchange is ``done``; each time the stub posts the webhook ACA-Py would
(``{webhook_url}/topic/connections/`` and ``/topic/issue_credential_v2_0/`` with ``X-API-Key``).
With ``all_webhooks`` it posts ACA-Py's whole sequence (4 ``connections``, 3 ``out_of_band``,
4 ``issue_credential_v2_0`` events), otherwise only the two the app acts on.

Cheap on purpose (it shares the cores with the app it answers): it runs on
``bench.stub_server`` (a raw asyncio server, ``latency`` added per call with ``call_later``) and
posts webhooks with ``bench.http1.Client`` over at most 100 keep-alive connections — ACA-Py's
aiohttp session also posts at most 100 at a time; the others wait their turn. A webhook that
failed (no answer — e.g. a kept-alive connection the app closed as it was sent — or a status
above 299) is posted again 10 s later, at most 4 times, as ACA-Py 1.7 does; ``/_bench/stats``
counts ``webhooks_sent``, ``webhooks_failed`` (gave up), ``webhooks_retried`` (attempts after
the first) and ``webhooks_pending``.

Run alone: ``python -m bench.fake_acapy --port 8031 [--latency 0.2] [--webhook-url URL --webhook-key
KEY --connect-after 0.2 --accept-after 0.2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from bench.http1 import Client, ProtocolError
from bench.stub_server import Request, StubBase, serve

# ACA-Py's aiohttp session posts at most 100 webhooks at a time.
WEBHOOKS_IN_FLIGHT = 100
# ACA-Py 1.7 retries a failed webhook 10 s later, 4 times at most.
RETRY_AFTER = 10.0
RETRIES = 4
ISSUER_DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
CONNECTION_STEPS = (
    ("invitation", "invitation-sent"),
    ("request", "request-received"),
    ("response", "response-sent"),
    ("active", "completed"),
)
EXCHANGE_STEPS = ("offer-sent", "request-received", "credential-issued", "done")


def invitation(invi_msg_id: str) -> dict[str, Any]:
    """An out-of-band invitation shaped like ACA-Py 1.7's (its URL is ~600 characters long)."""
    return {
        "@type": "https://didcomm.org/out-of-band/1.1/invitation",
        "@id": invi_msg_id,
        "label": "issuer",
        "handshake_protocols": ["https://didcomm.org/didexchange/1.1"],
        "services": [
            {
                "id": "#inline",
                "type": "did-communication",
                "recipientKeys": [f"{ISSUER_DID}#{ISSUER_DID[8:]}"],
                "serviceEndpoint": "http://127.0.0.1:8030",
            }
        ],
        "accept": ["didcomm/aip1", "didcomm/aip2;env=rfc19"],
    }


@dataclass
class FakeAcaPy(StubBase):
    webhook_url: str | None = None
    webhook_key: str = ""
    connect_after: float | None = None
    accept_after: float | None = None
    all_webhooks: bool = False
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_invitation: dict[str, str] = field(default_factory=dict)
    exchanges: dict[str, dict[str, Any]] = field(default_factory=dict)
    did: str | None = None
    webhooks_sent: int = 0
    webhooks_failed: int = 0
    webhooks_retried: int = 0
    webhooks_pending: int = 0
    _client: Client | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def handle(self, request: Request) -> tuple[int, Any, str]:
        method, path = request.method, request.path
        if method == "POST" and path == "/out-of-band/create-invitation":
            return 200, self.create_invitation(), "POST /out-of-band/create-invitation"
        if method == "GET" and path == "/connections":
            connection_id = self.by_invitation.get(request.query.get("invitation_msg_id", ""))
            found = [self.connections[connection_id]] if connection_id else []
            return 200, {"results": found}, "GET /connections"
        if method == "GET" and path.startswith("/connections/"):
            record = self.connections.get(path.rsplit("/", 1)[1])
            if record is None:
                return 404, "404: Record not found", "GET /connections/{id}"
            return 200, record, "GET /connections/{id}"
        if method == "POST" and path == "/issue-credential-2.0/send-offer":
            body = request.json() or {}
            return 200, self.send_offer(str(body.get("connection_id"))), "POST send-offer"
        if path.startswith("/issue-credential-2.0/records/"):
            return self.exchange_call(method, path)
        if method == "GET" and path == "/status/ready":
            return 200, {"ready": True}, "GET /status/ready"
        if method == "GET" and path == "/wallet/did":
            return 200, {"results": [{"did": self.did}] if self.did else []}, "GET /wallet/did"
        if method == "POST" and path == "/wallet/did/create":
            self.did = ISSUER_DID
            return 200, {"result": {"did": self.did, "method": "key"}}, "POST /wallet/did/create"
        return 404, f"404: no route {method} {path}", "unknown"

    def create_invitation(self) -> dict[str, Any]:
        msg_id, connection_id = str(uuid.uuid4()), str(uuid.uuid4())
        message = invitation(msg_id)
        oob = base64.urlsafe_b64encode(json.dumps(message).encode()).decode().rstrip("=")
        self.connections[connection_id] = {
            "connection_id": connection_id,
            "invitation_msg_id": msg_id,
            "state": "invitation",
            "rfc23_state": "invitation-sent",
            "their_role": "invitee",
        }
        self.by_invitation[msg_id] = connection_id
        if self.connect_after is not None:
            self.later(self.connect_after, lambda: self.connect(connection_id))
        return {
            "state": "initial",
            "invi_msg_id": msg_id,
            "oob_id": str(uuid.uuid4()),
            "invitation": message,
            "invitation_url": f"http://127.0.0.1:8030?oob={oob}",
        }

    def send_offer(self, connection_id: str) -> dict[str, Any]:
        cred_ex_id = str(uuid.uuid4())
        record = {
            "cred_ex_id": cred_ex_id,
            "connection_id": connection_id,
            "role": "issuer",
            "initiator": "self",
            "thread_id": str(uuid.uuid4()),
            "state": "offer-sent",
        }
        self.exchanges[cred_ex_id] = record
        if self.accept_after is not None:
            self.later(self.accept_after, lambda: self.accept(cred_ex_id))
        return dict(record)

    def exchange_call(self, method: str, path: str) -> tuple[int, Any, str]:
        parts = path.split("/")  # /issue-credential-2.0/records/{id}[/problem-report]
        record = self.exchanges.get(parts[3])
        route = f"{method} /issue-credential-2.0/records/{{id}}" + (
            "/..." if len(parts) > 4 else ""
        )
        if record is None:
            return 404, f"404: Record not found: cred_ex_v20/{parts[3]}.", route
        if method == "POST" and len(parts) > 4:
            record.update(state="abandoned", error_msg="issuance-abandoned: problem report")
            return 200, {}, route
        return 200, {"cred_ex_record": record, "ld_proof": None}, route

    # --- playing the holder and the agent's webhooks ---------------------------------------

    def later(self, delay: float, start: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """``start()`` as a task ``delay`` seconds from now (a timer until then, not a task)."""
        self.webhooks_pending += 1

        def run() -> None:
            task = asyncio.create_task(start())
            self._tasks.add(task)
            task.add_done_callback(self.done)

        asyncio.get_running_loop().call_later(delay, run)

    def done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.webhooks_pending -= 1

    async def connect(self, connection_id: str) -> None:
        record = self.connections[connection_id]
        steps = CONNECTION_STEPS if self.all_webhooks else CONNECTION_STEPS[-1:]
        for state, rfc23 in steps:
            record.update(state=state, rfc23_state=rfc23)
            await self.post("connections", dict(record))
            if self.all_webhooks and state == "request":
                for oob_state in ("await-response", "done", "deleted"):
                    await self.post("out_of_band", {"state": oob_state, **record})

    async def accept(self, cred_ex_id: str) -> None:
        record = self.exchanges[cred_ex_id]
        steps = EXCHANGE_STEPS[1:] if self.all_webhooks else EXCHANGE_STEPS[-1:]
        for state in steps:
            record["state"] = state
            await self.post("issue_credential_v2_0", dict(record))

    async def post(self, topic: str, body: dict[str, Any]) -> None:
        """POST one event to ``{webhook_url}/topic/{topic}/`` as ACA-Py 1.7 does: a failed
        attempt (no answer, or a status above 299) is retried ``RETRY_AFTER`` seconds later, at
        most ``RETRIES`` times (``transport/outbound/manager.py``); aiohttp resends nothing
        itself (a ``POST`` is not idempotent)."""
        if not self.webhook_url:
            return
        if self._client is None:
            self._client = Client(self.webhook_url, connections=WEBHOOKS_IN_FLIGHT, timeout=30)
        headers = [("X-API-Key", self.webhook_key)] if self.webhook_key else []
        data = json.dumps(body).encode()
        path = f"/topic/{topic}/"
        for attempt in range(RETRIES + 1):
            if attempt:
                self.webhooks_retried += 1
                await asyncio.sleep(RETRY_AFTER)
            try:
                response = await self._client.post(path, data, "application/json", headers)
            except (OSError, TimeoutError, ProtocolError):
                continue
            if response.status < 300:
                self.webhooks_sent += 1
                return
        self.webhooks_failed += 1

    def configure(self, **settings: Any) -> None:
        if settings.get("reset"):
            self.webhooks_sent = self.webhooks_failed = self.webhooks_retried = 0
        super().configure(**settings)

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "webhooks_sent": self.webhooks_sent,
            "webhooks_failed": self.webhooks_failed,
            "webhooks_retried": self.webhooks_retried,
            "webhooks_pending": self.webhooks_pending,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--webhook-url")
    parser.add_argument("--webhook-key", default="")
    parser.add_argument("--connect-after", type=float)
    parser.add_argument("--accept-after", type=float)
    parser.add_argument("--all-webhooks", action="store_true")
    args = parser.parse_args()
    stub = FakeAcaPy(
        latency=args.latency,
        webhook_url=args.webhook_url,
        webhook_key=args.webhook_key,
        connect_after=args.connect_after,
        accept_after=args.accept_after,
        all_webhooks=args.all_webhooks,
    )
    serve(stub, args.port)


if __name__ == "__main__":
    main()
