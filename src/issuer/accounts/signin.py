"""The one authentication path. Every way of proving who you are — a password, an emailed
verification link, a second factor, a passkey, a social identity — is a :class:`Factor`;
:meth:`SignIn.sign_in` checks it and then, in the same transaction, either opens the login
session (ASVS 7.2.4: a new session on every authentication) or, when the account has MFA and
the factor proves one factor only, issues an MFA challenge instead.

A factor does its slow work (an argon2 verify) in ``check()``, outside any transaction, and its
atomic part (a single-use secret consumed, the login recorded only if the password is still the
one checked) in ``confirm()``, inside. A password that logs in on its own (no MFA) is the one
factor whose atomic part is a condition on the user's row: that condition, the login session,
the last login and the ``session.opened`` event are then one statement (PostgreSQL; one
transaction on SQLite) — the login every client makes costs two round trips, the read and that.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from issuer.accounts import queries
from issuer.accounts.models import User
from issuer.accounts.passwords import Passwords
from issuer.accounts.queries import PasswordProof
from issuer.accounts.sessions import LoginSessions, TokenPair
from issuer.clock import Clock
from issuer.db import Database
from issuer.errors import DomainError, Unauthenticated, Unavailable
from issuer.lib.network import Client
from issuer.lib.passwords import Verification
from issuer.mfa.challenges import MfaChallenges
from issuer.ops.metrics import LOGINS

log = logging.getLogger("issuer.audit")
AUTHENTICATION_FAILED = "Authentication failed"


class Factor(Protocol):
    """Something that proves who the caller is."""

    name: str  # for the audit log and the challenge: "password", "email_link", "totp", …
    multi_factor: bool  # it proves more than one factor (a second factor, a verified passkey)
    kind: str | None  # the login it completes, when the factor decides (a second factor)

    async def check(self) -> None:
        """The work done before the transaction (hashing); may refuse."""

    async def confirm(self, session: AsyncSession) -> User:
        """Inside the transaction: the atomic part; the user proven, or ``Unauthenticated``."""
        ...


@dataclass(frozen=True, slots=True)
class SignedIn:
    user: User
    pair: TokenPair
    kind: str


@dataclass(frozen=True, slots=True)
class MfaRequired:
    """The first factor passed; the login needs its second (``token``, until ``expires_at``),
    one of ``methods``."""

    user: User
    token: str
    expires_at: datetime
    methods: tuple[str, ...]


Outcome = SignedIn | MfaRequired


class SignIn:
    def __init__(
        self, db: Database, sessions: LoginSessions, challenges: MfaChallenges, clock: Clock
    ) -> None:
        self.db = db
        self.sessions = sessions
        self.challenges = challenges
        self.clock = clock

    async def sign_in(self, factor: Factor, *, kind: str, client: Client) -> Outcome:
        """Check ``factor``; open a login session of ``kind`` (``api``, ``browser``; a second
        factor completes the kind its challenge was issued for), or ask for the second factor.
        The outcome is counted in ``issuer_logins_total`` once the transaction is over."""
        try:
            outcome = await self._sign_in(factor, kind=kind, client=client)
        except DomainError as exc:
            LOGINS.labels(failed_outcome(exc)).inc()
            raise
        if isinstance(outcome, MfaRequired):
            LOGINS.labels("mfa_required").inc()
            return outcome
        LOGINS.labels("success").inc()
        log.info(
            "login entity_id=%s sid=%s… kind=%s with %s",
            outcome.user.entity_id.hex, outcome.pair.session_id[:6], outcome.kind, factor.name,
        )  # fmt: skip
        return outcome

    async def _sign_in(self, factor: Factor, *, kind: str, client: Client) -> Outcome:
        await factor.check()
        if isinstance(factor, PasswordFactor) and (proven := factor.proven()) is not None:
            return await self._open_proven(*proven, kind=kind, client=client)
        async with self.db.transaction() as session:
            user = await factor.confirm(session)
            if user.mfa_enabled and not factor.multi_factor:
                token, expires_at, methods = await self.challenges.issue(
                    session, user, first_factor=factor.name, kind=kind
                )
                return MfaRequired(user, token, expires_at, methods)
            kind = factor.kind or kind
            pair = await self.sessions.open(session, user, kind=kind, client=client)
            if pair is None:  # the account is gone
                raise Unauthenticated(AUTHENTICATION_FAILED, code="authentication_failed")
        return SignedIn(user, pair, kind)

    async def _open_proven(
        self, user: User, proof: PasswordProof, *, kind: str, client: Client
    ) -> SignedIn:
        """A password login of an account without MFA: the password check's atomic part (the
        hash verified is still the stored one) and the login are one statement on PostgreSQL,
        a transaction of its own, instead of four round trips in a transaction."""
        async with self.db.statement() as session:
            pair = await self.sessions.open(session, user, kind=kind, client=client, proof=proof)
        if pair is None:
            raise changed_meanwhile(user)
        user.password_hash = proof.new_hash or user.password_hash
        return SignedIn(user, pair, kind)


def failed_outcome(exc: DomainError) -> str:
    """The ``issuer_logins_total`` outcome of a refused sign-in."""
    if isinstance(exc, Unauthenticated):
        return "bad_credentials"  # wrong password, code, link or challenge
    if isinstance(exc, Unavailable):
        return "unavailable"  # a provider or the agent did not answer
    return "refused"


def changed_meanwhile(user: User) -> Unauthenticated:
    """The refusal of a password login whose proof no longer held when it was recorded (the
    password was changed or reset, or the account deactivated, during the verify)."""
    log.info("login failed (password changed meanwhile) entity_id=%s", user.entity_id.hex)
    return Unauthenticated(AUTHENTICATION_FAILED, code="authentication_failed")


class PasswordFactor:
    """A username or email and its password (001–004's login)."""

    name = "password"
    multi_factor = False
    kind: str | None = None

    def __init__(self, db: Database, passwords: Passwords, identifier: str, password: str) -> None:
        self._db = db
        self._passwords = passwords
        self._identifier = identifier
        self._password = password
        self._user: User | None = None
        self._result = Verification(False)

    async def check(self) -> None:
        # The same work whether or not the account exists (ASVS 6.3.8).
        async with self._db.reading() as session:
            self._user = await queries.user_by_login(session, self._identifier)
        stored = self._user.password_hash if self._user else None
        self._result = await self._passwords.verify(stored, self._password)

    def _proof(self) -> PasswordProof | None:
        """What recording the login must still find on the account's row; ``None`` when the
        password did not match (an account without a password never matches)."""
        user = self._user
        if user is None or user.password_hash is None or not self._result.ok or not user.active:
            return None
        return PasswordProof(user.password_hash, self._result.new_hash)

    def proven(self) -> tuple[User, PasswordProof] | None:
        """After :meth:`check`: the user and the proof, when the password logs in on its own
        (no second factor to ask for); ``None`` otherwise (then :meth:`confirm` decides)."""
        proof = self._proof()
        if self._user is None or proof is None or self._user.mfa_enabled:
            return None
        return self._user, proof

    async def confirm(self, session: AsyncSession) -> User:
        user, proof = self._user, self._proof()
        if user is None or proof is None:
            log.info("login failed entity_id=%s", user.entity_id.hex if user else "-")
            raise Unauthenticated(AUTHENTICATION_FAILED, code="authentication_failed")
        # Only if the hash is still the one checked (a password changed or reset meanwhile
        # wins); an outdated or legacy hash is upgraded in the same transaction.
        if not await queries.confirm_password(session, user.id, proof):
            raise changed_meanwhile(user)
        user.password_hash = proof.new_hash or user.password_hash
        return user
