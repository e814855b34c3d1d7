"""Kill and restart: an email committed to the outbox but not yet delivered goes out, exactly
once, from the next process, even when the first one died by ``SIGKILL``.

The app runs as a real hypercorn process on a migrated SQLite file; its SMTP server is down
while the first process lives (nothing listens on the port) and up for the second.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import migrate
from tests.outbox.conftest import BASE_URL, SmtpServer, free_port
from tests.support.servers import ServerProcess

UNREACHABLE = "http://127.0.0.1:9"


def post_json(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def outbox_row(path: Path, address: str) -> sqlite3.Row | None:
    with sqlite3.connect(path, timeout=5) as conn:
        conn.row_factory = sqlite3.Row
        for row in conn.execute("SELECT * FROM outbox WHERE kind = 'email'"):
            if json.loads(row["payload"])["to"] == address:
                return row  # type: ignore[no-any-return]
    return None


def wait_for(probe: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


def kill(server: ServerProcess) -> None:
    """SIGKILL the server's whole process group (hypercorn and its worker): no shutdown runs."""
    assert server.proc is not None
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)


def test_undelivered_mail_survives_a_kill(tmp_path: Path) -> None:
    db_path = tmp_path / "issuer.db"
    migrate(f"sqlite+aiosqlite:///{db_path}")
    smtp_port = free_port()
    env = {
        "ISSUER_ENV": "development",
        "ISSUER_SECRET_KEY": secrets.token_urlsafe(32),
        "ISSUER_DATABASE_URL": f"sqlite+aiosqlite:///{db_path}",
        "ISSUER_AGENT": "rest",
        "ISSUER_REST_CONNECTION_URL": UNREACHABLE,
        "ISSUER_REST_ISSUER_URL": UNREACHABLE,
        "ISSUER_SMTP_HOST": "127.0.0.1",
        "ISSUER_SMTP_PORT": str(smtp_port),
        "ISSUER_SMTP_SECURITY": "none",
        "ISSUER_SMTP_TIMEOUT": "5",
        "ISSUER_PUBLIC_BASE_URL": BASE_URL,
        "ISSUER_OUTBOX_BACKOFF": "0.2",
        "ISSUER_OUTBOX_POLL_INTERVAL": "0.1",
        "ISSUER_LOG_LEVEL": "INFO",
        "NO_PROXY": "127.0.0.1",
    }
    address = f"crash-{secrets.token_hex(4)}@mail.example"
    first = ServerProcess(free_port(), env, tmp_path / "first.log")
    second = ServerProcess(free_port(), env, tmp_path / "second.log")
    smtp = SmtpServer(smtp_port)
    try:
        first.start()
        status, body = post_json(
            f"{first.url}/signup", {"email": address, "password": "correct horse battery staple"}
        )
        assert status == 200 and body["success"] is True
        # Committed, tried once against the dead SMTP port, not delivered.
        row = wait_for(
            lambda: (r := outbox_row(db_path, address)) and r["last_error"] and r, timeout=15
        )
        assert row["sent_at"] is None and row["failed_at"] is None
        kill(first)

        smtp.start()
        second.start()
        (mail,) = smtp.mailbox.wait_sync(address, timeout=20)
        assert mail.message_id == f"<{uuid.UUID(row['event_id'])}@issuer>"
        assert mail.link.startswith(f"{BASE_URL}/verify/")
        sent = wait_for(lambda: (r := outbox_row(db_path, address)) and r["sent_at"] and r, 10)
        assert sent["attempts"] >= 2
        second.stop()  # graceful: whatever its dispatcher had in hand is delivered by now
        assert len(smtp.mailbox.to(address)) == 1  # and nothing sent it again
    except BaseException:
        for server in (first, second):
            print(f"--- {server.log_path.name}\n{server.log_tail()}")
        raise
    finally:
        for server in (first, second):
            server.stop()
        smtp.stop()


pytestmark = pytest.mark.timeout(120)
