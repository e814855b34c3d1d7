"""The issuance portal: pages, the live websocket, agent webhooks and the original's routes."""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
from typing import Any
from urllib.parse import urlsplit

from quart import (
    Blueprint,
    current_app,
    redirect,
    render_template,
    request,
    session,
    websocket,
)
from quart_schema import DataSource, document_request, document_response, hide, validate_response

from issuer.errors import APIError, ErrorBody
from issuer.issuance.agents.acapy import connection_is_active, exchange_status
from issuer.issuance.agents.base import AgentUnavailable
from issuer.issuance.i18n import LANGUAGES, texts
from issuer.issuance.models import IssuanceSession
from issuer.issuance.schemas import (
    AcceptanceCheck,
    ConnectionCheck,
    NameForm,
    SessionState,
    WebhookAck,
)
from issuer.issuance.service import EVENT_RETRIES, IssuanceService
from issuer.issuance.states import FINAL_STATES, State
from issuer.lib.body import json_body
from issuer.lib.csrf import HEADER, csrf_token, csrf_valid
from issuer.lib.qr import qr_svg
from issuer.ops.metrics import WEBSOCKETS

log = logging.getLogger(__name__)
blueprint = Blueprint("issuance", __name__)
COOKIE_KEY = "issuance"
MAX_REMEMBERED = 5
MAX_ATTRIBUTE_LENGTH = 200


def service() -> IssuanceService:
    return current_app.extensions["issuance"]  # type: ignore[no-any-return]


def remember(session_id: str) -> None:
    ids = [i for i in session.get(COOKIE_KEY, []) if i != session_id]
    session[COOKIE_KEY] = [*ids, session_id][-MAX_REMEMBERED:]


def owned(session_id: str, cookie: Any) -> bool:
    ids = cookie.get(COOKIE_KEY, []) if cookie else []
    return any(hmac.compare_digest(session_id, i) for i in ids if isinstance(i, str))


def current_id() -> str:
    ids = session.get(COOKIE_KEY) or []
    if not ids:
        raise APIError(404, "no_session", "There is no issuance session; open the start page.")
    return str(ids[-1])


def note_listener(session_id: str) -> None:
    pollers = current_app.extensions.get("pollers")
    if pollers is not None:
        pollers.ensure(session_id)


async def render_page(
    row_state: dict[str, Any], language: str, qr: str | None, status: int = 200
) -> tuple[str, int]:
    settings = current_app.config["SETTINGS"]
    labels = texts(language)
    body = await render_template(
        "issuance/page.html",
        t=labels,
        lang=language,
        languages=LANGUAGES,
        snapshot=row_state,
        qr=qr,
        attributes=[(name, labels.get(name, name)) for name in settings.attribute_names],
        csrf=csrf_token(session),
        test_wallet=settings.development and "test_wallet" in current_app.extensions,
    )
    return body, status


@blueprint.get("/")
@blueprint.get("/<any(de, fr, en):language>")
@hide
async def start_page(language: str | None = None) -> Any:
    """Start an issuance: a new session and invitation, shown as a QR code."""
    language = language or current_app.config["SETTINGS"].default_language
    try:
        row, invitation = await service().start(language)
    except APIError as exc:
        if exc.status != 503:
            raise
        error = {"id": None, "state": "error", "version": 0, "error": exc.code}
        return await render_page(error, language, None, 503)
    remember(row.id)
    svg = await asyncio.to_thread(qr_svg, invitation.url, title=texts(language)["scan"])
    return await render_page(row.snapshot(), language, svg)


@blueprint.get("/name")
@blueprint.get("/success")
@hide
async def resume_page() -> Any:
    """Show the current session's page in whatever state it is in (the original's pages)."""
    try:
        row = await service().get(current_id())
    except APIError:
        row = None
    if row is None:
        return redirect("/")
    qr = None
    if row.state == State.INVITED and row.invitation_url:
        qr = await asyncio.to_thread(qr_svg, row.invitation_url)
    return await render_page(row.snapshot(), row.language, qr)


def read_attributes(form: dict[str, str]) -> dict[str, str]:
    names = current_app.config["SETTINGS"].attribute_names
    missing = [n for n in names if not (form.get(n) or "").strip()]
    too_long = [n for n in names if len(form.get(n) or "") > MAX_ATTRIBUTE_LENGTH]
    if missing or too_long:
        details = [{"loc": [n], "msg": "required"} for n in missing]
        details += [
            {"loc": [n], "msg": f"at most {MAX_ATTRIBUTE_LENGTH} characters"} for n in too_long
        ]
        raise APIError(422, "validation_error", "Please fill in every field.", details=details)
    return {n: form[n].strip() for n in names}


@blueprint.post("/name")
@document_request(NameForm, source=DataSource.FORM)
@document_response(SessionState, 200)
@document_response(ErrorBody, 403)
@document_response(ErrorBody, 409)
@document_response(ErrorBody, 422)
@document_response(ErrorBody, 503)
async def submit_name() -> Any:
    """Submit the holder's details; the agent sends the credential offer.

    Form fields are the configured attributes (default ``prename``, ``surname``,
    ``institution``) plus ``csrf_token`` (or the ``X-CSRF-Token`` header). Answers the new state
    as JSON, or redirects browsers that posted the form without JavaScript.
    """
    form = await request.form
    if not csrf_valid(session, form.get("csrf_token") or request.headers.get(HEADER)):
        raise APIError(403, "csrf_failed", "The form has expired; reload the page.")
    snapshot = await service().offer(current_id(), read_attributes(form.to_dict()))
    if request.accept_mimetypes.best == "text/html":
        return redirect("/name", 303)
    return snapshot


@blueprint.get("/check_connection/")
@blueprint.get("/check_connection")
@blueprint.get("/check-connection/")
@blueprint.get("/check-connection")
@validate_response(ConnectionCheck)
@document_response(ErrorBody, 404)
async def check_connection() -> ConnectionCheck:
    """The original's connection poll: ``{"status": "connected" | "not connected"}``."""
    row = await polled_session()
    connected = row.state not in (State.INVITED, State.EXPIRED, State.FAILED)
    return ConnectionCheck(status="connected" if connected else "not connected")


@blueprint.get("/loading/")
@blueprint.get("/loading")
@validate_response(AcceptanceCheck)
@document_response(ErrorBody, 404)
async def check_acceptance() -> AcceptanceCheck:
    """The original's acceptance poll: ``{"status": "accepted" | "not accepted"}``."""
    row = await polled_session()
    return AcceptanceCheck(status="accepted" if row.state == State.ACCEPTED else "not accepted")


@blueprint.get("/api/issuance/current")
@validate_response(SessionState)
@document_response(ErrorBody, 404)
async def current_state() -> SessionState:
    """The state of this browser's current issuance session."""
    row = await service().get(current_id())
    if row is None:
        raise APIError(404, "no_session", "There is no issuance session; open the start page.")
    return SessionState(**row.snapshot())


async def polled_session() -> IssuanceSession:
    """The cookie's current session for the original's polling routes; its poller is kept alive
    while the session is still going (agents without events)."""
    row = await service().get(current_id())
    if row is None:
        raise APIError(404, "no_session", "There is no issuance session; open the start page.")
    if row.state not in FINAL_STATES:
        note_listener(row.id)
    return row


def origin_allowed(origin: str | None, host: str | None) -> bool:
    """ASVS 4.4.1: the handshake's ``Origin`` must be ours or on the configured allow-list."""
    if not origin:
        return False
    allowed = current_app.config["SETTINGS"].origin_allow_list
    if origin.rstrip("/") in allowed:
        return True
    return bool(host) and urlsplit(origin).netloc == host


@blueprint.websocket("/ws/issuance/<session_id>")
async def issuance_updates(session_id: str) -> None:
    """Live session state: the stored state on connect, then every change (JSON snapshots)."""
    if not origin_allowed(websocket.headers.get("Origin"), websocket.headers.get("Host")):
        await websocket.close(1008, "origin not allowed")
        return
    if not owned(session_id, session):
        await websocket.close(1008, "not your session")
        return
    svc = service()
    async with svc.broker.subscribe(session_id) as queue:
        row = await svc.get(session_id)
        if row is None:
            await websocket.close(1008, "no such session")
            return
        await websocket.accept()
        sent = row.version
        await websocket.send_json(row.snapshot())
        if row.state in FINAL_STATES:
            return
        note_listener(session_id)
        current_app.add_background_task(catch_up, svc, session_id)
        with WEBSOCKETS.track_inprogress():
            while True:
                snapshot = await queue.get()
                if snapshot["version"] > sent:
                    sent = snapshot["version"]
                    await websocket.send_json(snapshot)
                    if snapshot["state"] in FINAL_STATES:
                        return  # the story is over: close normally


async def catch_up(svc: IssuanceService, session_id: str) -> None:
    """On (re)connect, read the record back from the agent in case a webhook was missed."""
    row = await svc.get(session_id)
    if row is None or row.state in FINAL_STATES or not svc.agent.pushes_events:
        return
    try:
        await svc.reconcile(row)
    except AgentUnavailable as exc:
        log.info("catch-up of %s… skipped: %s", session_id[:8], exc)


@blueprint.post("/webhooks/topic/<topic>/")
@blueprint.post("/webhooks/topic/<topic>")
@validate_response(WebhookAck)
@document_response(ErrorBody, 401)
async def agent_webhook(topic: str) -> WebhookAck:
    """ACA-Py event webhook; authenticated by the shared key in ``X-API-Key``."""
    expected = current_app.config["SETTINGS"].webhook_api_key
    given = request.headers.get("X-API-Key", "")
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        raise APIError(401, "unauthorized", "Missing or wrong webhook key.")
    body = await json_body()
    if not isinstance(body, dict):
        raise APIError(400, "bad_request", "The webhook body must be a JSON object.")
    svc = service()
    if topic == "connections" and connection_is_active(body):
        connection = functools.partial(
            svc.connection_active,
            connection_id=body.get("connection_id"),
            invitation_msg_id=body.get("invitation_msg_id"),
        )
        if not await connection():
            current_app.add_background_task(connection, attempts=EVENT_RETRIES)
    elif topic == "issue_credential_v2_0" and body.get("cred_ex_id"):
        exchange = exchange_status(body)
        args = (str(body["cred_ex_id"]), exchange.status, exchange.detail)
        if not await svc.exchange_finished(*args):
            current_app.add_background_task(svc.exchange_finished, *args, attempts=EVENT_RETRIES)
    return WebhookAck()
