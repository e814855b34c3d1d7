"""Outbox fixtures: a real SMTP server (aiosmtpd, in a thread of the test process) and an app
that delivers to it.

``mailbox`` collects every message the server accepts, parsed with the modern email policy (the
raw bytes may be soft-wrapped or quoted-printable: always read the parsed body). The ``overrides``
fixture here extends the root one, so ``app``/``client`` deliver to the mailbox, and every test
still runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from quart import Quart
from sqlalchemy import select, text

from issuer.outbox.models import OutboxMessage
from issuer.services import services_of

BASE_URL = "https://issuer.example"
LINK = re.compile(r"https://issuer\.example/[^\s<>\"]+")


def free_port() -> int:
    """A port nothing listens on right now (the kernel's choice, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Mail:
    """One message as the SMTP server received it."""

    envelope_to: list[str]
    message: EmailMessage

    @property
    def to(self) -> str:
        return str(self.message["To"])

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None, "no text/plain part"
        return str(body.get_content())  # type: ignore[attr-defined]

    @property
    def html(self) -> str:
        body = self.message.get_body(("html",))
        assert body is not None, "no text/html part"
        return str(body.get_content())  # type: ignore[attr-defined]

    @property
    def link(self) -> str:
        """The one link of the plain-text body."""
        links = LINK.findall(self.text)
        assert len(links) == 1, self.text
        return str(links[0])


class Mailbox:
    """aiosmtpd handler that keeps every accepted message; ``delay`` slows each one down."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self._lock = threading.Lock()
        self._mails: list[Mail] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self._mails.append(Mail(list(envelope.rcpt_tos), parsed))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    @property
    def mails(self) -> list[Mail]:
        with self._lock:
            return list(self._mails)

    def to(self, address: str) -> list[Mail]:
        return [m for m in self.mails if address in m.envelope_to]

    async def wait(self, address: str, count: int = 1, timeout: float = 10.0) -> list[Mail]:
        """The first ``count`` messages to ``address``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.to(address)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.02)
        raise AssertionError(f"{len(self.to(address))} of {count} mails to {address} arrived")

    def wait_sync(self, address: str, count: int = 1, timeout: float = 10.0) -> list[Mail]:
        """``wait`` for tests without an event loop."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.to(address)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"{len(self.to(address))} of {count} mails to {address} arrived")


class SmtpServer:
    """An aiosmtpd ``Controller`` on 127.0.0.1:``port``, collecting into ``mailbox``."""

    def __init__(self, port: int | None = None, delay: float = 0.0) -> None:
        self.port = port or free_port()
        self.mailbox = Mailbox(delay)
        self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self._running = False

    def start(self) -> SmtpServer:
        self._controller.start()
        self._running = True
        return self

    def stop(self) -> None:
        if self._running:
            self._controller.stop()
            self._running = False


# aiosmtpd logs every SMTP command at INFO: too chatty for failure reports.
logging.getLogger("mail.log").setLevel(logging.WARNING)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def mailbox(smtp: SmtpServer) -> Mailbox:
    return smtp.mailbox


def smtp_settings(port: int) -> dict[str, Any]:
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_security": "none",
        "smtp_timeout": 5.0,
        "public_base_url": BASE_URL,
        "outbox_poll_interval": 0.05,
        "outbox_backoff": 0.1,
    }


@pytest.fixture
def overrides(overrides: dict[str, Any], smtp: SmtpServer) -> dict[str, Any]:
    # Cheap password hashing: these tests are about mail, and the box is shared.
    cheap = {"argon2_memory_kib": 1024, "argon2_time_cost": 1}
    return {**overrides, **smtp_settings(smtp.port), **cheap}


async def rows(app: Quart, statement: str, **params: Any) -> list[Any]:
    """Run one statement in its own transaction; the rows (empty for statements without)."""
    async with services_of(app).db.engine.begin() as conn:
        result = await conn.execute(text(statement), params)
        return list(result.all()) if result.returns_rows else []


async def outbox(app: Quart, kind: str | None = None) -> list[OutboxMessage]:
    """Every outbox row (of ``kind``), oldest first."""
    statement = select(OutboxMessage).order_by(OutboxMessage.id)
    if kind is not None:
        statement = statement.where(OutboxMessage.kind == kind)
    async with services_of(app).db.session() as session:
        return list(await session.scalars(statement))


async def mails_to(app: Quart, address: str) -> list[OutboxMessage]:
    """The outbox emails addressed to ``address``."""
    return [m for m in await outbox(app, "email") if m.payload["to"] == address]


async def drained(app: Quart) -> None:
    """Drive the app's dispatcher until nothing due is left in the outbox: every message that
    was going to be sent now has been (or is scheduled for a retry)."""
    async with asyncio.timeout(20):
        await services_of(app).dispatcher.drain()
