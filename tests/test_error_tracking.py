"""Error tracking through the real SDKs (sentry-sdk, pyrollbar) against a receiver on loopback
that speaks Sentry's envelope endpoint and Rollbar's item API and keeps every byte it got."""

from __future__ import annotations

import gzip
import json
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sentry_sdk
from quart import Quart, request
from sqlalchemy.exc import DisconnectionError, IntegrityError

from issuer import create_app, errors
from issuer.app import VERSION
from issuer.ops.tracking import TRACKING, Tracker
from tests.fakes import FakeAgent

ROLLBAR_TOKEN = "rollbar-post-server-item-token"
REVISION = "3f2c1ab"


@dataclass(frozen=True)
class Received:
    path: str
    raw: bytes  # request line, headers and the decoded body, as they arrived
    body: bytes


class Receiver:
    """Sentry's ``POST /api/<project>/envelope/`` and Rollbar's ``POST /api/1/item/``."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                assert self.headers.get("Content-Encoding") in (None, "gzip")
                head = f"{self.requestline}\r\n{self.headers}".encode()
                with receiver._lock:
                    receiver.received.append(Received(self.path, head + body, body))
                answer = b'{"err": 0, "result": {}}' if "/item/" in self.path else b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.port}/1"

    def sentry_items(self, kind: str) -> list[dict[str, Any]]:
        """The payloads of every envelope item of type ``kind`` (``event``, ``transaction``)."""
        found = []
        for got in self.received:
            if got.path.startswith("/api/1/envelope/"):
                found += [p for t, p in envelope_items(got.body) if t == kind]
        return found

    def rollbar_items(self) -> list[dict[str, Any]]:
        return [json.loads(got.body) for got in self.received if got.path == "/api/1/item/"]


def envelope_items(body: bytes) -> Iterator[tuple[str, dict[str, Any]]]:
    """Sentry's envelope: a header line, then items of a header line and a payload (``length``
    bytes, or up to the next newline)."""
    _, rest = body.split(b"\n", 1)
    while rest.strip():
        header_line, rest = rest.split(b"\n", 1)
        header = json.loads(header_line)
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"] :].lstrip(b"\n")
        else:
            payload, _, rest = rest.partition(b"\n")
        yield header["type"], json.loads(payload) if payload.strip() else {}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


async def boom(token: str) -> Any:
    """Fails like a query bug: SQLAlchemy's message carries the bound parameters."""
    body = await request.get_json()
    raise IntegrityError("INSERT INTO t (token_hash) VALUES (?)", body["sql"], Exception("dup"))


async def refuse(token: str) -> Any:
    raise errors.Forbidden()


async def down() -> Any:
    raise DisconnectionError("server closed the connection")


@pytest.fixture
async def tracked(receiver: Receiver, sqlite_url: str) -> AsyncIterator[Quart]:
    receiver.received.clear()
    app = create_app(
        {
            "env": "test",
            "database_url": sqlite_url,
            "secret_key": secrets.token_urlsafe(32),
            "agent": None,
            "git_revision": REVISION,
            "sentry_dsn": receiver.dsn,
            "sentry_traces_sample_rate": 1.0,  # transactions are checked for secrets too
            "rollbar_access_token": ROLLBAR_TOKEN,
            "rollbar_endpoint": f"http://127.0.0.1:{receiver.port}/api/1/",
        },
        agent=FakeAgent(),
    )
    app.add_url_rule("/boom/<token>", "boom", boom, methods=["POST"])
    app.add_url_rule("/refuse/<token>", "refuse", refuse, methods=["POST"])
    app.add_url_rule("/down", "down", down)
    try:
        async with app.test_app():
            yield app
    finally:
        sentry_sdk.get_client().close(timeout=5)
        sentry_sdk.get_global_scope().set_client(None)


async def crash(app: Quart, request_id: str) -> dict[str, str]:
    """POST to the failing route with a secret in every place a request can carry one."""
    secret = {name: secrets.token_hex(16) for name in (
        "path", "query", "bearer", "cookie", "password", "refresh_token", "totp", "sql",
    )}  # fmt: skip
    response = await app.test_client().post(
        f"/boom/{secret['path']}?token={secret['query']}&page=2",
        json={
            "password": secret["password"],
            "refresh_token": secret["refresh_token"],
            "code": secret["totp"],
            "sql": {"token_hash": secret["sql"]},
        },
        headers={
            "Authorization": f"Bearer {secret['bearer']}",
            "Cookie": f"issuer_session={secret['cookie']}",
            "Referer": f"http://localhost/reset_password/{secret['path']}",
            "X-Request-ID": request_id,
        },
    )
    assert response.status_code == 500
    assert (await response.get_json())["error"] == "internal_error"
    return secret


async def flush(app: Quart) -> None:
    tracker = app.extensions[TRACKING]
    assert isinstance(tracker, Tracker)
    await tracker.flush(10.0)


async def test_an_unexpected_error_reaches_each_tracker_once_without_secrets(
    tracked: Quart, receiver: Receiver
) -> None:
    secret = await crash(tracked, "req-boom-1")
    await flush(tracked)
    release = f"issuer@{VERSION}+{REVISION}"

    [event] = receiver.sentry_items("event")
    assert event["tags"]["request_id"] == "req-boom-1"
    assert event["tags"]["route"] == "/boom/<token>"
    assert event["transaction"] == "/boom/<token>"
    assert event["request"]["url"] == "/boom/<token>"
    assert event["release"] == release and event["environment"] == "test"
    assert event["exception"]["values"][-1]["type"] == "IntegrityError"
    [transaction] = receiver.sentry_items("transaction")
    assert transaction["transaction"] == "/boom/<token>" and transaction["release"] == release

    [item] = receiver.rollbar_items()
    assert item["access_token"] == ROLLBAR_TOKEN
    data = item["data"]
    assert data["custom"] == {"request_id": "req-boom-1", "route": "/boom/<token>"}
    assert data["context"] == "/boom/<token>" and data["request"]["url"] == "/boom/<token>"
    assert data["code_version"] == release and data["environment"] == "test"
    assert data["body"]["trace"]["exception"]["class"] == "IntegrityError"

    raw = b"".join(got.raw for got in receiver.received)
    for name, value in secret.items():
        assert value.encode() not in raw, f"the {name} secret was sent"
    assert b"[parameters: hidden]" in raw  # the SQL message is there, without its values


async def test_refusals_and_an_unavailable_database_send_nothing(
    tracked: Quart, receiver: Receiver
) -> None:
    client = tracked.test_client()
    assert (await client.post("/refuse/x")).status_code == 403  # a domain error
    assert (await client.get("/no/such/route")).status_code == 404
    assert (await client.get("/down")).status_code == 503
    await flush(tracked)
    assert receiver.sentry_items("event") == [] and receiver.rollbar_items() == []
    # The trackers were live all along: the next 500 arrives, once each.
    await crash(tracked, "req-after")
    await flush(tracked)
    assert [e["tags"]["request_id"] for e in receiver.sentry_items("event")] == ["req-after"]
    assert [i["data"]["custom"]["request_id"] for i in receiver.rollbar_items()] == ["req-after"]


async def test_nothing_is_started_when_no_tracker_is_configured(sqlite_url: str) -> None:
    app = create_app(
        {"env": "test", "database_url": sqlite_url, "secret_key": "x" * 32, "agent": None},
        agent=FakeAgent(),
    )
    assert TRACKING not in app.extensions
    assert not sentry_sdk.get_client().is_active()
