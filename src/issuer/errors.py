"""The one JSON error shape, and the domain error every layer raises.

Every error answer, framework errors included, is::

    {"success": false, "error": "<code>", "message": "<human text>", "details": [...]?}

``message`` keeps the legacy text where the originals had one (CONTRACTS.md), so old clients that
read ``message`` keep working; ``error`` is a stable machine-readable code.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel
from quart import Quart, Response, jsonify
from quart_schema import RequestSchemaValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class APIError(Exception):
    """A failure to report to the client with ``status`` (4xx/5xx), ``code`` and ``message``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> Response:
    body: dict[str, Any] = {"success": False, "error": code, "message": message}
    if details is not None:
        body["details"] = details
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _code_for(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_").replace("'", "")


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(APIError)
    async def handle_api_error(exc: APIError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.errorhandler(RequestSchemaValidationError)
    async def handle_validation_error(exc: RequestSchemaValidationError) -> Response:
        details = _validation_details(exc.validation_error)
        return error_response(422, "validation_error", "The request is not valid.", details)

    @app.errorhandler(HTTPException)
    async def handle_http_exception(exc: HTTPException) -> Response:
        status = exc.code or 500
        # Keep the headers that carry meaning: Allow (405), Retry-After (429, 503).
        kept = {"allow", "retry-after"}
        headers = {k: v for k, v in exc.get_headers() if k.lower() in kept}
        return error_response(status, _code_for(exc), exc.description or exc.name, None, headers)

    @app.errorhandler(SQLAlchemyTimeout)
    async def handle_pool_exhausted(exc: SQLAlchemyTimeout) -> Response:
        # Every pooled connection stayed busy past the pool timeout: overload, not a bug.
        log.warning("database pool exhausted: %s", exc)
        return error_response(
            503, "busy", "The server is busy; please try again.", None, {"Retry-After": "2"}
        )

    @app.errorhandler(OperationalError)
    @app.errorhandler(ConnectionError)
    async def handle_database_unavailable(exc: Exception) -> Response:
        # The database is down (asyncpg raises the socket's ConnectionRefusedError as it is) or
        # locked (SQLite under a write burst): try again shortly.
        log.warning("database unavailable: %s", getattr(exc, "orig", exc))
        return error_response(
            503, "database_unavailable", "The database is busy or down; please try again.",
            None, {"Retry-After": "2"},
        )  # fmt: skip

    @app.errorhandler(Exception)
    async def handle_unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "Something went wrong on our side.")


def _validation_details(error: Any) -> list[dict[str, Any]] | None:
    errors = getattr(error, "errors", None)
    if callable(errors):
        return [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")}
            for e in errors(include_url=False, include_input=False)
        ]
    if isinstance(error, TypeError | ValueError):
        return [{"loc": [], "msg": str(error)}]
    return None


class ErrorBody(BaseModel):
    """The one error shape: ``error`` is a stable code, ``message`` human text."""

    success: bool = False
    error: str
    message: str
    details: Any | None = None
