"""The transactional outbox: written with the change, delivered with retries and backoff, given up
on visibly, shared by several dispatchers without double sends, parked without SMTP.

Tests taking ``app``/``client``/``overrides``/``database_url`` run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import delete, func, select

from issuer.accounts.models import User
from issuer.clock import ManualClock, SystemClock
from issuer.db import Database
from issuer.lib.mail import SmtpSettings
from issuer.outbox.delivery import Delivery
from issuer.outbox.dispatcher import Dispatcher
from issuer.outbox.models import OutboxMessage
from issuer.outbox.service import Outbox
from issuer.services import services_of
from tests.accounts.conftest import running
from tests.outbox.conftest import (
    Mailbox,
    SmtpServer,
    drained,
    free_port,
    mails_to,
    outbox,
)
from tests.outbox.test_flows import new_email, signup
from tests.support.portal import wait_until

UNREACHABLE = "http://127.0.0.1:9"  # a development app needs an agent; this one is never called


async def users_with(app: Quart, address: str) -> int:
    async with services_of(app).db.session() as session:
        return int(await session.scalar(select(func.count()).where(User.email == address)) or 0)


async def test_mail_is_written_in_the_transaction_of_the_change(
    app: Quart, client: Any, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Outbox.email

    def email_then_fail(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)  # the email row is in the session: the transaction then fails
        raise RuntimeError("boom after the outbox write")

    monkeypatch.setattr(Outbox, "email", email_then_fail)
    lost = new_email()
    body = {"email": lost, "password": "correct horse battery staple"}
    response = await client.post("/signup", json=body)
    assert response.status_code == 500
    assert "boom" not in await response.get_data(as_text=True)
    assert await users_with(app, lost) == 0
    assert await outbox(app) == []  # neither the email nor the user.created event

    monkeypatch.setattr(Outbox, "email", real)
    kept = new_email()
    await signup(client, kept)
    assert await users_with(app, kept) == 1
    topics = sorted(m.topic for m in await outbox(app))
    assert topics == ["login_method.created", "user.created", "verify_email"]
    await mailbox.wait(kept)
    assert mailbox.to(lost) == []


async def test_smtp_down_backs_off_then_gives_up(
    overrides: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    dead = free_port()
    async with running(
        overrides, smtp_port=dead, outbox_backoff=0.25, outbox_max_attempts=3
    ) as app:
        address = new_email()
        await signup(app.test_client(), address)
        seen: dict[int, OutboxMessage] = {}  # attempts -> the row after that attempt failed

        async def failed() -> OutboxMessage | None:
            (row,) = await mails_to(app, address)
            if row.last_error and row.locked_until is None:
                seen.setdefault(row.attempts, row)
            return row if row.failed_at else None

        row = await wait_until(failed, timeout=15, interval=0.01)
    assert row.attempts == 3 and row.sent_at is None
    assert "SMTPConnect" in (row.last_error or "") or "onnect" in (row.last_error or "")
    assert set(seen) == {1, 2, 3}, seen
    first, second = (seen[n].available_at for n in (1, 2))
    created = row.created_at
    assert first - created >= timedelta(seconds=0.25)  # the first retry waits 0.25 s,
    assert second - first >= timedelta(seconds=0.5)  # the second twice as long
    assert row.failed_at is not None and row.failed_at >= second
    gave_up = [
        r for r in caplog.records if r.levelno == logging.ERROR and "gave up after 3" in r.message
    ]
    assert len(gave_up) == 1 and str(row.event_id) in gave_up[0].message


async def test_pending_mail_goes_out_when_smtp_returns(overrides: dict[str, Any]) -> None:
    port = free_port()
    async with running(overrides, smtp_port=port, outbox_backoff=0.2) as app:
        address = new_email()
        await signup(app.test_client(), address)

        async def attempted() -> bool:
            (row,) = await mails_to(app, address)
            return bool(row.last_error and row.locked_until is None)

        await wait_until(attempted)
        late = SmtpServer(port).start()
        try:
            (mail,) = await late.mailbox.wait(address, timeout=15)

            async def sent() -> OutboxMessage | None:
                (row,) = await mails_to(app, address)
                return row if row.sent_at else None

            row = await wait_until(sent)
            assert row.attempts >= 2 and row.last_error is None and row.failed_at is None
            assert mail.message_id == f"<{row.event_id}@issuer>"
            await drained(app)
            assert len(late.mailbox.to(address)) == 1
        finally:
            late.stop()


async def test_production_without_smtp_parks_mail_until_smtp_is_configured(
    overrides: dict[str, Any], smtp: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    parked = {
        "env": "production",
        "argon2_memory_kib": 19 * 1024,  # production refuses hashing below OWASP's floor
        "argon2_time_cost": 2,
        "smtp_host": "",
        "outbox_backoff": 0.05,
        "outbox_backoff_max": 0.1,
        "outbox_max_attempts": 2,
    }
    address = new_email()
    async with running(overrides, clean=False, **parked) as app:
        client = app.test_client()
        await signup(client, address)

        async def retried() -> OutboxMessage | None:
            (row,) = await mails_to(app, address)
            return row if row.attempts > 3 and row.locked_until is None else None

        row = await wait_until(retried)
        # Past outbox_max_attempts, yet not given up on: no SMTP server is no failed try.
        assert "NoTransport" in (row.last_error or "")
        assert row.sent_at is None and row.failed_at is None
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert smtp.mailbox.mails == []
        assert (await client.get("/dev/outbox")).status_code == 404
    # Restarted with an SMTP server configured: the parked email goes out.
    async with running(overrides, outbox_backoff_max=0.1) as app:
        (mail,) = await smtp.mailbox.wait(address)
        assert mail.message_id == f"<{row.event_id}@issuer>"


async def test_development_without_smtp_logs_and_shows_the_outbox_page(
    overrides: dict[str, Any], caplog: pytest.LogCaptureFixture, mailbox: Mailbox
) -> None:
    development = {
        "env": "development",
        "smtp_host": "",
        "agent": "rest",
        "rest_connection_url": UNREACHABLE,
        "rest_issuer_url": UNREACHABLE,
    }
    async with running(overrides, **development) as app:
        client = app.test_client()
        address = new_email()
        await signup(client, address)

        async def sent() -> OutboxMessage | None:
            (row,) = await mails_to(app, address)
            return row if row.sent_at else None

        row = await wait_until(sent)
        logged = [r.getMessage() for r in caplog.records if r.name == "issuer.mail"]
        assert any(address in m and row.payload["text"] in m for m in logged), logged
        page = await client.get("/dev/outbox")
        assert page.status_code == 200
        html = await page.get_data(as_text=True)
        assert address in html and "Confirm your email address" in html and "sent" in html
        assert f'data-event="{row.event_id}"' in html
    assert mailbox.mails == []


async def test_no_outbox_page_outside_development(client: Any) -> None:
    assert (await client.get("/dev/outbox")).status_code == 404


# --- the dispatcher on its own ---------------------------------------------------------------


async def queue_mails(db: Database, count: int, prefix: str) -> list[str]:
    addresses = [f"{prefix}-{i}@mail.example" for i in range(count)]
    writer = Outbox(SystemClock(), wake=lambda: None)
    async with db.transaction() as session:
        for address in addresses:
            writer.email(
                session, "password_changed", to=address, language="en",
                context={"when": "now", "link": "https://issuer.example/forgot_password"},
            )  # fmt: skip
    return addresses


def smtp_delivery(port: int) -> Delivery:
    settings = SmtpSettings(host="127.0.0.1", port=port, security="none", timeout=10)
    return Delivery(smtp=settings, publisher=None, development=False)


def counting(delivery: Delivery, counter: Counter[str], name: str) -> Any:
    async def deliver(message: OutboxMessage) -> None:
        await delivery(message)
        counter[name] += 1

    return deliver


async def test_an_abandoned_lease_is_picked_up_after_it_runs_out(
    database_url: str, smtp: SmtpServer
) -> None:
    db = Database(database_url)
    try:
        (address,) = await queue_mails(db, 1, "lease")
        clock = ManualClock()
        crashed = Dispatcher(db, smtp_delivery(smtp.port), clock=clock, lease=60)
        assert len(await crashed.claim()) == 1  # claimed, then the process "dies"
        survivor = Dispatcher(db, smtp_delivery(smtp.port), clock=clock, lease=60)
        assert await survivor.run_once() == 0  # the lease still holds
        clock.advance(59)
        assert await survivor.run_once() == 0  # ... until it runs out
        clock.advance(2)
        assert await survivor.run_once() == 1
        await smtp.mailbox.wait(address)
        async with db.session() as session:
            row = await session.scalar(select(OutboxMessage))
        assert row is not None and row.sent_at is not None and row.attempts == 2
    finally:
        async with db.transaction() as session:
            await session.execute(delete(OutboxMessage))
        await db.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_dispatchers_share_the_work_without_double_sends(
    database_url: str, smtp: SmtpServer
) -> None:
    total = 200
    databases = [Database(database_url, pool_size=4) for _ in range(2)]
    delivered: Counter[str] = Counter()
    tasks: list[asyncio.Task[None]] = []
    stopping = asyncio.Event()
    try:
        addresses = await queue_mails(databases[0], total, "worker")
        for name, db in zip(("a", "b"), databases, strict=True):
            delivery = smtp_delivery(smtp.port)

            async def deliver(
                message: OutboxMessage, name: str = name, inner: Any = delivery
            ) -> None:
                await inner(message)
                delivered[name] += 1

            dispatcher = Dispatcher(db, deliver, batch=20, poll_interval=0.05)
            tasks.append(asyncio.create_task(dispatcher.run(stopping)))

        async def all_sent() -> bool:
            async with databases[0].session() as session:
                pending = await session.scalar(
                    select(func.count()).where(OutboxMessage.sent_at.is_(None))
                )
            return pending == 0

        await wait_until(all_sent, timeout=40, interval=0.1)
    finally:
        # Both finish the batch in hand: every send either of them made is in the mailbox.
        stopping.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        async with databases[0].transaction() as session:
            await session.execute(delete(OutboxMessage))
        for db in databases:
            await db.dispose()
    mails = smtp.mailbox.mails
    ids = Counter(m.message_id for m in mails)
    assert len(mails) == total and len(ids) == total, ids.most_common(3)
    assert sorted(m.to for m in mails) == sorted(addresses)
    assert delivered["a"] + delivered["b"] == total
    assert delivered["a"] > 0 and delivered["b"] > 0, delivered  # both took a share


async def test_an_event_with_no_broker_to_go_to_is_recorded_delivered(database_url: str) -> None:
    """Without RabbitMQ a domain event that is nobody's entity event has nowhere to go: it is
    written delivered, and the dispatcher never claims it. With a broker it waits for one."""
    db = Database(database_url)
    try:
        woken: list[str] = []
        recording = Outbox(SystemClock(), wake=lambda: woken.append("none"), publishes_events=False)
        publishing = Outbox(SystemClock(), wake=lambda: woken.append("amqp"), publishes_events=True)
        async with db.transaction() as session:
            kept = await recording.event(session, "credential.accepted", {"session_id": "s1"})
            queued = await publishing.event(session, "credential.accepted", {"session_id": "s2"})
        async with db.session() as session:
            rows = {
                row.event_id: row
                for row in await session.scalars(
                    select(OutboxMessage).where(OutboxMessage.event_id.in_([kept, queued]))
                )
            }
        assert rows[kept].sent_at is not None and rows[queued].sent_at is None
        assert woken == ["amqp"]
        claimed = await Dispatcher(db, lambda message: asyncio.sleep(0)).claim()
        assert [message.event_id for message in claimed] == [queued]
    finally:
        await db.dispose()
