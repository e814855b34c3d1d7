"""The one JSON error shape, and the one place that maps failures to HTTP statuses.

Every error answer, framework errors included, is::

    {"success": false, "error": "<code>", "message": "<human text>", "details": [...]?}

Domain errors (``issuer.errors``) get their status from :data:`STATUS`. Validation failures
of a request schema keep the originals' messages ("Email is required.") where the schema
declares them (``Input.when_missing`` / ``when_invalid``). A database that is down, restarting
or locked answers 503 with ``Retry-After``; anything else unexpected is logged and answered 500
without internals.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from quart import Quart, Response, current_app, g, jsonify, request
from quart_schema import RequestSchemaValidationError
from quart_schema.validation import (
    QUART_SCHEMA_QUERYSTRING_ATTRIBUTE,
    QUART_SCHEMA_REQUEST_ATTRIBUTE,
    DataSource,
    QuerystringValidationError,
)
from werkzeug.exceptions import HTTPException

from issuer import errors
from issuer.db import database_unavailable
from issuer.ops.tracking import report_unexpected
from issuer.schemas import Input, Refusal
from issuer.web.bodies import FORM_MODEL_ATTRIBUTE, NOT_JSON, is_form

log = logging.getLogger(__name__)

STATUS: dict[type[errors.DomainError], int] = {
    errors.Refused: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PreconditionFailed: 412,
    errors.PreconditionRequired: 428,
    errors.InvalidInput: 422,
    errors.Unavailable: 503,
}
GENERIC = Refusal("The request is not valid.")
UNAVAILABLE = "The database is busy or down; please try again."


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"success": False, "error": code, "message": message}
    if details:
        body["details"] = details
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def status_of(exc: errors.DomainError) -> int:
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 400


def domain_error_response(exc: errors.DomainError) -> Response:
    headers: dict[str, str] = {}
    if isinstance(exc, errors.Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="issuer"'
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    return error_response(status_of(exc), exc.code, exc.message, exc.details, headers)


def _code_for(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_").replace("'", "")


# ``app.extensions[HTML_ERRORS]``: renders the HTML error page of a page that asked for one
# (``g.html_errors``), from the error (or ``None``) and the status.
HTML_ERRORS = "issuer.html_errors"


async def as_html(exc: errors.DomainError | None, status: int) -> Any:
    render = current_app.extensions.get(HTML_ERRORS)
    if render is None or not g.get("html_errors"):
        return None
    return await render(exc, status)


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(errors.DomainError)
    async def handle_domain_error(exc: errors.DomainError) -> Any:
        return await as_html(exc, status_of(exc)) or domain_error_response(exc)

    @app.errorhandler(RequestSchemaValidationError)
    async def handle_validation_error(exc: RequestSchemaValidationError) -> Response:
        return await validation_response(app, exc)

    @app.errorhandler(HTTPException)
    async def handle_http_exception(exc: HTTPException) -> Any:
        status = exc.code or 500
        if status in (403, 404) and (page := await as_html(None, status)) is not None:
            return page
        # Keep the headers that carry meaning: Allow (405), Retry-After (429, 503).
        kept = {"allow", "retry-after"}
        headers = {k: v for k, v in exc.get_headers() if k.lower() in kept}
        return error_response(status, _code_for(exc), exc.description or exc.name, None, headers)

    @app.errorhandler(Exception)
    async def handle_unexpected(exc: Exception) -> Response:
        if database_unavailable(exc):
            log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
            return error_response(
                503, "database_unavailable", UNAVAILABLE, None, {"Retry-After": "2"}
            )
        log.exception("unhandled error")
        report_unexpected(exc)  # to Sentry and Rollbar, when configured
        return error_response(500, "internal_error", "Something went wrong on our side.")


def _schema_of(app: Quart, exc: RequestSchemaValidationError) -> tuple[type[Any] | None, bool]:
    """The model the failing request was validated with, and whether it was a JSON body."""
    view = app.view_functions.get(request.url_rule.endpoint) if request.url_rule else None
    if isinstance(exc, QuerystringValidationError):
        return getattr(view, QUART_SCHEMA_QUERYSTRING_ATTRIBUTE, None), False
    if is_form() and getattr(view, FORM_MODEL_ATTRIBUTE, None) is not None:
        return getattr(view, FORM_MODEL_ATTRIBUTE), False
    model, source = getattr(view, QUART_SCHEMA_REQUEST_ATTRIBUTE, (None, DataSource.JSON))
    return model, source == DataSource.JSON


async def validation_response(app: Quart, exc: RequestSchemaValidationError) -> Response:
    model, json_body = _schema_of(app, exc)
    if json_body:
        data = await request.get_json(silent=True)
        if not isinstance(data, dict) or not data:
            # 004: a missing, empty or non-object body.
            return error_response(400, "bad_request", NOT_JSON)
    error = exc.validation_error
    found: list[dict[str, Any]] = []
    if isinstance(error, ValidationError):
        found = [dict(e) for e in error.errors(include_url=False, include_context=False)]
    elif isinstance(error, TypeError | ValueError):
        found = [{"loc": (), "msg": str(error), "type": "value_error"}]
    refusal = legacy_refusal(model, found) or GENERIC
    details = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")} for e in found]
    return error_response(refusal.status, refusal.code, refusal.message, details or None)


def legacy_refusal(model: type[Any] | None, found: list[dict[str, Any]]) -> Refusal | None:
    """The refusal the schema declares for the first failing field that has one."""
    if not (isinstance(model, type) and issubclass(model, Input)):
        return None
    for error in found:
        loc, kind = error.get("loc") or (), str(error.get("type"))
        if not loc:  # a rule of the whole model, named by its error type
            refusal = model.when_missing.get(kind) or model.when_invalid.get(kind)
        elif kind == "missing" or error.get("input") in ("", None):
            refusal = model.when_missing.get(str(loc[0]))
        else:
            field = str(loc[0])
            refusal = model.when_invalid.get(f"{field}:{kind}") or model.when_invalid.get(field)
        if refusal is not None:
            return refusal
    return None
