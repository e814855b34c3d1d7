"""``ISSUER_LOG_FORMAT=json``: what hypercorn's worker writes to stderr is one JSON object per
line, the access log carries the request's fields, and the audit log of a login holds no
secret. The default stays the readable text line."""

from __future__ import annotations

import json
import secrets
import urllib.request
from pathlib import Path
from typing import Any

import httpx

from issuer.issuance.agents.local import free_port
from tests.conftest import migrate
from tests.support.servers import ServerProcess

PASSWORD = "correct horse battery staple 42"


def serve(tmp_path: Path, log_format: str) -> ServerProcess:
    """A served app on a SQLite file of its own: what it writes (a user, emails waiting for a
    server that never comes) must not reach the session database other tests count in."""
    database_url = f"sqlite+aiosqlite:///{tmp_path}/logs.db"
    migrate(database_url)
    env = {
        "ISSUER_ENV": "test",
        "ISSUER_DATABASE_URL": database_url,
        "ISSUER_SECRET_KEY": secrets.token_urlsafe(32),
        "ISSUER_AGENT": "",
        "ISSUER_LOG_FORMAT": log_format,
        "ISSUER_LOG_LEVEL": "INFO",
    }
    return ServerProcess(free_port(), env, tmp_path / "server.log").start()


def exercise(url: str) -> str:
    """A registration, a login and a refused login; returns the access token."""
    with httpx.Client(base_url=url, timeout=10) as client:
        body = {"username": "loggy", "email": "loggy@example.org", "password": PASSWORD}
        assert client.post("/register", json=body).status_code in (200, 201)
        login = client.post("/login", json={"username": "loggy", "password": PASSWORD})
        assert login.status_code == 200, login.text
        refused = client.post("/login", json={"username": "loggy", "password": "wrong" * 4})
        assert refused.status_code == 401
        token: str = login.json()["access_token"]
        status = client.get(
            "/auth/status",
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "trace-me-42"},
        )
        assert status.status_code == 200
        return token


def written(server: ServerProcess) -> list[str]:
    server.stop()
    return server.log_path.read_text().splitlines()


def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    server = serve(tmp_path, "json")
    try:
        token = exercise(server.url)
    finally:
        lines = written(server)
    ours: list[dict[str, Any]] = []
    for line in lines:
        if line.startswith("{"):
            ours.append(json.loads(line))
        else:
            # Only hypercorn's own start-up/shutdown lines are not ours.
            assert "issuer" not in line or "Running on" in line, line
    assert ours, lines
    for entry in ours:
        assert {"timestamp", "level", "logger", "message", "request_id", "pid"} <= entry.keys()
        assert entry["timestamp"].endswith("+00:00")
    access = [
        e for e in ours if e["logger"] == "issuer.access" and e["request_id"] == "trace-me-42"
    ]
    assert len(access) == 1, access
    assert access[0]["route"] == "/auth/status" and access[0]["method"] == "GET"
    assert access[0]["status"] == 200 and access[0]["duration_ms"] > 0
    assert isinstance(access[0]["pid"], int) and access[0]["pid"] != 0
    audit = [e for e in ours if e["logger"] == "issuer.audit"]
    assert audit, "the login and the registration reach the audit log"
    everything = "\n".join(lines)
    for secret in (PASSWORD, "wrong" * 4, token, token.split(".")[2]):
        assert secret not in everything


def test_text_logs_stay_the_default(tmp_path: Path) -> None:
    server = serve(tmp_path, "text")
    try:
        with urllib.request.urlopen(
            urllib.request.Request(f"{server.url}/health", headers={"X-Request-ID": "plain-1"})
        ) as response:
            assert response.status == 200
    finally:
        lines = written(server)
    access = [line for line in lines if "issuer.access [plain-1]" in line]
    assert len(access) == 1 and access[0].split("] ", 1)[1].startswith("GET /health 200 ")
    assert not any(line.startswith("{") for line in lines)
