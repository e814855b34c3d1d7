"""TOTP enrolment and recovery codes (004's ``/qrcode``, ``/verify_otp``, ``/setup_mfa``,
``/recovery_codes``), and checking a second factor.

Rules (SECURITY.md): 30 s steps, ±1 step of drift, 6 digits, compared in constant time; a step
works once per account (``last_used_step``), each recovery code once; secrets and codes are
sealed with AES-GCM under keys derived from the server secret, codes found by a keyed
fingerprint. Changing a factor needs proof (ASVS 6.2.3/7.5.1): the password to start, a current
code to enable, a code or a recovery code to disable.
"""

from __future__ import annotations

import logging
import secrets

from sqlalchemy.ext.asyncio import AsyncSession

from issuer.accounts.events import user_event
from issuer.accounts.models import User
from issuer.accounts.passwords import Passwords
from issuer.accounts.sessions import Principal
from issuer.clock import Clock
from issuer.db import Database
from issuer.errors import Conflict, InvalidInput, Refused
from issuer.lib import totp
from issuer.lib.secretbox import SecretBox
from issuer.mfa import queries
from issuer.outbox.queries import lock_user_events
from issuer.outbox.service import Outbox

log = logging.getLogger("issuer.audit")
RECOVERY_CODES = 5
INVALID_OTP = "You have supplied an invalid MFA token!"
INVALID_RECOVERY_CODE = "You have supplied an invalid recovery code!"


def new_recovery_code() -> str:
    """32 upper-case hex characters (128 bits), as 004's codes."""
    return secrets.token_hex(16).upper()


class Totp:
    def __init__(
        self,
        db: Database,
        passwords: Passwords,
        outbox: Outbox,
        clock: Clock,
        *,
        secrets_box: SecretBox,
        codes_box: SecretBox,
        issuer_name: str,
    ) -> None:
        self.db = db
        self.passwords = passwords
        self.outbox = outbox
        self.clock = clock
        self.secrets_box = secrets_box
        self.codes_box = codes_box
        self.issuer_name = issuer_name

    # --- checking a code (also used by the second-factor login) --------------------------

    async def use_code(self, session: AsyncSession, user: User, code: str) -> None:
        """Accept ``code`` for the user's enabled TOTP and spend its step; refused with 004's
        message when it is wrong, too old or already used."""
        method = await queries.otp_method(session, user.id)
        if method is None or method.enabled_at is None:
            raise Refused(INVALID_OTP, code="invalid_otp")
        await self._spend(session, user, self.secrets_box.open(method.secret), code)

    async def _spend(self, session: AsyncSession, user: User, secret: str, code: str) -> None:
        step = totp.matching_step(secret, code, self.clock.now())
        if step is None or not await queries.use_step(session, user.id, step):
            log.info("totp refused entity_id=%s", user.entity_id.hex)
            raise Refused(INVALID_OTP, code="invalid_otp")

    async def use_recovery_code(self, session: AsyncSession, user: User, code: str) -> None:
        """Spend one of the user's recovery codes (exactly once, even concurrently)."""
        fingerprint = self.codes_box.fingerprint(code.strip().upper())
        if not await queries.use_recovery_code(session, user.id, fingerprint, self.clock.now()):
            log.info("recovery code refused entity_id=%s", user.entity_id.hex)
            raise Refused(INVALID_RECOVERY_CODE, code="invalid_recovery_code")
        await self.outbox.event(session, "recovery_code.used", user_event(user), user_id=user.id)
        log.info("recovery code used entity_id=%s", user.entity_id.hex)

    # --- enrolment -------------------------------------------------------------------------

    async def begin(self, principal: Principal, password: str | None) -> str:
        """A new pending secret; its ``otpauth://`` URI. An account with a password must give
        it (004's ``login_type`` "signup"); one without (a social login) need not."""
        user = principal.user
        if user.mfa_enabled:
            raise Conflict("Two-factor authentication is already enabled.", code="mfa_enabled")
        if user.password_hash is not None:
            if not password:
                raise Refused("Password is required.", code="password_required")
            if not (await self.passwords.verify(user.password_hash, password)).ok:
                log.info("totp enrolment refused: wrong password entity_id=%s", user.entity_id.hex)
                raise Refused("Password is invalid.", code="invalid_password")
        secret = totp.new_secret()
        async with self.db.transaction() as session:
            await queries.replace_pending_secret(
                session, user.id, self.secrets_box.seal(secret), self.clock.now()
            )
        log.info("totp enrolment started entity_id=%s", user.entity_id.hex)
        account = user.email or user.username or user.entity_id.hex
        return totp.provisioning_uri(secret, account=account, issuer=self.issuer_name)

    async def confirm(self, principal: Principal, code: str) -> list[str]:
        """A code of the pending secret proves the app has it: confirmed, and five new recovery
        codes (shown here once). The code's step is not spent: enabling may use it."""
        user = principal.user
        async with self.db.transaction() as session:
            method = await queries.otp_method(session, user.id)
            if method is None:
                raise Conflict("Scan a QR code first (POST /qrcode).", code="no_pending_secret")
            secret = self.secrets_box.open(method.secret)
            if totp.matching_step(secret, code, self.clock.now()) is None:
                raise Refused(INVALID_OTP, code="invalid_otp")
            await queries.confirm_secret(session, user.id, self.clock.now())
            codes = await self._new_recovery_codes(session, user)
        log.info("totp confirmed entity_id=%s", user.entity_id.hex)
        return codes

    async def enable(self, principal: Principal, code: str) -> None:
        user = principal.user
        async with self.db.transaction() as session:
            method = await queries.otp_method(session, user.id)
            if method is None or method.confirmed_at is None:
                raise Conflict("Verify a code first (POST /verify_otp).", code="otp_not_verified")
            await self._spend(session, user, self.secrets_box.open(method.secret), code)
            await queries.set_mfa(session, user.id, enabled=True, now=self.clock.now())
            await self.outbox.event(
                session, "otp_method.enabled", user_event(user), user_id=user.id
            )
        user.mfa_enabled = True
        log.info("mfa enabled entity_id=%s", user.entity_id.hex)

    async def disable(self, principal: Principal, code: str | None, recovery: str | None) -> None:
        """Needs a current code or a recovery code: changing a factor needs proof."""
        user = principal.user
        if not user.mfa_enabled:
            raise Conflict("Two-factor authentication is not enabled.", code="mfa_disabled")
        async with self.db.transaction() as session:
            if code:
                await self.use_code(session, user, code)
            elif recovery:
                await self.use_recovery_code(session, user, recovery)
            else:
                raise InvalidInput("OTP is required.")
            await queries.set_mfa(session, user.id, enabled=False, now=self.clock.now())
            await queries.remove_totp(session, user.id)
            await self.outbox.event(
                session, "otp_method.disabled", user_event(user), user_id=user.id
            )
        user.mfa_enabled = False
        log.info("mfa disabled entity_id=%s", user.entity_id.hex)

    # --- recovery codes --------------------------------------------------------------------

    async def _new_recovery_codes(self, session: AsyncSession, user: User) -> list[str]:
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        sealed = [(self.codes_box.fingerprint(c), self.codes_box.seal(c)) for c in codes]
        # The user's lock first: two replacements run one after the other, so the second's
        # DELETE sees the first's codes (on PostgreSQL, without it, both sets stayed valid).
        await lock_user_events(session, user.id)
        await queries.replace_recovery_codes(session, user.id, sealed, self.clock.now())
        await self.outbox.event(
            session, "recovery_code.regenerated", user_event(user), user_id=user.id
        )
        return codes

    async def recovery_codes(self, principal: Principal) -> tuple[list[str], int]:
        """The unused codes (opened for display) and how many there are."""
        async with self.db.session() as session:
            rows = await queries.unused_recovery_codes(session, principal.user.id)
        return [self.codes_box.open(r.sealed) for r in rows], len(rows)

    async def recovery_codes_left(self, principal: Principal) -> int:
        async with self.db.session() as session:
            return await queries.count_unused_recovery_codes(session, principal.user.id)

    async def regenerate(self, principal: Principal) -> list[str]:
        user = principal.user
        async with self.db.transaction() as session:
            if await queries.otp_method(session, user.id) is None:
                raise Conflict("Set up two-factor authentication first.", code="no_totp")
            codes = await self._new_recovery_codes(session, user)
        log.info("recovery codes regenerated entity_id=%s", user.entity_id.hex)
        return codes
