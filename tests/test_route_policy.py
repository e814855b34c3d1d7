"""Every route makes its decisions visibly: a docstring (the OpenAPI summary), a documented
response for JSON routes, a request schema (or an explicit "no body") for every unsafe method;
development-only routes exist only in development."""

from __future__ import annotations

from typing import Any

from quart import Quart
from quart_schema import document_response
from quart_schema.openapi import QUART_SCHEMA_HIDDEN_ATTRIBUTE
from quart_schema.validation import (
    QUART_SCHEMA_REQUEST_ATTRIBUTE,
    QUART_SCHEMA_RESPONSE_ATTRIBUTE,
)

from issuer import create_app
from issuer.schemas import Message
from issuer.web.bodies import NO_BODY_ATTRIBUTE
from issuer.web.openapi import PAGE_ATTRIBUTE

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def routes(app: Quart) -> list[tuple[Any, Any]]:
    found = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if rule.endpoint == "static" or view.__module__.startswith("quart_schema"):
            continue
        found.append((rule, view))
    return found


def violations(app: Quart) -> list[str]:
    """What the policy finds wrong with the app's routes (empty: all is well)."""
    problems = []
    for rule, view in routes(app):
        if not (view.__doc__ or "").strip():
            problems.append(f"{rule.rule}: no docstring")
        if rule.websocket or getattr(view, QUART_SCHEMA_HIDDEN_ATTRIBUTE, False):
            continue
        if not (
            getattr(view, QUART_SCHEMA_RESPONSE_ATTRIBUTE, None)
            or getattr(view, PAGE_ATTRIBUTE, None)
        ):
            problems.append(f"{rule.rule}: no documented response")
        takes_body = getattr(view, QUART_SCHEMA_REQUEST_ATTRIBUTE, None) is not None
        if UNSAFE & set(rule.methods or ()) and not (
            takes_body or getattr(view, NO_BODY_ATTRIBUTE, False)
        ):
            problems.append(f"{rule.rule}: body not validated by a request schema")
    return problems


def test_every_route_follows_the_policy(app: Quart) -> None:
    assert violations(app) == []


def test_the_policy_catches_a_body_read_by_hand(app: Quart) -> None:
    """The check above can fail: a POST route that reads its body without a schema."""

    @document_response(Message)
    async def sloppy() -> Message:
        """Reads ``request.json`` itself."""
        return Message(message="ok")

    app.add_url_rule("/sloppy", "sloppy", sloppy, methods=["POST"])
    assert violations(app) == ["/sloppy: body not validated by a request schema"]


async def test_test_wallet_exists_only_in_development(overrides: dict[str, Any]) -> None:
    for env, expected in (("production", 404), ("test", 404), ("development", 403)):
        unreachable = "http://127.0.0.1:9"  # never called: only the route table matters here
        app = create_app(
            {
                **overrides,
                "env": env,
                "agent": "rest",
                "rest_connection_url": unreachable,
                "rest_issuer_url": unreachable,
                "test_wallet_admin_url": unreachable,
            }
        )
        routes = {rule.rule for rule in app.url_map.iter_rules()}
        assert ("/dev/test-wallet" in routes) is (env == "development")
        async with app.test_app() as test_app:
            response = await test_app.test_client().post("/dev/test-wallet")
            assert response.status_code == expected  # 403: no CSRF token
