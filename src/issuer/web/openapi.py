"""The OpenAPI document says exactly what the server accepts and answers.

quart-schema's provider, plus what it leaves out:

- request bodies that are validated are *required* (an empty or missing body is refused);
- path parameters carry their converter's limits (``string(maxlength=200)``, no ``/``;
  ``public_id``: 32 hex digits);
- operation ids are unique per method and path (aliases such as ``/auth/login`` share a view);
- the answers every such route can give: 400 (not JSON), 413 (over 64 KiB), 422 (the schema),
  429 with ``Retry-After`` (rate limited), 409/422 for a reused ``Idempotency-Key``;
- the credentials a route takes (``bearer``: an access token; ``cookie``: the browser session);
- the HTML pages (``@html_page``), as ``text/html`` answers of their ``GET``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from quart_rate_limiter import QUART_RATE_LIMITER_LIMITS_ATTRIBUTE
from quart_schema import OpenAPIProvider
from quart_schema.extension import SecuritySchemeInput
from quart_schema.openapi import (
    QUART_SCHEMA_HIDDEN_ATTRIBUTE,
    APIKeySecurityScheme,
    HttpSecurityScheme,
)
from quart_schema.validation import (
    QUART_SCHEMA_HEADERS_ATTRIBUTE,
    QUART_SCHEMA_QUERYSTRING_ATTRIBUTE,
    QUART_SCHEMA_REQUEST_ATTRIBUTE,
)
from werkzeug.routing import Rule
from werkzeug.routing.converters import AnyConverter, BaseConverter, UnicodeConverter

from issuer.schemas import ErrorBody
from issuer.web.application import ProviderConverter, PublicIdConverter, RowIdConverter

# "token" (an access token), "optional_token" (anonymous, or a token that changes the call),
# "login" (a token or the cookie), "webhook" (the webhook key)
AUTH_ATTRIBUTE = "_issuer_auth"
PAGE_ATTRIBUTE = "_issuer_html_page"
ERROR = {"$ref": "#/components/schemas/ErrorBody"}
# "bearer": an access token from /login (004's clients may send ``Basic <token>``);
# "cookie": the browser session of the pages (unsafe methods also need X-CSRF-Token);
# "webhook": the key ACA-Py sends with its webhooks.
SECURITY_SCHEMES: dict[str, SecuritySchemeInput] = {
    "bearer": HttpSecurityScheme(scheme="bearer", bearer_format="JWT"),
    "cookie": APIKeySecurityScheme(name="issuer_auth", in_="cookie"),
    "webhook": APIKeySecurityScheme(name="X-API-Key", in_="header"),
    # Pusher's HTTP API: the query's auth_key, auth_timestamp, auth_version, body_md5 and
    # auth_signature (HMAC-SHA256 with the app secret).
    "pusher_signature": APIKeySecurityScheme(name="auth_signature", in_="query"),
}
F = TypeVar("F", bound=Callable[..., Any])


def html_page(*statuses: int) -> Callable[[F], F]:
    """Document a ``GET`` route as an HTML page answering ``statuses`` (200 unless given)."""

    def decorator(func: F) -> F:
        setattr(func, PAGE_ATTRIBUTE, statuses or (200,))
        return func

    return decorator


def error(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": ERROR}},
    }
    if retry_after:
        answer["headers"] = {
            "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
        }
    return answer


class IssuerOpenAPI(OpenAPIProvider):
    def schema(self) -> dict[str, Any]:
        document = super().schema()
        # The answers added below refer to the one error shape by reference.
        document["components"]["schemas"]["ErrorBody"] = ErrorBody.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        return document

    def generate_rules(self) -> Any:
        for rule in self._app.url_map.iter_rules():
            func = self._app.view_functions[rule.endpoint]
            if rule.websocket or rule.endpoint == "static":
                continue
            if getattr(func, PAGE_ATTRIBUTE, None) or not getattr(
                func, QUART_SCHEMA_HIDDEN_ATTRIBUTE, False
            ):
                yield rule

    def build_path_parameter(self, name: str, converter: BaseConverter) -> dict[str, Any]:
        parameter = super().build_path_parameter(name, converter)
        if isinstance(converter, UnicodeConverter) and not isinstance(converter, AnyConverter):
            # werkzeug's string converter: one path segment of minlength..maxlength characters.
            limits = re.fullmatch(r"\[\^/\]\{(\d+),(\d*)\}", converter.regex)
            schema: dict[str, Any] = {"type": "string", "pattern": "^[^/]+$"}
            if limits:
                schema["minLength"] = int(limits.group(1))
                if limits.group(2):
                    schema["maxLength"] = int(limits.group(2))
            parameter["schema"] = schema
        elif isinstance(converter, PublicIdConverter | ProviderConverter):
            parameter["schema"] = {"type": "string", "pattern": f"^{converter.regex}$"}
        elif isinstance(converter, RowIdConverter):
            parameter["schema"] = {"type": "integer", "minimum": 0, "maximum": 999_999_999}
        return parameter

    def build_request_body(self, model: Any, source: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        body, components = super().build_request_body(model, source)
        body["required"] = True
        return body, components

    def operation_id(self, method: str, path: str, func: Callable[..., Any]) -> str:
        # "/check-connection/" and "/check_connection" are different operations of one view.
        slug = re.sub(r"\{(\w+)\}", r"by_\1", path).replace("/", "_")[1:] or "root"
        return f"{method.lower()}_{slug}"

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        func = self._app.view_functions[rule.endpoint]
        for operations in paths.values():
            for method, operation in list(operations.items()):
                operations[method] = self._complete(operation, method, func)
        return paths, components

    def _complete(self, operation: dict[str, Any], method: str, func: Any) -> dict[str, Any]:
        operation = {**operation, "responses": dict(operation["responses"])}
        responses = operation["responses"]
        page = getattr(func, PAGE_ATTRIBUTE, None)
        if page and method == "get":
            for status in page:
                description = "A redirect" if 300 <= status < 400 else "The HTML page"
                responses[status] = {
                    "description": description,
                    "content": {"text/html": {"schema": {"type": "string"}}},
                }
        if any(p.get("in") == "path" for p in operation.get("parameters", [])):
            no_route = error("No such route (a path parameter out of its limits)")
            if 404 in responses and page and method == "get":  # the page's 404, or no route
                responses[404] = {
                    "description": "Not found: the HTML page, or (no such route) the JSON error",
                    "content": {**responses[404]["content"], **no_route["content"]},
                }
            responses.setdefault(404, no_route)
        body = getattr(func, QUART_SCHEMA_REQUEST_ATTRIBUTE, None)
        if body is not None:
            if body[1].name == "JSON":
                responses.setdefault(400, error("The body is not a JSON object"))
            responses.setdefault(413, error("The body is over 64 KiB"))
        if body is not None or getattr(func, QUART_SCHEMA_QUERYSTRING_ATTRIBUTE, None):
            responses.setdefault(422, error("The request does not match its schema"))
        headers = getattr(func, QUART_SCHEMA_HEADERS_ATTRIBUTE, None)
        if headers is not None and "idempotency_key" in getattr(headers, "model_fields", {}):
            responses.setdefault(400, error("The Idempotency-Key is malformed"))
            responses.setdefault(409, error("A request with this key is still running"))
            responses.setdefault(422, error("The key was used for another request"))
        if getattr(func, QUART_RATE_LIMITER_LIMITS_ATTRIBUTE, None):
            responses.setdefault(429, error("Too many requests", retry_after=True))
        auth = getattr(func, AUTH_ATTRIBUTE, None)
        if auth is not None:
            operation["security"] = {
                "token": [{"bearer": []}],
                # Anonymous, or an access token that changes what the call does (linking).
                "optional_token": [{}, {"bearer": []}],
                "login": [{"bearer": []}, {"cookie": []}],
                "webhook": [{"webhook": []}],
                "pusher": [{"pusher_signature": []}],
            }[auth]
            responses.setdefault(401, error("No valid credentials"))
        return operation
