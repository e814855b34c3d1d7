"""Accounts: registration and password changes; one transaction each (logging in is
``issuer.accounts.signin``).

Uniqueness is the database's job: a unique index on each normalised identifier, so N concurrent
registrations of one identifier make exactly one account. Hashing runs in the ``Passwords``
thread pool, outside any transaction; what a use case then writes is one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from issuer.accounts import queries
from issuer.accounts.emails import AccountEmails
from issuer.accounts.identifiers import email_key, username_key
from issuer.accounts.models import User
from issuer.accounts.passwords import Passwords
from issuer.accounts.sessions import LoginSessions, Principal
from issuer.clock import Clock
from issuer.db import Database
from issuer.errors import Conflict, Refused

log = logging.getLogger("issuer.audit")


@dataclass(frozen=True, slots=True)
class NewAccount:
    password: str
    email: str | None = None
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    language: str | None = None


class Accounts:
    def __init__(
        self,
        db: Database,
        passwords: Passwords,
        sessions: LoginSessions,
        emails: AccountEmails,
        clock: Clock,
    ) -> None:
        self.db = db
        self.passwords = passwords
        self.sessions = sessions
        self.emails = emails
        self.clock = clock

    async def register(self, account: NewAccount) -> User | None:
        """Create the account (with its ``user.created`` event and verification email);
        ``None`` when the email or username is taken, after telling the owner of a taken email.
        Password rules are the request schema's; the import command may pass legacy ones."""
        user = User(
            email=account.email.strip() if account.email else None,
            email_key=email_key(account.email) if account.email else None,
            username=account.username.strip() if account.username else None,
            username_key=username_key(account.username) if account.username else None,
            first_name=account.first_name,
            last_name=account.last_name,
            language=account.language,
            password_hash=await self.passwords.hash(account.password),
            created_at=self.clock.now(),
        )
        try:
            async with self.db.transaction() as session:
                await queries.add_user(session, user)
                await self.emails.created(session, user)
        except IntegrityError:
            log.info("registration refused: identifier taken")
            if account.email:
                await self.emails.signup_taken(account.email)
            return None
        log.info("account created entity_id=%s", user.entity_id.hex)
        return user

    async def username_taken(self, username: str) -> bool:
        async with self.db.session() as session:
            return await queries.user_by_username(session, username) is not None

    async def update_profile(self, principal: Principal, username: str, email: str | None) -> User:
        """003's account page: a new username and email. A changed email is unverified until
        its new verification link is used; a taken username or email is refused (409)."""
        user = principal.user
        new_email = email.strip() if email else None
        email_changed = (email_key(new_email) if new_email else None) != user.email_key
        try:
            async with self.db.transaction() as session:
                found = await queries.user_by_id(session, user.id)
                assert found is not None
                found.username, found.username_key = username.strip(), username_key(username)
                if email_changed:
                    found.email = new_email
                    found.email_key = email_key(new_email) if new_email else None
                    found.verified, found.verified_at = False, None
                await session.flush()
                await self.emails.profile_changed(session, found, verify=email_changed)
        except IntegrityError as exc:
            raise Conflict("That username or email is taken.", code="taken") from exc
        return found

    async def change_password(self, principal: Principal, existing: str, new: str) -> None:
        """ASVS 6.2.3: the current password is required. In one transaction: the new hash, the
        end of every other session of the user, the ``password.changed`` event and notice."""
        user = principal.user
        if existing == new:
            raise Refused("Existing and new password cannot be same.")
        if not (await self.passwords.verify(user.password_hash, existing)).ok:
            log.info("password change refused: wrong password entity_id=%s", user.entity_id.hex)
            raise Refused("Provided existing password is invalid")
        new_hash = await self.passwords.hash(new)
        async with self.db.transaction() as session:
            if not await queries.replace_password_hash(
                session, user.id, old_hash=user.password_hash, new_hash=new_hash
            ):
                raise Refused("Provided existing password is invalid")
            await self.sessions.revoke_all(
                session, user, "password_changed", keep=principal.session.id
            )
            await self.emails.password_changed(session, user)
        user.password_hash = new_hash
        log.info("password changed entity_id=%s", user.entity_id.hex)
