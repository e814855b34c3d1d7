"""The second factors' SQL. Every single-use secret is consumed by one conditional ``UPDATE``
whose row count decides, so concurrent submissions of one code succeed exactly once
(ASVS 6.5.1, 6.5.2)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from issuer.accounts.models import User
from issuer.mfa.models import MfaChallenge, OtpMethod, Passkey, RecoveryCode, WebAuthnChallenge

# --- TOTP ------------------------------------------------------------------------------------


async def otp_method(session: AsyncSession, user_id: int) -> OtpMethod | None:
    return await session.scalar(select(OtpMethod).where(OtpMethod.user_id == user_id))


async def replace_pending_secret(
    session: AsyncSession, user_id: int, sealed: str, now: datetime
) -> None:
    """A new, unconfirmed secret for a user whose TOTP is not enabled."""
    await session.execute(delete(OtpMethod).where(OtpMethod.user_id == user_id))
    session.add(OtpMethod(user_id=user_id, secret=sealed, created_at=now))
    await session.flush()


async def confirm_secret(session: AsyncSession, user_id: int, now: datetime) -> None:
    await session.execute(
        update(OtpMethod).where(OtpMethod.user_id == user_id).values(confirmed_at=now)
    )


async def use_step(session: AsyncSession, user_id: int, step: int) -> bool:
    """Record ``step`` as used if it is later than every step used before (a code works once,
    and never one older than the last used)."""
    result = await session.execute(
        update(OtpMethod)
        .where(OtpMethod.user_id == user_id)
        .where((OtpMethod.last_used_step.is_(None)) | (OtpMethod.last_used_step < step))
        .values(last_used_step=step)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def set_mfa(session: AsyncSession, user_id: int, *, enabled: bool, now: datetime) -> None:
    await session.execute(update(User).where(User.id == user_id).values(mfa_enabled=enabled))
    await session.execute(
        update(OtpMethod)
        .where(OtpMethod.user_id == user_id)
        .values(enabled_at=now if enabled else None)
    )


async def remove_totp(session: AsyncSession, user_id: int) -> None:
    await session.execute(delete(OtpMethod).where(OtpMethod.user_id == user_id))
    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))


# --- recovery codes --------------------------------------------------------------------------


async def replace_recovery_codes(
    session: AsyncSession, user_id: int, codes: list[tuple[str, str]], now: datetime
) -> None:
    """``codes``: (fingerprint, sealed code) pairs replacing all the user's codes."""
    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    session.add_all(
        RecoveryCode(user_id=user_id, fingerprint=f, sealed=s, created_at=now) for f, s in codes
    )
    await session.flush()


async def unused_recovery_codes(session: AsyncSession, user_id: int) -> list[RecoveryCode]:
    rows = await session.scalars(
        select(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
        .order_by(RecoveryCode.id)
    )
    return list(rows)


async def count_unused_recovery_codes(session: AsyncSession, user_id: int) -> int:
    found = await session.scalar(
        select(func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
    )
    return int(found or 0)


async def use_recovery_code(
    session: AsyncSession, user_id: int, fingerprint: str, now: datetime
) -> bool:
    result = await session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.fingerprint == fingerprint)
        .where(RecoveryCode.used_at.is_(None))
        .values(used_at=now)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


# --- MFA challenges ---------------------------------------------------------------------------


async def count_attempt(
    session: AsyncSession, challenge_id: str, user_id: int, now: datetime, max_attempts: int
) -> bool:
    """Count one attempt at a live challenge; ``False`` if it is used, expired or exhausted."""
    result = await session.execute(
        update(MfaChallenge)
        .where(MfaChallenge.id == challenge_id, MfaChallenge.user_id == user_id)
        .where(MfaChallenge.used_at.is_(None), MfaChallenge.expires_at > now)
        .where(MfaChallenge.attempts < max_attempts)
        .values(attempts=MfaChallenge.attempts + 1)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def spend_challenge(
    session: AsyncSession, challenge_id: str, user_id: int, now: datetime
) -> MfaChallenge | None:
    """Spend a live challenge (once); the challenge, or ``None`` if it was not live."""
    return await session.scalar(
        update(MfaChallenge)
        .where(MfaChallenge.id == challenge_id, MfaChallenge.user_id == user_id)
        .where(MfaChallenge.used_at.is_(None), MfaChallenge.expires_at > now)
        .values(used_at=now)
        .returning(MfaChallenge)
    )


# --- passkeys ---------------------------------------------------------------------------------


async def passkeys_of(session: AsyncSession, user_id: int) -> list[Passkey]:
    rows = await session.scalars(
        select(Passkey).where(Passkey.user_id == user_id).order_by(Passkey.created_at)
    )
    return list(rows)


async def has_passkeys(session: AsyncSession, user_id: int) -> bool:
    found = await session.scalar(select(Passkey.id).where(Passkey.user_id == user_id).limit(1))
    return found is not None


async def passkey_by_credential(session: AsyncSession, credential_id: bytes) -> Passkey | None:
    return await session.scalar(select(Passkey).where(Passkey.credential_id == credential_id))


async def record_passkey_use(
    session: AsyncSession, passkey_id: int, *, old_count: int, new_count: int, now: datetime
) -> bool:
    """Store the authenticator's new signature counter, unless another use got there first."""
    result = await session.execute(
        update(Passkey)
        .where(Passkey.id == passkey_id, Passkey.sign_count == old_count)
        .values(sign_count=new_count, last_used_at=now)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def delete_own_passkey(session: AsyncSession, user_id: int, entity_id: uuid.UUID) -> bool:
    result = await session.execute(
        delete(Passkey).where(Passkey.user_id == user_id, Passkey.entity_id == entity_id)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def spend_webauthn_challenge(
    session: AsyncSession, challenge_id: str, purpose: str, binding: str, now: datetime
) -> WebAuthnChallenge | None:
    return await session.scalar(
        update(WebAuthnChallenge)
        .where(WebAuthnChallenge.id == challenge_id, WebAuthnChallenge.purpose == purpose)
        .where(WebAuthnChallenge.binding == binding, WebAuthnChallenge.used_at.is_(None))
        .where(WebAuthnChallenge.expires_at > now)
        .values(used_at=now)
        .returning(WebAuthnChallenge)
    )


async def purge_expired(session: AsyncSession, before: datetime) -> int:
    """Delete MFA challenges and WebAuthn ceremonies that expired before ``before``."""
    removed = 0
    for model in (MfaChallenge, WebAuthnChallenge):
        result = await session.execute(delete(model).where(model.expires_at < before))
        removed += int(result.rowcount)  # type: ignore[attr-defined]
    return removed
