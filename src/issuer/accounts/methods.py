"""The ways a user can log in (a password, an identity provider, a passkey) and the rule that
one always remains (004's ``DELETE /social/<id>``: "the last way to log in is refused")."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from issuer.accounts.models import User
from issuer.errors import Refused
from issuer.mfa.models import Passkey
from issuer.social.models import Identity


async def login_ways(session: AsyncSession, user: User) -> int:
    """How many ways ``user`` has to log in: identity providers, a password, passkeys. Take
    the user's lock first (``issuer.social.queries.lock_user``) when the answer decides a
    removal, so two removals cannot each count the other's method as still there."""
    providers = await session.scalar(
        select(func.count()).select_from(Identity).where(Identity.user_id == user.id)
    )
    passkeys = await session.scalar(
        select(func.count()).select_from(Passkey).where(Passkey.user_id == user.id)
    )
    return int(providers or 0) + int(passkeys or 0) + (user.password_hash is not None)


def last_login_method() -> Refused:
    """The refusal to remove the only way left to log in (400 ``last_login_method``)."""
    return Refused(
        "This is your only way to log in: add a password or another login method before "
        "removing it.",
        code="last_login_method",
    )
