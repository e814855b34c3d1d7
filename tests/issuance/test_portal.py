"""The portal's flow through the Quart test client, with a controllable agent, on both databases."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from quart import Quart

from issuer.issuance import service as service_module
from issuer.issuance.agents.base import ExchangeState, ExchangeStatus
from issuer.services import services_of
from tests.fakes import FakeAgent

ORIGIN = {"Origin": "http://localhost", "Host": "localhost"}


async def start(client: Any, path: str = "/") -> tuple[str, str]:
    response = await client.get(path)
    assert response.status_code == 200
    page = await response.get_data(as_text=True)
    session_id = re.search(r'data-session="([^"]+)"', page).group(1)
    csrf = re.search(r'data-csrf="([^"]+)"', page).group(1)
    return session_id, csrf


async def connect(app: Quart, fake_agent: FakeAgent, session_id: str) -> None:
    row = await services_of(app).issuance.get(session_id)
    fake_agent.connected.add(row.invitation_msg_id)
    await services_of(app).issuance.reconcile(row)


async def test_start_page_shows_a_per_visitor_inline_svg_qr(client: Any) -> None:
    first = await (await client.get("/")).get_data(as_text=True)
    second = await (await client.get("/en")).get_data(as_text=True)
    assert "<svg" in first and "<svg" in second
    assert 'lang="de"' in first and 'lang="en"' in second
    ids = [re.search(r'data-session="([^"]+)"', p).group(1) for p in (first, second)]
    assert ids[0] != ids[1] and all(len(i) >= 43 for i in ids)  # 256 bits, url-safe


async def test_language_pages(client: Any) -> None:
    for lang, word in (("de", "Vorname"), ("fr", "Prénom"), ("en", "First name")):
        page = await (await client.get(f"/{lang}")).get_data(as_text=True)
        assert f'lang="{lang}"' in page and word in page


async def test_csp_and_cookie_flags(client: Any) -> None:
    response = await client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "*" not in csp
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie


async def test_whole_flow_and_legacy_routes(app: Quart, client: Any, fake_agent: FakeAgent) -> None:
    session_id, csrf = await start(client)
    assert (await (await client.get("/check_connection/")).get_json()) == {
        "status": "not connected"
    }
    await connect(app, fake_agent, session_id)
    for path in (
        "/check_connection/",
        "/check_connection",
        "/check-connection/",
        "/check-connection",
    ):
        assert (await (await client.get(path)).get_json()) == {"status": "connected"}
    form = {"prename": "Ada", "surname": "Lovelace", "institution": "ETH", "csrf_token": csrf}
    response = await client.post("/name", form=form, headers={"Accept": "application/json"})
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert (await response.get_json())["state"] == "offered"
    assert fake_agent.offers[0][1] == {
        "prename": "Ada",
        "surname": "Lovelace",
        "institution": "ETH",
    }
    assert (await (await client.get("/loading/")).get_json()) == {"status": "not accepted"}
    row = await services_of(app).issuance.get(session_id)
    fake_agent.exchanges[row.exchange_id] = ExchangeState(ExchangeStatus.ACCEPTED)
    await services_of(app).issuance.reconcile(row)
    assert (await (await client.get("/loading")).get_json()) == {"status": "accepted"}
    assert "Fertig" in await (await client.get("/success")).get_data(as_text=True)
    row = await services_of(app).issuance.get(session_id)
    assert row.state == "accepted" and row.connected_at and row.offered_at and row.finished_at


async def test_name_form_needs_csrf_and_every_field(
    app: Quart, client: Any, fake_agent: FakeAgent
) -> None:
    session_id, csrf = await start(client)
    await connect(app, fake_agent, session_id)
    form = {"prename": "Ada", "surname": "Lovelace", "institution": "ETH"}
    response = await client.post("/name", form=form)
    assert response.status_code == 403
    assert (await response.get_json())["error"] == "csrf_failed"
    response = await client.post("/name", form={"prename": "Ada", "csrf_token": csrf})
    assert response.status_code == 422
    body = await response.get_json()
    assert body["success"] is False and {d["loc"][0] for d in body["details"]} == {
        "surname",
        "institution",
    }
    assert fake_agent.offers == []


async def test_name_before_connection_is_a_conflict(client: Any, fake_agent: FakeAgent) -> None:
    _, csrf = await start(client)
    form = {"prename": "A", "surname": "B", "institution": "C", "csrf_token": csrf}
    response = await client.post("/name", form=form)
    assert response.status_code == 409 and fake_agent.offers == []


async def test_agent_down_gives_a_page_with_retry_and_json_503(
    client: Any, fake_agent: FakeAgent
) -> None:
    fake_agent.down = True
    response = await client.get("/")
    assert response.status_code == 503
    page = await response.get_data(as_text=True)
    assert 'id="retry"' in page and 'data-state="error"' in page
    assert (await client.get("/health/ready")).status_code == 503


async def test_websocket_pushes_state_changes(
    app: Quart, client: Any, fake_agent: FakeAgent
) -> None:
    session_id, _ = await start(client)
    async with client.websocket(f"/ws/issuance/{session_id}", headers=ORIGIN) as ws:
        first = await ws.receive_json()
        assert first["state"] == "invited" and first["version"] == 1
        await connect(app, fake_agent, session_id)
        second = await ws.receive_json()
        assert second["state"] == "connected" and second["version"] == 2


async def test_a_reconnecting_socket_reads_a_missed_connection_back_from_the_agent(
    app: Quart, client: Any, fake_agent: FakeAgent
) -> None:
    session_id, _ = await start(client)
    row = await services_of(app).issuance.get(session_id)
    fake_agent.connected.add(row.invitation_msg_id)  # the wallet connected; its webhook was lost
    async with client.websocket(f"/ws/issuance/{session_id}", headers=ORIGIN) as ws:
        assert (await ws.receive_json())["state"] == "invited"  # the stored state first
        assert (await ws.receive_json())["state"] == "connected"  # then the agent's record
    assert fake_agent.status_reads == 1


async def test_the_fresh_pages_first_socket_does_not_read_the_agent(
    app: Quart, client: Any, fake_agent: FakeAgent
) -> None:
    """The start page marks itself fresh: it shows the session its request just stored, so
    its first socket skips the read-back (one agent call less per visitor)."""
    response = await client.get("/")
    page = await response.get_data(as_text=True)
    assert 'data-fresh="1"' in page
    session_id = re.search(r'data-session="([^"]+)"', page).group(1)
    row = await services_of(app).issuance.get(session_id)
    async with client.websocket(f"/ws/issuance/{session_id}?fresh=1", headers=ORIGIN) as ws:
        assert (await ws.receive_json())["state"] == "invited"
        hook = {
            "connection_id": "c-1",
            "invitation_msg_id": row.invitation_msg_id,
            "state": "active",
        }
        await client.post(
            "/webhooks/topic/connections/", json=hook, headers={"X-API-Key": "hook-key"}
        )
        # The socket's loop delivered this, so it is past the point where it would have
        # started a read-back: none ran, and none is pending.
        assert (await ws.receive_json())["state"] == "connected"
    assert fake_agent.status_reads == 0
    assert services_of(app).supervisor.task(f"catch-up:{session_id}") is None
    resumed = await (await client.get("/name")).get_data(as_text=True)
    assert "data-fresh" not in resumed  # a reload may have missed something: it reads back


async def test_websocket_refuses_foreign_origin_and_foreign_session(
    client: Any, app: Quart
) -> None:
    session_id, _ = await start(client)
    async with client.websocket(
        f"/ws/issuance/{session_id}",
        headers={"Origin": "https://evil.example", "Host": "localhost"},
    ) as ws:
        await assert_closed(ws)
    stranger = app.test_client()
    async with stranger.websocket(f"/ws/issuance/{session_id}", headers=ORIGIN) as ws:
        await assert_closed(ws)


async def assert_closed(ws: Any) -> None:
    """Refused after the upgrade with close code 1008, so browsers see the code (a close before
    the upgrade reaches them as a bare HTTP 403)."""
    from quart.testing.connections import WebsocketDisconnectError

    try:
        message = await ws.receive()
    except WebsocketDisconnectError as exc:
        assert ws.accepted and exc.args[0] == 1008, (ws.accepted, exc.args)
        return
    raise AssertionError(f"the websocket stayed open and sent {message!r}")


async def test_webhooks_need_the_shared_key_and_are_idempotent(
    app: Quart, client: Any, fake_agent: FakeAgent
) -> None:
    session_id, _ = await start(client)
    row = await services_of(app).issuance.get(session_id)
    body = {"connection_id": "c-1", "invitation_msg_id": row.invitation_msg_id, "state": "active"}
    response = await client.post("/webhooks/topic/connections/", json=body)
    assert response.status_code == 401
    for _ in range(2):
        response = await client.post(
            "/webhooks/topic/connections/", json=body, headers={"X-API-Key": "hook-key"}
        )
        assert response.status_code == 200
    row = await services_of(app).issuance.get(session_id)
    assert row.state == "connected" and row.version == 2 and row.connection_id == "c-1"


async def test_out_of_order_webhooks_never_move_backwards(
    app: Quart, client: Any, fake_agent: FakeAgent
) -> None:
    session_id, csrf = await start(client)
    await connect(app, fake_agent, session_id)
    form = {"prename": "A", "surname": "B", "institution": "C", "csrf_token": csrf}
    await client.post("/name", form=form)
    row = await services_of(app).issuance.get(session_id)
    key = {"X-API-Key": "hook-key"}
    done = {"cred_ex_id": row.exchange_id, "state": "done", "connection_id": row.connection_id}
    late = {**done, "state": "request-received"}
    assert (
        await client.post("/webhooks/topic/issue_credential_v2_0/", json=done, headers=key)
    ).status_code == 200
    await client.post("/webhooks/topic/issue_credential_v2_0/", json=late, headers=key)
    active = {"connection_id": row.connection_id, "state": "active"}
    await client.post("/webhooks/topic/connections/", json=active, headers=key)
    row = await services_of(app).issuance.get(session_id)
    assert row.state == "accepted"


async def test_unanswered_offer_expires(app: Quart, client: Any, fake_agent: FakeAgent) -> None:
    from datetime import timedelta

    session_id, csrf = await start(client)
    await connect(app, fake_agent, session_id)
    service = services_of(app).issuance
    service.offer_timeout = timedelta(seconds=-1)
    form = {"prename": "A", "surname": "B", "institution": "C", "csrf_token": csrf}
    await client.post("/name", form=form)
    assert await service.expire_due() == 1
    row = await service.get(session_id)
    assert row.state == "expired" and fake_agent.abandoned == [row.exchange_id]


async def test_errors_share_one_json_shape(client: Any) -> None:
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("GET", "/nowhere", {}, 404),
        ("DELETE", "/health", {}, 405),
        ("POST", "/webhooks/topic/connections/", {"data": b"\xff\xfe"}, 401),
    ]
    for method, path, kwargs, status in cases:
        response = await client.open(path, method=method, **kwargs)
        assert response.status_code == status
        body = await response.get_json()
        assert body["success"] is False and body["error"] and body["message"]


async def offer_unanswered(
    app: Quart, client: Any, fake_agent: FakeAgent
) -> tuple[str, str, asyncio.Future[Any]]:
    """A connected session whose ``POST /name`` waits for the agent's answer to send-offer
    (``fake_agent.answer_offers``): the session id, the exchange id the answer will carry, and
    the pending ``POST``."""
    session_id, csrf = await start(client)
    await connect(app, fake_agent, session_id)
    fake_agent.answer_offers = asyncio.Event()
    form = {"prename": "A", "surname": "B", "institution": "C", "csrf_token": csrf}
    posting = asyncio.ensure_future(client.post("/name", form=form))
    await fake_agent.offer_waiting.wait()
    return session_id, fake_agent.last_exchange, posting


async def done_waits(app: Quart, client: Any, exchange_id: str) -> asyncio.Task[None]:
    """Post the agent's ``done`` event of an exchange no session has stored yet: it is
    acknowledged, and waits for the record in a task of its own (returned)."""
    done = {"cred_ex_id": exchange_id, "state": "done", "connection_id": "c"}
    key = {"X-API-Key": "hook-key"}
    response = await client.post("/webhooks/topic/issue_credential_v2_0/", json=done, headers=key)
    assert response.status_code == 200
    waiting = services_of(app).supervisor.task(f"webhook:{exchange_id}:accepted")
    assert waiting is not None
    return waiting


@pytest.fixture
def no_recheck(monkeypatch: pytest.MonkeyPatch) -> None:
    """Events that wait for their record look again only after an hour (never, in a test)."""
    monkeypatch.setattr(service_module, "EVENT_RECHECK", 3600.0)


@pytest.mark.usefixtures("no_recheck")
async def test_an_event_that_overtakes_its_answer_is_applied_when_the_answer_is_stored(
    app: Quart, client: Any, fake_agent: FakeAgent
) -> None:
    """The holder accepts before the worker has stored the exchange id of the agent's answer
    to send-offer: the ``done`` event waits and is applied the moment the answer is stored (no
    later look would come within this test)."""
    session_id, exchange_id, posting = await offer_unanswered(app, client, fake_agent)
    waiting = await done_waits(app, client, exchange_id)
    assert not waiting.done()  # nothing to apply it to yet
    fake_agent.answer_offers.set()
    assert (await posting).status_code == 200
    await asyncio.wait_for(waiting, 10)
    row = await services_of(app).issuance.get(session_id)
    assert row.state == "accepted" and row.version == 4


@pytest.mark.usefixtures("no_recheck")
async def test_an_answer_stored_while_its_event_looks_for_it_still_wakes_the_event(
    app: Quart, client: Any, fake_agent: FakeAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race inside the test above, forced: the worker stores the agent's answer after the
    ``done`` event's look for it found nothing but before the event starts to wait. The store
    must still wake the event (it used to sleep until the recheck)."""
    session_id, exchange_id, posting = await offer_unanswered(app, client, fake_agent)
    service = services_of(app).issuance
    look = service._matches
    stored_after_the_look = []

    async def look_then_store(keys: list[tuple[str, str]]) -> bool:
        found = await look(keys)
        task = asyncio.current_task()
        waits = task is not None and task.get_name().startswith("webhook:")  # not the route's look
        if waits and not stored_after_the_look:
            fake_agent.answer_offers.set()
            stored_after_the_look.append((await posting).status_code)
        return found

    monkeypatch.setattr(service, "_matches", look_then_store)
    waiting = await done_waits(app, client, exchange_id)
    await asyncio.wait_for(waiting, 10)
    assert stored_after_the_look == [200]
    row = await services_of(app).issuance.get(session_id)
    assert row.state == "accepted" and row.version == 4
