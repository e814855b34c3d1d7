"""The issuance portal: pages, the live websocket, agent webhooks and the original's routes."""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

from quart import Blueprint, Quart, redirect, render_template, request, session, websocket
from quart_schema import DataSource, document_response, validate_request, validate_response

from issuer.errors import Forbidden, NotFound, Unauthenticated, Unavailable
from issuer.issuance.agents.acapy import connection_is_active, exchange_status
from issuer.issuance.agents.base import AgentUnavailable
from issuer.issuance.i18n import LANGUAGES, texts
from issuer.issuance.links import WalletLinks, wallet_links
from issuer.issuance.models import IssuanceSession, topic
from issuer.issuance.schemas import (
    AcceptanceCheck,
    ConnectionCheck,
    NameFormBase,
    SessionState,
    WebhookAck,
    WebhookEvent,
    name_form,
)
from issuer.issuance.service import EVENT_WAIT, IssuanceService
from issuer.issuance.states import FINAL_STATES, State
from issuer.lib.csrf import HEADER, csrf_token, csrf_valid
from issuer.ops.metrics import WEBSOCKETS
from issuer.realtime.broker import Listener, Overflowed
from issuer.schemas import ErrorBody
from issuer.web.context import services, settings
from issuer.web.idempotency import idempotent
from issuer.web.openapi import AUTH_ATTRIBUTE, html_page
from issuer.web.sockets import TRY_AGAIN_LATER, ShuttingDown, refuse, until_shutdown

log = logging.getLogger(__name__)
blueprint = Blueprint("issuance", __name__)
COOKIE_KEY = "issuance"
MAX_REMEMBERED = 5
NO_SESSION = "There is no issuance session; open the start page."
P = ParamSpec("P")
R = TypeVar("R")


def service() -> IssuanceService:
    return services().issuance


def remember(session_id: str) -> None:
    ids = [i for i in session.get(COOKIE_KEY, []) if i != session_id]
    session[COOKIE_KEY] = [*ids, session_id][-MAX_REMEMBERED:]


def owned(session_id: str, cookie: Any) -> bool:
    ids = cookie.get(COOKIE_KEY, []) if cookie else []
    return any(hmac.compare_digest(session_id, i) for i in ids if isinstance(i, str))


def current_id() -> str:
    ids = session.get(COOKIE_KEY) or []
    if not ids:
        raise NotFound(NO_SESSION, code="no_session")
    return str(ids[-1])


async def current_row() -> IssuanceSession:
    row = await service().get(current_id())
    if row is None:
        raise NotFound(NO_SESSION, code="no_session")
    return row


def note_listener(session_id: str) -> None:
    pollers = services().pollers
    if pollers is not None:
        pollers.ensure(session_id)


async def render_page(
    row_state: dict[str, Any],
    language: str,
    links: WalletLinks | None,
    status: int = 200,
    *,
    fresh: bool = False,
) -> tuple[str, int]:
    """The portal page; ``fresh``: it shows a session this request created, so its first
    websocket needs no read-back from the agent (``?fresh=1``)."""
    config = settings()
    labels = texts(language)
    body = await render_template(
        "issuance/page.html",
        t=labels,
        lang=language,
        languages=LANGUAGES,
        snapshot=row_state,
        links=links,
        attributes=[(name, labels.get(name, name)) for name in config.attribute_names],
        csrf=csrf_token(session),
        test_wallet=services().test_wallet_url is not None,
        fresh=fresh,
    )
    return body, status


@blueprint.get("/")
@blueprint.get("/<any(de, fr, en):language>")
@html_page(200, 503)
async def start_page(language: str | None = None) -> Any:
    """Start an issuance: a new session and invitation, shown as a QR code."""
    language = language or settings().default_language
    try:
        row, _ = await service().start(language)
    except Unavailable as exc:
        error = {"id": None, "state": "error", "version": 0, "error": exc.code}
        return await render_page(error, language, None, 503)
    remember(row.id)
    links = await wallet_links(row, texts(language)["scan"])
    return await render_page(row.snapshot(), language, links, fresh=True)


@blueprint.get("/name")
@blueprint.get("/success")
@html_page(200, 302)
async def resume_page() -> Any:
    """Show the current session's page in whatever state it is in (the original's pages)."""
    try:
        row = await current_row()
    except NotFound:
        return redirect("/")
    links = await wallet_links(row, texts(row.language)["scan"])
    return await render_page(row.snapshot(), row.language, links)


def register_name_form(app: Quart, attribute_names: list[str]) -> None:
    """``POST /name``, validated by a form model of the configured attributes (so the OpenAPI
    document lists exactly the fields this deployment asks for)."""
    model = name_form(attribute_names)

    @idempotent
    @validate_request(model, source=DataSource.FORM)
    @document_response(SessionState, 200)
    @document_response(ErrorBody, 403)
    @document_response(ErrorBody, 404)
    @document_response(ErrorBody, 409)
    @document_response(ErrorBody, 422)
    @document_response(ErrorBody, 503)
    async def submit_name(data: NameFormBase) -> Any:
        """Submit the holder's details; the agent sends the credential offer.

        Form fields are the configured attributes (default ``prename``, ``surname``,
        ``institution``, each 1–200 characters on one line) plus ``csrf_token`` (or the
        ``X-CSRF-Token`` header). Answers the new state as JSON, or redirects browsers that
        posted the form without JavaScript.
        """
        if not csrf_valid(session, data.csrf_token or request.headers.get(HEADER)):
            raise Forbidden("The form has expired; reload the page.", code="csrf_failed")
        snapshot = await service().offer(current_id(), data.attributes(attribute_names))
        if request.accept_mimetypes.best == "text/html":
            return redirect("/name", 303)
        return snapshot

    app.add_url_rule("/name", "issuance.submit_name", submit_name, methods=["POST"])


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
    return SessionState(**(await current_row()).snapshot())


async def polled_session() -> IssuanceSession:
    """The cookie's current session for the original's polling routes; its poller is kept alive
    while the session is still going (agents without events)."""
    row = await current_row()
    if row.state not in FINAL_STATES:
        note_listener(row.id)
    return row


def origin_allowed(origin: str | None, host: str | None) -> bool:
    """ASVS 4.4.1: the handshake's ``Origin`` must be ours or on the configured allow-list."""
    if not origin:
        return False
    if origin.rstrip("/") in settings().origin_allow_list:
        return True
    return bool(host) and urlsplit(origin).netloc == host


@blueprint.websocket("/ws/issuance/<session_id>")
async def issuance_updates(session_id: str) -> None:
    """Live session state: the stored state on connect, then every change (JSON snapshots).

    On connect the agent's record is read back too, in case a webhook was missed, unless the
    query says ``fresh=1``: the page that asks so was rendered with the session it had just
    created (its first socket opens a moment later; the sweeper still reads back sessions
    that stay quiet)."""
    if not origin_allowed(websocket.headers.get("Origin"), websocket.headers.get("Host")):
        await refuse("origin not allowed")
        return
    if not owned(session_id, session):
        await refuse("not your session")
        return
    svc = service()
    async with svc.broker.subscribe(topic(session_id), kind="issuance") as listener:
        row = await svc.get(session_id)
        if row is None:
            await refuse("no such session")
            return
        await websocket.accept()
        sent = row.version
        await websocket.send_json(row.snapshot())
        if row.state in FINAL_STATES:
            return
        note_listener(session_id)
        if svc.agent_pushes_events and websocket.args.get("fresh") != "1":
            services().supervisor.run(f"catch-up:{session_id}", lambda _: catch_up(svc, row))
        with WEBSOCKETS.labels("issuance").track_inprogress(), suppress(ShuttingDown):
            await until_shutdown(relay(listener, sent))


async def relay(listener: Listener, sent: int) -> None:
    """Send each snapshot newer than version ``sent`` until the session ends (then close
    normally) or the listener falls too far behind."""
    while True:
        try:
            snapshot = await listener.get()
        except Overflowed:
            await websocket.close(TRY_AGAIN_LATER, "too slow: reconnect")
            return
        if snapshot["version"] > sent:
            sent = snapshot["version"]
            await websocket.send_json(snapshot)
            if snapshot["state"] in FINAL_STATES:
                return  # the story is over: close normally


async def catch_up(svc: IssuanceService, row: IssuanceSession) -> None:
    """On (re)connect, read the record back from the agent in case a webhook was missed
    (``row``: the session as the socket just read it)."""
    try:
        await svc.reconcile(row)
    except AgentUnavailable as exc:
        log.info("catch-up of %s… skipped: %s", row.id[:8], exc)


def webhook_key_required(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """ACA-Py's webhooks carry the shared key in ``X-API-Key`` (``--webhook-url URL#KEY``)."""

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        expected = services().webhook_key
        given = request.headers.get("X-API-Key", "")
        if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
            raise Unauthenticated("Missing or wrong webhook key.")
        return await func(*args, **kwargs)

    setattr(wrapper, AUTH_ATTRIBUTE, "webhook")
    return wrapper


@blueprint.post("/webhooks/topic/<topic>/")
@blueprint.post("/webhooks/topic/<topic>")
@webhook_key_required
@validate_request(WebhookEvent)
@validate_response(WebhookAck)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 401)
@document_response(ErrorBody, 422)
async def agent_webhook(topic: str, data: WebhookEvent) -> WebhookAck:
    """ACA-Py event webhook; authenticated by the shared key in ``X-API-Key``.

    Acts on ``connections`` (state ``active``) and ``issue_credential_v2_0`` (``done``,
    ``abandoned``); every other topic is acknowledged.
    """
    svc = service()
    record = data.model_dump()
    if topic == "connections" and connection_is_active(record):
        connection = functools.partial(
            svc.connection_active,
            connection_id=data.connection_id,
            invitation_msg_id=data.invitation_msg_id,
        )
        if not await connection():
            services().supervisor.run(
                f"webhook:{data.connection_id or data.invitation_msg_id}",
                lambda _: connection(wait=EVENT_WAIT),
            )
    elif topic == "issue_credential_v2_0" and data.cred_ex_id:
        exchange = exchange_status(record)
        args = (data.cred_ex_id, exchange.status, exchange.detail)
        if not await svc.exchange_finished(*args):
            services().supervisor.run(
                f"webhook:{data.cred_ex_id}:{exchange.status}",
                lambda _: svc.exchange_finished(*args, wait=EVENT_WAIT),
            )
    return WebhookAck()
