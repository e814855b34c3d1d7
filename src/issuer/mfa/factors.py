"""The second factors, as :class:`issuer.accounts.signin.Factor` s: each needs the MFA challenge
of the login's first step (an email and a guessed code alone never log anyone in), spends it
in the transaction that opens the login, and completes the kind of login it was issued for."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from issuer.accounts.identifiers import email_key
from issuer.accounts.models import User
from issuer.errors import Refused, Unauthenticated
from issuer.lib.tokens import Claims
from issuer.mfa.challenges import MfaChallenges, refused

log = logging.getLogger("issuer.audit")
Check = Callable[[AsyncSession, User], Awaitable[None]]


class SecondFactor:
    """The challenge plus one check of the second factor (``verify``), which refuses."""

    multi_factor = True

    def __init__(
        self,
        name: str,
        challenges: MfaChallenges,
        token: str | None,
        verify: Check,
        *,
        email: str | None = None,
        wrong: str,
    ) -> None:
        self.name = name
        self.kind: str | None = None
        self._challenges = challenges
        self._token = token
        self._verify = verify
        self._email = email
        self._wrong = wrong
        self._claims: Claims | None = None
        self._user: User | None = None

    async def check(self) -> None:
        self._claims = self._challenges.claims(self._token)
        self._user = await self._challenges.attempt(self._claims)  # a wrong code counts too
        # 004's clients name the account too; it must be the challenge's.
        if self._email is not None and (
            self._user.email is None or email_key(self._user.email) != email_key(self._email)
        ):
            log.info("second factor refused: another account's challenge")
            raise Unauthenticated(self._wrong, code=f"invalid_{self.name}")

    async def confirm(self, session: AsyncSession) -> User:
        if self._claims is None or self._user is None:
            raise refused()
        try:
            await self._verify(session, self._user)
        except Refused as exc:  # a wrong second factor is a failed login: 401
            raise Unauthenticated(exc.message, code=exc.code) from exc
        challenge = await self._challenges.spend(session, self._claims, self._user)
        self.kind = challenge.kind
        return self._user
