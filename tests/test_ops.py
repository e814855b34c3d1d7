"""Operations: health, readiness, metrics, request ids, configuration guards."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from issuer import create_app
from issuer.config import Settings
from tests.fakes import FakeAgent


async def test_liveness_and_readiness(client: Any, fake_agent: FakeAgent) -> None:
    health = await (await client.get("/health")).get_json()
    assert health["status"] == "ok" and set(health) == {"status", "version", "revision"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert await ready.get_json() == {"status": "ok", "database": "ok", "agent": "ok"}
    fake_agent.down = True
    ready = await client.get("/health/ready")
    assert ready.status_code == 503 and (await ready.get_json())["agent"] == "down"


async def test_readiness_reports_a_dead_database(overrides: dict[str, Any]) -> None:
    dead = {**overrides, "database_url": "postgresql+asyncpg://nobody@127.0.0.1:1/x"}
    app = create_app(dead, agent=FakeAgent())
    async with app.test_app() as test_app:
        response = await test_app.test_client().get("/health/ready")
        assert response.status_code == 503
        assert (await response.get_json())["database"] == "down"


async def test_request_id_is_echoed_or_made(client: Any) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    response = await client.get("/health", headers={"X-Request-ID": "bad id!"})
    assert response.headers["X-Request-ID"] not in ("", "bad id!")


async def test_metrics_expose_request_latency_and_can_require_a_token(
    client: Any, overrides: dict[str, Any]
) -> None:
    await client.get("/health")
    body = await (await client.get("/metrics")).get_data(as_text=True)
    assert 'issuer_http_request_duration_seconds_count{method="GET",route="/health"' in body
    app = create_app({**overrides, "metrics_token": "t0ken"})
    async with app.test_app() as test_app:
        guarded = test_app.test_client()
        assert (await guarded.get("/metrics")).status_code == 401
        ok = await guarded.get("/metrics", headers={"Authorization": "Bearer t0ken"})
        assert ok.status_code == 200


def test_production_refuses_a_missing_or_placeholder_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ISSUER_SECRET_KEY", raising=False)
    for secret in ("", "change-me"):
        with pytest.raises(ValidationError, match="ISSUER_SECRET_KEY"):
            Settings(env="production", secret_key=secret, _env_file=None)
    assert Settings(env="development", secret_key="", _env_file=None).secret_key  # generated


def test_port_and_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setenv("ISSUER_DEFAULT_LANGUAGE", "fr")
    settings = Settings(env="test", _env_file=None)
    assert settings.port == 8123 and settings.default_language == "fr"


async def test_openapi_documents_the_json_routes(client: Any) -> None:
    spec = await (await client.get("/openapi.json")).get_json()
    for path in ("/name", "/check_connection/", "/loading/", "/health", "/health/ready"):
        assert path in spec["paths"], path


async def test_access_log_names_routes_not_paths_with_secrets(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cr3t-token-value"
    with caplog.at_level("INFO", logger="issuer.access"):
        await client.get(f"/reset_password/{secret}/dWlk")
        await client.get("/health")
    lines = [r.getMessage() for r in caplog.records if r.name == "issuer.access"]
    assert any("/reset_password/<" in line and " 200 " in line for line in lines)
    assert any(line.startswith("GET /health 200") for line in lines)
    assert all(secret not in line for line in caplog.text.splitlines())


def test_production_refuses_argon2_below_the_owasp_floor() -> None:
    strong = {"env": "production", "secret_key": "k" * 40, "_env_file": None}
    with pytest.raises(ValidationError, match="OWASP"):
        Settings(**strong, argon2_time_cost=1)
    with pytest.raises(ValidationError, match="OWASP"):
        Settings(**strong, argon2_memory_kib=8 * 1024)
    assert Settings(**strong).argon2_memory_kib == 19 * 1024


async def test_a_dead_database_answers_503_not_500(overrides: dict[str, Any]) -> None:
    app = create_app({**overrides, "database_url": "postgresql+asyncpg://nobody@127.0.0.1:1/x"})
    async with app.test_app() as test_app:
        client = test_app.test_client()
        response = await client.post("/register", json={"username": "ada", "password": "x" * 12})
        assert response.status_code == 503
        body = await response.get_json()
        assert body["error"] == "database_unavailable" and response.headers["Retry-After"]


async def test_the_openapi_document_is_valid_openapi_3_1(client: Any) -> None:
    """Every reference resolves and every object is where the specification allows it."""
    from openapi_spec_validator import validate

    document = await (await client.get("/openapi.json")).get_json()
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_an_empty_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ISSUER_AGENT=`` (as compose files and shells write "nothing") is the default."""
    monkeypatch.setenv("ISSUER_AGENT", "")
    monkeypatch.setenv("ISSUER_LOGIN_LIMIT_PER_IP", "")
    settings = Settings(env="test", _env_file=None)
    assert settings.agent is None and settings.login_limit_per_ip == 20


async def test_health_is_answered_before_the_framework_like_any_answer(client: Any) -> None:
    """``GET /health`` skips Quart (issuer.web.observe) but answers as the route would: the
    same JSON, the security headers, the caller's request id; ``HEAD`` reaches the route."""
    answer = await client.get("/health", headers={"X-Request-ID": "probe-7"})
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    body = await answer.get_json()
    assert body["status"] == "ok" and set(body) == {"status", "version", "revision"}
    assert answer.headers["X-Request-ID"] == "probe-7"
    for name in ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options"):
        assert name in answer.headers
    assert int(answer.headers["Content-Length"]) == len(await answer.get_data())
    head = await client.head("/health")
    assert head.status_code == 200
    metrics = await (await client.get("/metrics")).get_data(as_text=True)
    assert 'route="/health",status="200"' in metrics
