"""Request bodies: quart-schema validates them; these helpers cover what it leaves open.

- :class:`IssuerRequest` turns a body that is not JSON (bad syntax, invalid UTF-8, nesting
  deeper than the parser allows) into 004's 400 ``"Please use 'application/json'"`` instead of
  a bare 400 or a 500.
- :func:`validate_json_or_form` lets one route take a JSON body (API clients) or a form post
  (the HTML pages of 002), each validated by quart-schema's ``validate_request`` with its own
  model; the OpenAPI document describes the JSON body.
- :func:`takes_no_body` marks the unsafe routes that read no body, so the route-policy test can
  tell them from routes that forgot their schema.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from quart import Request, request
from quart.routing import QuartRule
from quart_schema import DataSource, validate_request
from quart_schema.validation import QUART_SCHEMA_REQUEST_ATTRIBUTE

from issuer.errors import Refused
from issuer.web.observe import ROUTE

NOT_JSON = "Please use 'application/json'"
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
NO_BODY_ATTRIBUTE = "_issuer_takes_no_body"
FORM_MODEL_ATTRIBUTE = "_issuer_form_model"
F = TypeVar("F", bound=Callable[..., Any])


# Routes that take a file upload: a profile picture of up to 2 MB, and the multipart around it.
UPLOAD_PATHS = frozenset({"/api/me/picture", "/account"})
UPLOAD_LIMIT = 2 * 1024 * 1024 + 64 * 1024


class IssuerRequest(Request):
    _url_rule: QuartRule | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Every other body stays within MAX_CONTENT_LENGTH (64 KiB).
        if len(args) > 2 and args[2] in UPLOAD_PATHS and args[0] in ("POST", "PUT"):
            kwargs["max_content_length"] = UPLOAD_LIMIT
        super().__init__(*args, **kwargs)

    @property
    def url_rule(self) -> QuartRule | None:
        return self._url_rule

    @url_rule.setter
    def url_rule(self, rule: QuartRule | None) -> None:
        # The route pattern for the access log and the metrics (issuer.web.observe), which see
        # the ASGI scope only.
        self._url_rule = rule
        if rule is not None:
            cast(dict[str, Any], self.scope)[ROUTE] = rule.rule

    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        try:
            return await super().get_json(force, silent, cache)
        except (RecursionError, UnicodeDecodeError):  # nesting too deep, invalid UTF-8
            if silent:
                return None
            raise Refused(NOT_JSON) from None

    def on_json_loading_failed(self, error: Exception) -> Any:
        raise Refused(NOT_JSON) from error


def is_form() -> bool:
    return request.mimetype in FORM_TYPES


def validate_json_or_form(json_model: type[Any], form_model: type[Any]) -> Callable[[F], F]:
    """``validate_request(json_model)`` for JSON bodies, ``validate_request(form_model,
    source=FORM)`` for form posts; the view gets ``data`` as one of the two models."""
    by_json = validate_request(json_model)
    by_form = validate_request(form_model, source=DataSource.FORM)

    def decorator(func: F) -> F:
        json_view, form_view = by_json(func), by_form(func)

        @wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            return await (form_view if is_form() else json_view)(*args, **kwargs)

        setattr(wrapper, QUART_SCHEMA_REQUEST_ATTRIBUTE, (json_model, DataSource.JSON))
        setattr(wrapper, FORM_MODEL_ATTRIBUTE, form_model)
        return wrapper  # type: ignore[return-value]

    return decorator


def takes_no_body(func: F) -> F:
    """Mark an unsafe route that reads no request body (its input is the path or the caller)."""
    setattr(func, NO_BODY_ATTRIBUTE, True)
    return func
