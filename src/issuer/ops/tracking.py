"""Optional error tracking through the vendors' own SDKs: Sentry's protocol (``sentry-sdk``, for
Sentry, self-hosted Sentry and GlitchTip) and Rollbar (``rollbar``, pyrollbar).

Each tracker is on only when configured (``ISSUER_SENTRY_DSN``, ``ISSUER_ROLLBAR_ACCESS_TOKEN``);
with neither, :func:`register_error_tracking` returns at once: no SDK is imported or initialised
and requests pay nothing. What is reported is the exception that becomes a 500
(``issuer.web.errors``' ``handle_unexpected`` calls :func:`report_unexpected`), once per
tracker, tagged with the request id, the route *pattern* (never the path, which may carry a
reset token) and the release.

Nothing secret leaves the process: no local variables, no request body, cookies, query string
or path, only an allow-list of request headers, no SQL parameters in exception messages, and
both SDKs' key scrubbers extended with this app's secret names (ASVS 16.3.1, 16.5.1).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from quart import Quart, current_app, has_request_context, has_websocket_context, request, websocket

from issuer.config import Settings
from issuer.logs import request_id
from issuer.release import Release

if TYPE_CHECKING:
    from sentry_sdk.client import BaseClient

log = logging.getLogger(__name__)

# ``app.extensions[TRACKING]``: the app's :class:`Tracker`, present only when one is configured.
TRACKING = "issuer.error_tracking"
UNMATCHED = "<unmatched>"
# Field names scrubbed wherever they appear in a report (both SDKs match whole key names).
SECRET_KEYS = (
    "password", "current_password", "new_password", "old_password", "password_confirmation",
    "token", "access_token", "refresh_token", "mfa_token", "challenge_token", "reset_token",
    "verification_token", "verify_token", "id_token", "uidb64", "code", "totp", "otp",
    "recovery_code", "recovery_codes", "client_secret", "app_secret", "secret", "secret_key",
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api_key",
    "webhook_api_key", "x-webhook-key", "session", "issuer_session", "issuer_auth",
)  # fmt: skip
# The only request headers a report carries (Referer and Origin may hold a path with a token).
KEPT_HEADERS = frozenset(
    {"accept", "accept-language", "content-length", "content-type", "host", "user-agent"}
)
# SQLAlchemy's messages end with the statement's bound values: hashed tokens, emails, codes.
SQL_PARAMETERS = re.compile(r"^\[parameters: .*$", re.MULTILINE)
# Rollbar items waiting for their worker thread; past this many, new ones are dropped.
MAX_PENDING = 100


@dataclass(frozen=True)
class Occurrence:
    """What a report says about the request, read while its context exists."""

    route: str
    method: str
    request_id: str
    headers: dict[str, str]


class Reporter(Protocol):
    def report(self, exc: BaseException, occurrence: Occurrence) -> None: ...

    async def flush(self, within: float) -> None: ...


@dataclass
class Tracker:
    """The configured reporters of one app."""

    reporters: list[Reporter]

    def report(self, exc: BaseException) -> None:
        occurrence = current_occurrence()
        for reporter in self.reporters:
            try:
                reporter.report(exc, occurrence)
            except Exception:  # a tracker must never turn a 500 into a crash
                log.exception("error tracking failed")

    async def flush(self, within: float = 2.0) -> None:
        """Wait until what was reported is sent, at most ``within`` seconds per tracker."""
        for reporter in self.reporters:
            await reporter.flush(within)


def default_release(release: Release) -> str:
    """``issuer@<version>``, plus ``+<git revision>`` when the build knows it (PEP 440 local)."""
    return f"issuer@{release.name}"


def register_error_tracking(app: Quart, settings: Settings, build: Release) -> None:
    """Start the configured trackers for ``app``; with none configured, do nothing at all."""
    if not (settings.sentry_dsn or settings.rollbar_access_token):
        return
    release = settings.sentry_release or default_release(build)
    reporters: list[Reporter] = []
    if settings.sentry_dsn:
        reporters.append(SentryReporter(settings, release))
    if settings.rollbar_access_token:
        reporters.append(RollbarReporter(settings, release))
    tracker = Tracker(reporters)
    app.extensions[TRACKING] = tracker
    app.after_serving(tracker.flush)


def report_unexpected(exc: BaseException) -> None:
    """Send ``exc`` (about to become a 500) to every configured tracker; call it once."""
    tracker: Tracker | None = current_app.extensions.get(TRACKING)
    if tracker is not None:
        tracker.report(exc)


def current_occurrence() -> Occurrence:
    """The request (or websocket) being answered; ``handle_unexpected`` runs in its context."""
    source: Any = request if has_request_context() else websocket
    if not (has_request_context() or has_websocket_context()):
        return Occurrence(UNMATCHED, "", request_id.get(), {})
    rule = source.url_rule
    return Occurrence(
        route=rule.rule if rule is not None else UNMATCHED,
        method=source.method,
        request_id=request_id.get(),
        headers=kept_headers(dict(source.headers)),
    )


def kept_headers(headers: Any) -> dict[str, str]:
    """The allow-listed entries of ``headers``, a mapping of names to values."""
    if not isinstance(headers, dict):
        return {}
    return {
        k: v for k, v in headers.items() if isinstance(v, str) and str(k).lower() in KEPT_HEADERS
    }


def hide_sql_parameters(message: str) -> str:
    return SQL_PARAMETERS.sub("[parameters: hidden]", message)


# --- Sentry --------------------------------------------------------------------------------


class SentryReporter:
    """One explicit ``capture_exception`` per 500. The Quart integration adds per-request scopes,
    the transaction name (the route pattern) and tracing; it reports only exceptions no error
    handler took (``got_request_exception``), never the ones ``handle_unexpected`` handles, and
    the dedupe integration drops a second capture of one exception object."""

    def __init__(self, settings: Settings, release: str) -> None:
        import sentry_sdk
        from sentry_sdk.integrations.dedupe import DedupeIntegration
        from sentry_sdk.integrations.quart import QuartIntegration
        from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

        sentry_sdk.init(
            dsn=settings.sentry_dsn,
            environment=settings.sentry_environment or settings.env.value,
            release=release,
            sample_rate=settings.sentry_sample_rate,
            traces_sample_rate=settings.sentry_traces_sample_rate or None,
            # send_default_pii stays off by being left out: sentry-sdk 2.75 deprecates passing
            # it, and its replacement (data_collection) would switch the event scrubber off.
            include_local_variables=False,
            max_request_body_size="never",
            # No default integrations: logging would report log.exception a second time, and
            # the HTTP clients' breadcrumbs carry URLs with provider tokens in their queries.
            default_integrations=False,
            auto_enabling_integrations=False,
            integrations=[QuartIntegration(transaction_style="url"), DedupeIntegration()],
            max_breadcrumbs=0,
            event_scrubber=EventScrubber(
                denylist=[*DEFAULT_DENYLIST, *SECRET_KEYS], recursive=True
            ),
            before_send=scrub_sentry_event,  # type: ignore[arg-type]
            before_send_transaction=scrub_sentry_event,  # type: ignore[arg-type]
        )
        self._client: BaseClient = sentry_sdk.get_client()
        self._capture = sentry_sdk.capture_exception

    def report(self, exc: BaseException, occurrence: Occurrence) -> None:
        self._capture(exc, tags={"request_id": occurrence.request_id, "route": occurrence.route})

    async def flush(self, within: float) -> None:
        # The SDK's flush blocks until its sending thread has drained its queue.
        await asyncio.to_thread(self._client.flush, within)


def scrub_sentry_event(event: dict[str, Any], _hint: dict[str, Any]) -> dict[str, Any]:
    """Sentry's ``before_send`` and ``before_send_transaction``: rebuild the request from the
    allow-list, name it by its route pattern, hide SQL parameters, drop user and breadcrumbs.
    An exception raised here makes the SDK drop the event (it fails closed)."""
    route = sentry_route(event)
    given = event.get("request") or {}
    event["request"] = {
        "method": given.get("method"),
        "url": route,
        "headers": kept_headers(given.get("headers")),
    }
    event["transaction"] = route
    for name in ("user", "breadcrumbs", "extra"):
        event.pop(name, None)
    for exception in (event.get("exception") or {}).get("values") or ():
        if isinstance(exception.get("value"), str):
            exception["value"] = hide_sql_parameters(exception["value"])
        for frame in (exception.get("stacktrace") or {}).get("frames") or ():
            frame.pop("vars", None)
    return event


def sentry_route(event: dict[str, Any]) -> str:
    """Our ``route`` tag (errors), else the transaction name when it is a route pattern."""
    tags = event.get("tags") or {}
    if isinstance(tags.get("route"), str):
        return str(tags["route"])
    if (event.get("transaction_info") or {}).get("source") == "route":
        return str(event.get("transaction") or UNMATCHED)
    return UNMATCHED  # the raw path, which may carry a token


# --- Rollbar -------------------------------------------------------------------------------


class RollbarReporter:
    """pyrollbar's ``blocking`` transport, run in a worker thread by a task this reporter keeps
    (so :meth:`flush` can await it). Its ``httpx``/``async`` handlers post from a task nobody
    holds a reference to, which cannot be awaited at shutdown."""

    def __init__(self, settings: Settings, release: str) -> None:
        import rollbar
        from rollbar.lib import events

        environment = settings.rollbar_environment or settings.env.value
        rollbar.init(
            settings.rollbar_access_token,
            environment,
            # Not "code": pyrollbar names each frame's source line so.
            scrub_fields=[key for key in SECRET_KEYS if key != "code"],
            handler="blocking",
            endpoint=settings.rollbar_endpoint,
            code_version=release,
            locals={"enabled": False},
            include_request_body=False,
            capture_ip=False,
            capture_email=False,
            capture_username=False,
            allow_logging_basic_config=False,  # our handlers are configured already
            log_payload_on_error=False,
            suppress_reinit_warning=True,
        )
        # pyrollbar 1.x keeps the first init's token and environment; SETTINGS is its
        # documented place to override them (a second app in one process: tests).
        rollbar.SETTINGS["access_token"] = settings.rollbar_access_token
        rollbar.SETTINGS["environment"] = environment
        events.add_payload_handler(scrub_rollbar_payload)  # once: it is keyed by identity
        self._report = rollbar.report_exc_info
        self._pending: set[asyncio.Task[None]] = set()

    def report(self, exc: BaseException, occurrence: Occurrence) -> None:
        if len(self._pending) >= MAX_PENDING:
            log.warning("rollbar: %d items in flight, dropping one", len(self._pending))
            return
        payload = {
            "context": occurrence.route,
            "request": {
                "method": occurrence.method,
                "url": occurrence.route,
                "headers": occurrence.headers,
            },
            "custom": {"request_id": occurrence.request_id, "route": occurrence.route},
        }
        exc_info = (type(exc), exc, exc.__traceback__)
        task = asyncio.create_task(asyncio.to_thread(self._report, exc_info, None, None, payload))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def flush(self, within: float) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=within)


def scrub_rollbar_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """pyrollbar's payload handler, after its own key scrubbing: keep the request to the
    allow-list, drop the process's arguments and any frame data, hide SQL parameters."""
    data = payload.get("data") or {}
    given = data.get("request") or {}
    data["request"] = {
        "method": given.get("method"),
        "url": given.get("url", UNMATCHED),
        "headers": kept_headers(given.get("headers")),
    }
    data.pop("person", None)
    (data.get("server") or {}).pop("argv", None)
    for trace in rollbar_traces(data.get("body") or {}):
        exception = trace.get("exception") or {}
        if isinstance(exception.get("message"), str):
            exception["message"] = hide_sql_parameters(exception["message"])
        for frame in trace.get("frames") or ():
            for name in ("locals", "args", "kwargs", "argspec", "varargspec", "keywordspec"):
                frame.pop(name, None)
    return payload


def rollbar_traces(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if isinstance(body.get("trace"), dict):
        yield body["trace"]
    yield from (t for t in body.get("trace_chain") or () if isinstance(t, dict))
