"""Short invitation URLs (Aries RFC 0434, "URL shortening") and the page's wallet links, on both
databases, with an agent whose invitations are shaped like ACA-Py 1.7's."""

from __future__ import annotations

import base64
import html
import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import segno
from quart import Quart
from sqlalchemy import update

from issuer.issuance.agents.base import Invitation
from issuer.issuance.invitations import PUBLIC_ID_LENGTH, deep_link, message_json, short_url
from issuer.issuance.models import IssuanceSession
from issuer.issuance.states import State
from issuer.lib.qr import qr_svg
from issuer.services import services_of
from tests.fakes import FakeAgent

ISSUER_KEY = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
SHORT_LINK = re.compile(r'id="short-link" href="([^"]+)"')
DEEP_LINK = re.compile(r'id="wallet-link" href="([^"]+)"')
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
WALLET = {"Accept": "application/json"}


def invitation_message(msg_id: str) -> dict[str, Any]:
    """An out-of-band invitation as ACA-Py 1.7 makes one (``create-invitation``)."""
    return {
        "@type": "https://didcomm.org/out-of-band/1.1/invitation",
        "@id": msg_id,
        "label": "issuer",
        "handshake_protocols": ["https://didcomm.org/didexchange/1.1"],
        "services": [
            {
                "id": "#inline",
                "type": "did-communication",
                "recipientKeys": [f"{ISSUER_KEY}#{ISSUER_KEY[8:]}"],
                "serviceEndpoint": "http://127.0.0.1:8030",
            }
        ],
        "accept": ["didcomm/aip1", "didcomm/aip2;env=rfc19"],
    }


def long_url(message: dict[str, Any]) -> str:
    """ACA-Py's ``invitation_url``: the endpoint and the message, base64url without padding."""
    encoded = base64.urlsafe_b64encode(json.dumps(message).encode()).decode().rstrip("=")
    return f"http://127.0.0.1:8030?oob={encoded}"


class OobAgent(FakeAgent):
    """The fake agent, with invitation URLs that carry a real out-of-band message."""

    async def create_invitation(self) -> Invitation:
        made = await super().create_invitation()
        assert made.invitation_msg_id is not None
        return Invitation(
            long_url(invitation_message(made.invitation_msg_id)), made.invitation_msg_id, None
        )


@pytest.fixture
def fake_agent() -> FakeAgent:
    return OobAgent()


async def start(client: Any) -> tuple[str, str]:
    """``GET /en``; the session id and the page."""
    response = await client.get("/en")
    assert response.status_code == 200
    page = await response.get_data(as_text=True)
    session_id = re.search(r'data-session="([^"]+)"', page)
    assert session_id is not None
    return session_id.group(1), page


def short_path(page: str) -> str:
    found = SHORT_LINK.search(page)
    assert found is not None, "the page has no short invitation link"
    return urlsplit(html.unescape(found.group(1))).path


async def stored(app: Quart, session_id: str) -> IssuanceSession:
    row = await services_of(app).issuance.get(session_id)
    assert row is not None
    return row


async def test_a_wallet_gets_the_invitation_message_as_json(app: Quart, client: Any) -> None:
    session_id, page = await start(client)
    row = await stored(app, session_id)
    response = await client.get(short_path(page), headers=WALLET)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store" and response.headers["Vary"] == "Accept"
    assert await response.get_json() == invitation_message(str(row.invitation_msg_id))
    # RFC 0434's caveat: an agent may ask for JSON among other types and must still get it.
    response = await client.get(
        short_path(page), headers={"Accept": "text/html, application/json;q=0.5"}
    )
    assert (
        response.status_code == 200 and (await response.get_json())["@id"] == row.invitation_msg_id
    )


async def test_anything_else_is_redirected_to_the_long_url(app: Quart, client: Any) -> None:
    session_id, page = await start(client)
    row = await stored(app, session_id)
    for headers in (BROWSER, {"Accept": "*/*"}, {}, {"Accept": "application/json;q=0"}):
        response = await client.get(short_path(page), headers=headers)
        assert response.status_code == 302, headers
        assert response.headers["Location"] == row.invitation_url
        assert response.headers["Cache-Control"] == "no-store"
    # The long form carries the same message the JSON answer gives.
    encoded = parse_qs(urlsplit(str(row.invitation_url)).query)["oob"][0]
    decoded = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    answer = await (await client.get(short_path(page), headers=WALLET)).get_json()
    assert decoded == answer


async def test_unknown_malformed_and_spent_ids_are_404(app: Quart, client: Any) -> None:
    for path in ("/i/AAAAAAAAAAAAAAAA", "/i/AAAAAAAAAAAAAAA.", "/i/short", "/i/" + "A" * 40):
        response = await client.get(path, headers=WALLET)
        assert response.status_code == 404, path
        body = await response.get_json()
        assert body["success"] is False and body["message"], body
    assert (await (await client.get("/i/AAAAAAAAAAAAAAAA")).get_json())["error"] == "no_invitation"

    service = services_of(app).issuance
    spent, page = await start(client)
    path = short_path(page)
    assert (await client.get(path, headers=WALLET)).status_code == 200
    await service.transition(spent, State.CONNECTED, connection_id="c-1")  # the wallet used it
    response = await client.get(path, headers=WALLET)
    assert response.status_code == 404
    assert (await response.get_json())["error"] == "no_invitation"
    assert (await client.get(path, headers=BROWSER)).status_code == 404

    late, page = await start(client)
    async with service.db.transaction() as session:
        await session.execute(
            update(IssuanceSession)
            .where(IssuanceSession.id == late)
            .values(expires_at=service.clock.now() - timedelta(seconds=1))
        )
    assert (await client.get(short_path(page), headers=WALLET)).status_code == 404


async def test_the_qr_code_encodes_the_short_url_at_a_small_version(
    app: Quart, client: Any
) -> None:
    session_id, page = await start(client)
    row = await stored(app, session_id)
    assert row.invitation_public_id is not None
    assert re.fullmatch(r"[A-Za-z0-9_-]{16}", row.invitation_public_id)  # 96 bits, URL-safe
    short = short_url("http://localhost:5000", row.invitation_public_id)
    assert html.unescape(SHORT_LINK.search(page).group(1)) == short  # type: ignore[union-attr]
    # The page's code is the one of the short URL (segno is deterministic with a fixed mask).
    title = "Scan this QR code with your wallet app to connect."
    assert qr_svg(short, title=title) in page
    # Error correction M as before; the short URL of a long public host still fits version 6,
    # where ACA-Py's own URL needs ~19.
    assert segno.make(short, error="m").version <= 3
    host = "https://credentials.registrar.example-university.edu"
    assert segno.make(short_url(host, row.invitation_public_id), error="m").version <= 6
    assert segno.make(str(row.invitation_url), error="m").version >= 15
    assert "<svg" in page and 'viewBox="0 0' in page  # scales with CSS, no fixed size


async def test_every_session_gets_its_own_short_id(app: Quart, client: Any) -> None:
    ids = set()
    for _ in range(5):
        session_id, _ = await start(client)
        ids.add((await stored(app, session_id)).invitation_public_id)
    assert len(ids) == 5 and all(i and len(i) == PUBLIC_ID_LENGTH for i in ids)


async def test_the_page_links_to_the_wallet_on_the_same_phone(app: Quart, client: Any) -> None:
    session_id, page = await start(client)
    row = await stored(app, session_id)
    found = DEEP_LINK.search(page)
    assert found is not None
    link = html.unescape(found.group(1))
    assert link.startswith("didcomm://?oob=") and link == deep_link(str(row.invitation_url))
    assert json.loads(message_json(link.replace("didcomm://", "http://x/", 1)) or b"") == (
        invitation_message(str(row.invitation_msg_id))
    )
    assert "Open in your wallet" in page
    # Plain links: no inline script or handler (the CSP forbids them).
    assert not re.search(r"<script(?![^>]*\bsrc=)", page) and " onclick=" not in page
    # The page reloaded while still invited shows the same code and links.
    resumed = await (await client.get("/name")).get_data(as_text=True)
    assert DEEP_LINK.search(resumed) and short_path(resumed) == short_path(page)
    # Once connected, no code and no links any more.
    await services_of(app).issuance.transition(session_id, State.CONNECTED, connection_id="c-1")
    connected = await (await client.get("/name")).get_data(as_text=True)
    assert not DEEP_LINK.search(connected) and not SHORT_LINK.search(connected)


async def test_a_session_stored_before_short_urls_keeps_its_long_qr_code(
    app: Quart, client: Any
) -> None:
    session_id, _ = await start(client)
    service = services_of(app).issuance
    async with service.db.transaction() as session:
        await session.execute(
            update(IssuanceSession)
            .where(IssuanceSession.id == session_id)
            .values(invitation_public_id=None)
        )
    page = await (await client.get("/name")).get_data(as_text=True)
    row = await stored(app, session_id)
    assert SHORT_LINK.search(page) is None and DEEP_LINK.search(page)
    assert (
        qr_svg(str(row.invitation_url), title="Scan this QR code with your wallet app to connect.")
        in page
    )


async def test_the_route_is_in_the_openapi_document(client: Any) -> None:
    document = await (await client.get("/openapi.json")).get_json()
    operation = document["paths"]["/i/{public_id}"]["get"]
    assert operation["summary"].startswith("An invitation by its short URL")
    assert {"200", "302", "404"} <= set(operation["responses"])
    assert "application/json" in operation["responses"]["200"]["content"]
    assert "security" not in operation  # anyone holding the URL: it is the capability
    (parameter,) = operation["parameters"]
    assert parameter["schema"]["minLength"] == parameter["schema"]["maxLength"] == 16


async def test_the_offer_claims_in_one_statement_and_catches_up_a_missed_connection(
    app: Quart, client: Any, fake_agent: FakeAgent
) -> None:
    """``POST /name`` claims the offer with one ``UPDATE``; only a refused claim reads the
    session: a connection whose webhook was missed is read back from the agent (then claimed),
    a late second submit is refused and sends nothing."""
    response = await client.get("/en")
    page = await response.get_data(as_text=True)
    session_id = re.search(r'data-session="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    csrf = re.search(r'data-csrf="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    row = await stored(app, session_id)
    fake_agent.connected.add(str(row.invitation_msg_id))  # the webhook never came
    form = {"prename": "Ada", "surname": "Lovelace", "institution": "ETH", "csrf_token": csrf}
    response = await client.post("/name", form=form, headers=WALLET)
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert (await response.get_json())["state"] == "offered"
    attributes = {"prename": "Ada", "surname": "Lovelace", "institution": "ETH"}
    assert fake_agent.offers == [(f"conn-{row.invitation_msg_id}", attributes)]
    again = await client.post("/name", form=form, headers=WALLET)
    assert again.status_code == 409
    assert (await again.get_json())["error"] == "not_connected"  # it is offered by now
    assert len(fake_agent.offers) == 1
