"""Every route makes its decisions visibly: a docstring (the OpenAPI summary) and, for JSON
routes, a documented response; development-only routes exist only in development."""

from __future__ import annotations

from typing import Any

from quart import Quart

from issuer import create_app


def test_every_route_has_a_docstring(app: Quart) -> None:
    missing = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if rule.endpoint == "static" or view.__module__.startswith("quart_schema"):
            continue
        if not (view.__doc__ or "").strip():
            missing.append(rule.rule)
    assert missing == []


def test_json_routes_document_their_responses(app: Quart) -> None:
    from quart_schema.openapi import QUART_SCHEMA_HIDDEN_ATTRIBUTE
    from quart_schema.validation import QUART_SCHEMA_RESPONSE_ATTRIBUTE

    undocumented = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if (
            rule.endpoint == "static"
            or rule.websocket
            or getattr(view, QUART_SCHEMA_HIDDEN_ATTRIBUTE, False)
        ):
            continue
        if view.__module__.startswith("quart_schema"):
            continue
        if not getattr(view, QUART_SCHEMA_RESPONSE_ATTRIBUTE, None):
            undocumented.append(rule.rule)
    assert undocumented == []


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
