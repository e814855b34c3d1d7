"""004's email flows end to end: the app writes to the outbox, its dispatcher delivers to a real
SMTP server (aiosmtpd), and the test follows the links in the received mails.

Each test runs on SQLite and on PostgreSQL (the ``database_url`` fixture).
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from quart import Quart
from sqlalchemy import update

from issuer.accounts.models import OneTimeToken
from issuer.db import utcnow
from issuer.services import services_of
from tests.accounts.conftest import PASSWORD, assert_error, bearer, from_ip
from tests.outbox.conftest import BASE_URL, Mail, Mailbox, drained, mails_to, rows
from tests.support.portal import wait_until

SIGNED_UP = "User successfully created and a confirmation email has been sent via email."
CONFIRMED = "You have confirmed your account. Thanks!"
RESENT = "A confirmation email has been sent via email."
RESET_SENT = "Password reset email sent to the user"
RESET_DONE = "Your password has been updated! You are now able to log in."
INVALID_VERIFY = "The confirmation link is invalid or has expired."
INVALID_RESET = "Reset Password token has expired"
NEW_PASSWORD = "a brand new passphrase"


def new_email() -> str:
    return f"user-{secrets.token_hex(4)}@mail.example"


async def signup(client: Any, address: str, **kw: Any) -> Any:
    body = {
        "login_method": "signup",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": address,
        "password": PASSWORD,
    }
    response = await client.post("/signup", json=body, **kw)
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert await response.get_json() == {"success": True, "message": SIGNED_UP}
    return response


def path_of(mail: Mail) -> str:
    """The link's path, after checking it points at the configured public base URL."""
    link = mail.link
    assert link.startswith(f"{BASE_URL}/"), link
    return urlsplit(link).path


async def login(client: Any, address: str, password: str = PASSWORD) -> Any:
    return await client.post("/login", json={"email": address, "password": password})


async def verified_user(client: Any, mailbox: Mailbox) -> tuple[str, dict[str, Any]]:
    """Sign up, follow the verification link; the address and the login body."""
    address = new_email()
    await signup(client, address)
    (mail,) = await mailbox.wait(address)
    assert (await client.post(path_of(mail))).status_code == 200
    response = await login(client, address)
    assert response.status_code == 200
    return address, await response.get_json()


async def forgot(client: Any, address: str, **kw: Any) -> Any:
    return await client.post("/forgot_password", json={"email": address}, **kw)


async def test_signup_mail_link_works_once(app: Quart, client: Any, mailbox: Mailbox) -> None:
    address = new_email()
    # A forged Host header must not end up in the link (links use public_base_url only).
    await signup(client, address, headers={"Host": "evil.example"})
    (mail,) = await mailbox.wait(address)
    assert mail.to == address and mail.envelope_to == [address]
    assert mail.subject == "Confirm your email address"

    async def sent() -> Any:
        (row,) = await mails_to(app, address)
        return row if row.sent_at else None

    row = await wait_until(sent)  # the mail arrives a moment before its row is marked sent
    assert row.topic == "verify_email" and row.attempts == 1
    assert mail.message_id == f"<{row.event_id}@issuer>"
    path = path_of(mail)
    assert "evil.example" not in mail.text + mail.html
    assert path.startswith("/verify/")
    assert f'href="{mail.link}"' in mail.html and "Ada" in mail.text

    page = await client.get(path)  # what the link opens: a page whose button posts
    assert page.status_code == 200
    assert page.headers["Referrer-Policy"] == "no-referrer"

    response = await client.post(path)
    assert response.status_code == 200, await response.get_data(as_text=True)
    body = await response.get_json()
    assert body["success"] is True and body["message"] == CONFIRMED
    assert body["user"]["verified"] is True and body["user"]["email"] == address
    assert body["user"]["verified_on"] and body["user"]["access_token"]
    await assert_error(await client.post(path), 400, INVALID_VERIFY)


async def test_expired_links_fail(app: Quart, client: Any, mailbox: Mailbox) -> None:
    address = new_email()
    await signup(client, address)
    assert (await forgot(client, address)).status_code == 200
    verify_mail, reset_mail = await mailbox.wait(address, 2)
    if "/reset_password/" in verify_mail.link:
        verify_mail, reset_mail = reset_mail, verify_mail
    async with services_of(app).db.transaction() as session:
        await session.execute(
            update(OneTimeToken).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    await assert_error(await client.post(path_of(verify_mail)), 400, INVALID_VERIFY)
    reset = await client.post(path_of(reset_mail), json={"password": NEW_PASSWORD})
    await assert_error(reset, 400, INVALID_RESET)
    assert (await login(client, address)).status_code == 200  # the password did not change


async def test_unknown_emails_get_the_same_answer_and_no_mail(
    app: Quart, client: Any, mailbox: Mailbox
) -> None:
    known, unknown = new_email(), new_email()
    await signup(client, known)
    await mailbox.wait(known)
    for path, message in (("/resend_confirmation", RESENT), ("/forgot_password", RESET_SENT)):
        answers = []
        for address in (known, unknown):
            response = await client.post(path, json={"email": address})
            answers.append((response.status_code, await response.get_data(as_text=True)))
        assert answers[0] == answers[1], answers
        assert answers[0][0] == 200 and message in answers[0][1]
    await mailbox.wait(known, 3)  # verification, its resend, reset
    await drained(app)
    assert mailbox.to(unknown) == []
    assert await mails_to(app, unknown) == []


async def test_resend_gives_a_new_working_link(app: Quart, client: Any, mailbox: Mailbox) -> None:
    address = new_email()
    await signup(client, address)
    assert (await client.post("/resend_confirmation", json={"email": address})).status_code == 200
    first, second = await mailbox.wait(address, 2)
    assert first.link != second.link and first.message_id != second.message_id
    assert (await client.post(path_of(second))).status_code == 200
    # Verified now: a resend sends nothing more.
    assert (await client.post("/resend_confirmation", json={"email": address})).status_code == 200
    await drained(app)
    assert len(mailbox.to(address)) == 2


async def test_reset_works_once_and_ends_every_session(
    app: Quart, client: Any, mailbox: Mailbox
) -> None:
    address, before = await verified_user(client, mailbox)
    old_access, old_refresh = before["access_token"], before["refresh_token"]
    assert (await client.get("/sessions", headers=bearer(old_access))).status_code == 200

    forged = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    assert (await forgot(client, address, headers=forged)).status_code == 200
    mails = await mailbox.wait(address, 2)
    reset_mail = mails[-1]
    assert "evil.example" not in reset_mail.text + reset_mail.html
    assert reset_mail.subject == "Reset your password"
    path = path_of(reset_mail)
    assert path.startswith("/reset_password/")
    page = await client.get(path)
    assert page.status_code == 200
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"

    response = await client.post(path, json={"password": NEW_PASSWORD})
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert await response.get_json() == {"success": True, "message": RESET_DONE}
    assert "access_token" not in await response.get_data(as_text=True)  # no login: MFA stays
    again = await client.post(path, json={"password": "yet another passphrase"})
    await assert_error(again, 400, INVALID_RESET)

    # Every token from before the reset is dead; the old password no longer logs in.
    await assert_error(await client.get("/sessions", headers=bearer(old_access)), 401)
    refreshed = await client.post("/token/refresh", json={"refresh_token": old_refresh})
    await assert_error(refreshed, 401)
    await assert_error(await login(client, address), 401)
    assert (await login(client, address, NEW_PASSWORD)).status_code == 200

    notice = (await mailbox.wait(address, 3))[-1]
    assert notice.subject == "Your password was changed"
    assert notice.link == f"{BASE_URL}/forgot_password"
    assert notice.html and notice.message_id != reset_mail.message_id


async def test_update_password_sends_a_notice(client: Any, mailbox: Mailbox) -> None:
    address, body = await verified_user(client, mailbox)
    response = await client.post(
        "/update_password",
        json={"existing_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(body["access_token"]),
    )
    assert response.status_code == 200, await response.get_data(as_text=True)
    notice = (await mailbox.wait(address, 2))[-1]
    assert notice.subject == "Your password was changed"
    assert "password of your account was changed" in notice.text


async def test_link_of_another_user_fails(client: Any, mailbox: Mailbox) -> None:
    alice, bob = new_email(), new_email()
    await signup(client, alice)
    await signup(client, bob)
    (alice_mail,) = await mailbox.wait(alice)
    (bob_mail,) = await mailbox.wait(bob)
    _, _, alice_token, _ = path_of(alice_mail).split("/")
    bob_uid = path_of(bob_mail).split("/")[3]
    # Alice's token with Bob's uidb64 (or garbage) is refused, and verifies no one.
    await assert_error(await client.post(f"/verify/{alice_token}/{bob_uid}"), 400, INVALID_VERIFY)
    await assert_error(await client.post(f"/verify/{alice_token}/not-base64!"), 400, INVALID_VERIFY)
    bob_login = await (await login(client, bob)).get_json()
    assert bob_login["user"]["verified"] is False
    assert (await client.post(path_of(bob_mail))).status_code == 200

    await forgot(client, alice)
    reset_mail = (await mailbox.wait(alice, 2))[-1]
    _, _, token, _ = path_of(reset_mail).split("/")
    mismatched = await client.post(
        f"/reset_password/{token}/{bob_uid}", json={"password": NEW_PASSWORD}
    )
    await assert_error(mismatched, 400, INVALID_RESET)
    assert (await login(client, bob)).status_code == 200
    assert (await login(client, bob, NEW_PASSWORD)).status_code == 401


async def test_sixteen_concurrent_resets_one_success(
    app: Quart, client: Any, mailbox: Mailbox
) -> None:
    address = new_email()
    await signup(client, address)
    await mailbox.wait(address)
    await forgot(client, address)
    path = path_of((await mailbox.wait(address, 2))[-1])
    responses = await asyncio.gather(
        *(
            client.post(
                path, json={"password": f"parallel passphrase {i}"}, **from_ip(f"10.0.0.{i}")
            )
            for i in range(16)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * 15, statuses
    (winner,) = (i for i, r in enumerate(responses) if r.status_code == 200)
    assert (await login(client, address, f"parallel passphrase {winner}")).status_code == 200
    # Exactly one password-changed notice.
    await mailbox.wait(address, 3)
    await drained(app)
    assert [m.subject for m in mailbox.to(address)].count("Your password was changed") == 1


async def test_mail_in_the_users_language(app: Quart, client: Any, mailbox: Mailbox) -> None:
    address = new_email()
    await signup(client, address)
    await mailbox.wait(address)
    await rows(app, "UPDATE users SET language = 'de' WHERE email = :e", e=address)
    await forgot(client, address)
    mail = (await mailbox.wait(address, 2))[-1]
    assert mail.subject == "Passwort zurücksetzen"
    assert 'lang="de"' in mail.html
