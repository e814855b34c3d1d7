"""The API fuzzer: schemathesis against the app's own ``/openapi.json``, over HTTP against served
instances (hypercorn with ``hypercorn.toml``, as in production).

Four runs of every documented operation: SQLite and PostgreSQL, each anonymous and with
credentials (an access token on the routes the document says take one, the webhook key on the
webhooks). Every built-in check is on: no server errors, every answer's status, content type,
headers and body as documented, schema-breaking requests refused with 4xx, schema-conforming
ones accepted (``positive_data_acceptance``, with the domain refusals each operation documents
for well-formed input, listed below with the reason). Bounded by ``FUZZ_MAX_EXAMPLES``
(examples per operation in the fuzzing phase; the coverage phase adds its own boundary cases).

Rate limits are off in these runs (``ISSUER_RATE_LIMITS_ENABLED=false``): the limits would turn
most cases into 429s, and they have tests of their own. The credential agent is the benchmarks'
fake of ACA-Py's admin API (``bench.fake_acapy``), in a process of its own.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
import schemathesis

from issuer import create_app
from issuer.issuance.agents.local import free_port
from tests.conftest import ROOT, migrate, scratch_postgresql
from tests.support.servers import ServerProcess, stop_gracefully

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "30"))
# A fixed seed: the suite sends the same cases on every run, so a red CI run is a change in
# the code, not in the dice. Another seed explores further (FUZZ_SEED=…; README, Fuzzing).
SEED = int(os.environ.get("FUZZ_SEED") or "20261201")
USER = {"username": "fuzzer", "password": "correct horse battery staple"}
WEBHOOK_KEY = "hook-key"
# What positive_data_acceptance counts as accepting a schema-conforming request: schemathesis'
# default, plus, per operation below, the refusals the domain gives well-formed input.
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
DOMAIN_REFUSALS: dict[str, list[str]] = {
    "/update_password": ["400"],  # the existing password is not the account's
    "/verify/{token}/{uidb64}": ["400"],  # a random link is not a valid one
    "/reset_password/{token}/{uidb64}": ["400"],
    "/qrcode": ["400"],  # the password is not the account's
    "/verify_otp": ["400"],  # a random code is not the current one
    "/setup_mfa": ["400"],
    "/passkeys": ["400"],  # a random ceremony or credential is not a registration
    "/social/{method_id}": ["400"],  # a random id is not one of the user's login methods
    # No identity provider is configured here (none may be called): their routes are off.
    "/social/github": ["404"],
    "/social/facebook": ["404"],
    "/social/{name}": ["404"],
    "/login/{name}": ["404"],
    "/login/{name}/callback": ["404"],
    # The Events API: a random request is not signed with the app's secret (or names no app).
    "/apps/{app_id}/events": ["401", "404"],
    "/apps/{app_id}/batch_events": ["401", "404"],
    "/apps/{app_id}/channels": ["401", "404"],
    "/pusher/auth": ["400", "403"],  # a public channel needs none; another's is not yours
    # Posts: random ids name no post, random users no user; a random If-Match is stale (or
    # missing: 428); a random form has no valid CSRF token; a file sent as text is no file.
    "/api/posts/{post_id}": ["403", "404", "412", "428"],
    "/api/users/{username}/posts": ["404"],
    "/pictures/{entity_id}/{size}": ["404"],
    "/api/me/picture": ["422"],
    "/home": ["404"],
    "/blog": ["404"],
    "/user/{username}": ["404"],
    "/post/{post_id}": ["404"],
    "/post/new": ["403"],
    "/post/{post_id}/update": ["403", "404", "412"],
    "/post/{post_id}/delete": ["403", "404", "412"],
    "/account": ["403", "422"],
}
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": False},
        },
        "checks": {"enabled": True},
        "operations": [
            {
                "include-path": path,
                "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, *codes]}},
            }
            for path, codes in DOMAIN_REFUSALS.items()
        ],
    }
)


@pytest.fixture(scope="module")
def agent_url() -> Iterator[str]:
    """The fake ACA-Py admin API (its holder never connects: sessions stay invited)."""
    port = free_port()
    agent = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_acapy", "--port", str(port)], cwd=ROOT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{url}/status/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            assert time.monotonic() < deadline and agent.poll() is None, "no fake agent"
            time.sleep(0.05)
    try:
        yield url
    finally:
        agent.terminate()
        agent.wait(10)


def settings(database_url: str, agent_url: str) -> dict[str, str]:
    return {
        "ISSUER_ENV": "test",
        "ISSUER_AGENT": "acapy",
        "ISSUER_ACAPY_ADMIN_URL": agent_url,
        "ISSUER_DATABASE_URL": database_url,
        "ISSUER_SECRET_KEY": secrets.token_urlsafe(32),
        "ISSUER_WEBHOOK_API_KEY": WEBHOOK_KEY,
        "ISSUER_SWEEP_INTERVAL": "3600",
        "ISSUER_RATE_LIMITS_ENABLED": "false",
        # Cheap hashing (allowed outside production): ~1 ms a login.
        "ISSUER_ARGON2_TIME_COST": "1",
        "ISSUER_ARGON2_MEMORY_KIB": "1024",
        # Empty = unset, whatever the environment or a local .env says.
        "ISSUER_REST_ISSUER_URL": "",
        "ISSUER_SMTP_HOST": "",
        "ISSUER_AMQP_URL": "",
        "ISSUER_REDIS_URL": "",
    }


def document() -> dict[str, Any]:
    """The app's /openapi.json (quart-schema builds it from the routes; no database needed)."""
    app = create_app({"env": "test", "database_url": "sqlite+aiosqlite:///:memory:"})

    async def fetch() -> dict[str, Any]:
        found: dict[str, Any] = await (await app.test_client().get("/openapi.json")).get_json()
        return found

    return asyncio.run(fetch())


DOCUMENT = document()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def fresh_idempotency_key(case: Any) -> None:
    """A client sends a new Idempotency-Key with each new request: a valid generated key is
    replaced by a fresh one (a reused key with another body is rightly refused, 422)."""
    for name, value in (case.headers or {}).items():
        if name.lower() == "idempotency-key" and IDEMPOTENCY_KEY.fullmatch(str(value)):
            case.headers[name] = str(uuid.uuid4())


def credentials_of(path: str) -> set[str]:
    """The security schemes the document lists for ``path``'s operations."""
    return {
        scheme
        for operation in DOCUMENT["paths"][path].values()
        for requirement in operation.get("security", [])
        for scheme in requirement
    }


class Target:
    """One served app; with ``credentials`` it signs the fuzz account's requests."""

    def __init__(self, server: ServerProcess, credentials: bool) -> None:
        self.url = server.url
        self.credentials = credentials
        self._token: str | None = None

    def token(self) -> str:
        if self._token is None:
            httpx.post(f"{self.url}/register", json=USER, timeout=10)  # 409 once it exists
            response = httpx.post(f"{self.url}/login", json=USER, timeout=10)
            assert response.status_code == 200, response.text
            self._token = response.json()["access_token"]
        return self._token

    def headers(self, case: Any) -> dict[str, str]:
        if not self.credentials:
            return {}
        schemes = credentials_of(case.path)
        if "bearer" in schemes:
            return {"Authorization": f"Bearer {self.token()}"}
        if "webhook" in schemes:
            return {"X-API-Key": WEBHOOK_KEY}
        return {}

    def after(self, case: Any, response: Any) -> None:
        if case.path.endswith("/logout") and response.status_code == 200:
            self._token = None  # the fuzzer just ended this login


RUNS = [(db, who) for db in ("sqlite", "postgresql") for who in ("anonymous", "credentials")]


@pytest.fixture(scope="module", params=RUNS, ids=["-".join(run) for run in RUNS])
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, agent_url: str
) -> Iterator[Target]:
    database, who = request.param
    folder = tmp_path_factory.mktemp("fuzz")
    with ExitStack() as stack:
        # Databases of their own: what the fuzzer writes stays out of the other tests' way.
        if database == "postgresql":
            url = stack.enter_context(scratch_postgresql())
        else:
            url = f"sqlite+aiosqlite:///{folder / 'issuer.db'}"
            migrate(url)
        server = ServerProcess(free_port(), settings(url, agent_url), folder / "server.log")
        server.start()
        try:
            yield Target(server, credentials=who == "credentials")
        finally:
            stop_gracefully(server)
            assert "Traceback" not in server.log_tail(100_000), server.log_tail(200)


@schema.parametrize()
def test_the_api_answers_as_documented(case: Any, target: Target) -> None:
    fresh_idempotency_key(case)
    response = case.call_and_validate(base_url=target.url, headers=target.headers(case))
    target.after(case, response)
