"""Every accounts route is in /openapi.json with a summary, its request schema and its errors."""

from __future__ import annotations

from typing import Any

import pytest

from tests.accounts.conftest import running

# (method, path): (has a JSON body, the error statuses it must document)
ROUTES: dict[tuple[str, str], tuple[bool, set[int]]] = {
    ("post", "/register"): (True, {400, 409, 422, 429}),
    ("post", "/auth/register"): (True, {400, 409, 422, 429}),
    ("post", "/signup"): (True, {400, 422, 429}),
    ("post", "/login"): (True, {400, 401, 422, 429}),
    ("post", "/auth/login"): (True, {400, 401, 422, 429}),
    ("post", "/token/refresh"): (True, {400, 401, 422, 429}),
    ("post", "/logout"): (False, {401, 403}),
    ("post", "/auth/logout"): (False, {401, 403}),
    ("get", "/sessions"): (False, {401}),
    ("delete", "/sessions/{session_id}"): (False, {401, 403, 404}),
    ("post", "/update_password"): (True, {400, 401, 403, 422, 429}),
    ("get", "/auth/status"): (False, {401}),
    ("post", "/generate_array"): (True, {400, 401, 422, 429}),
    ("post", "/resend_confirmation"): (True, {400, 422, 429}),
    ("post", "/forgot_password"): (True, {400, 422, 429}),
    ("post", "/reset_password/{token}/{uidb64}"): (True, {400, 422, 429}),
    ("post", "/verify/{token}/{uidb64}"): (False, {400, 429}),
}


@pytest.fixture(scope="module")
async def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The document does not depend on the database: built once, from a throwaway app."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('openapi') / 'unused.db'}"
    overrides = {"env": "test", "database_url": url, "agent": None, "sweep_interval": 3600}
    async with running(overrides, clean=False) as app:
        response = await app.test_client().get("/openapi.json")
        assert response.status_code == 200
        return await response.get_json()  # type: ignore[no-any-return]


def schema_of(document: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
    schema = content["application/json"]["schema"]
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema  # type: ignore[no-any-return]


@pytest.mark.parametrize(("method", "path"), list(ROUTES), ids=lambda v: str(v))
def test_route_is_documented(document: dict[str, Any], method: str, path: str) -> None:
    has_body, errors = ROUTES[(method, path)]
    operation = document["paths"][path][method]
    assert operation.get("summary", "").strip(), "no summary"
    if has_body:
        schema = schema_of(document, operation["requestBody"]["content"])
        assert schema.get("properties"), schema
    else:
        assert "requestBody" not in operation
    responses = operation["responses"]
    successes = {int(code) for code in responses if code.startswith("2")}
    assert successes, responses
    for code in successes:
        assert schema_of(document, responses[str(code)]["content"]), code
    missing = errors - {int(code) for code in responses}
    assert not missing, f"undocumented error responses {sorted(missing)}"
    for code in errors:
        schema = schema_of(document, responses[str(code)]["content"])
        assert {"error", "message"} <= set(schema["required"]), (code, schema)


def test_html_pages_are_documented_as_html(document: dict[str, Any]) -> None:
    """The pages are what the server serves at those paths (a GET of /login answers a page, not
    405): documented as text/html answers, never as JSON."""
    for path in ("/dashboard", "/dashboard/{username}", "/login", "/register", "/docs"):
        get = document["paths"][path]["get"]
        assert "requestBody" not in get
        assert get["responses"]["200"]["content"] == {"text/html": {"schema": {"type": "string"}}}
    assert set(document["paths"]["/dashboard"]["get"]["responses"]) == {"200", "302"}
