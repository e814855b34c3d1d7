"""Accounts: registration, password login and password changes; one transaction each.

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
from issuer.accounts.sessions import LoginSessions, Principal, TokenPair
from issuer.clock import Clock
from issuer.db import Database
from issuer.errors import Refused, Unauthenticated
from issuer.lib.network import Client

log = logging.getLogger("issuer.audit")
AUTHENTICATION_FAILED = "Authentication failed"


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
                self.emails.created(session, user)
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

    async def login(
        self, identifier: str, password: str, *, kind: str, client: Client
    ) -> tuple[User, TokenPair]:
        """Check the password and open a login session, in one transaction.

        The same work whether or not the account exists (ASVS 6.3.8). The login is recorded
        only if the password hash is still the one just verified, so a password changed or
        reset meanwhile wins; a legacy or outdated hash is upgraded in the same transaction.
        """
        for _ in range(2):  # a second try only if a concurrent login upgraded the hash
            async with self.db.session() as session:
                user = await queries.user_by_login(session, identifier)
            result = await self.passwords.verify(user.password_hash if user else None, password)
            if user is None or not result.ok or not user.active:
                log.info("login failed entity_id=%s", user.entity_id.hex if user else "-")
                raise Unauthenticated(AUTHENTICATION_FAILED, code="authentication_failed")
            now = self.clock.now()
            async with self.db.transaction() as session:
                recorded = await queries.record_login(
                    session, user.id, checked_hash=user.password_hash, new_hash=result.new_hash,
                    now=now,
                )  # fmt: skip
                if recorded:
                    pair = self.sessions.open(session, user, kind=kind, client=client)
            if recorded:
                user.last_login_at = now
                user.password_hash = result.new_hash or user.password_hash
                return user, pair
        log.info("login failed: the credentials changed meanwhile")
        raise Unauthenticated(AUTHENTICATION_FAILED, code="authentication_failed")

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
                session, user.id, "password_changed", keep=principal.session.id
            )
            self.emails.password_changed(session, user)
        user.password_hash = new_hash
        log.info("password changed entity_id=%s", user.entity_id.hex)
