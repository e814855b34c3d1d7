"""Passkeys (WebAuthn Level 3, the ``webauthn`` library): registered from the dashboard, used as
the second factor of a login, or alone as a passwordless login.

Every ceremony's challenge is single use, expires in five minutes and is bound to what asked
for it: the login session that registers, the MFA challenge of the login it completes, or the
browser session of a passwordless login. The relying party id and the allowed origins come from
configuration. A passwordless login requires user verification (the authenticator's PIN or
biometric), so it proves two factors and needs no further challenge.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import uuid
from datetime import timedelta
from typing import Any

import webauthn
from sqlalchemy.ext.asyncio import AsyncSession
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from issuer.accounts.events import user_event
from issuer.accounts.methods import last_login_method, login_ways
from issuer.accounts.models import User
from issuer.accounts.sessions import Principal
from issuer.clock import Clock
from issuer.db import Database
from issuer.errors import NotFound, Refused, Unauthenticated
from issuer.mfa import queries
from issuer.mfa.models import Passkey, WebAuthnChallenge
from issuer.outbox.service import Outbox
from issuer.social.queries import lock_user

log = logging.getLogger("issuer.audit")
CEREMONY_TTL = timedelta(minutes=5)
REGISTER, SECOND, LOGIN = "register", "second", "login"
PASSKEY_REFUSED = "The passkey could not be verified."


def raw_id(credential: dict[str, Any]) -> bytes:
    """The credential id of a ``PublicKeyCredential`` JSON (base64url ``rawId``)."""
    value = str(credential.get("rawId") or credential.get("id") or "")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError as exc:
        raise Unauthenticated(PASSKEY_REFUSED, code="passkey_refused") from exc


class Passkeys:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        clock: Clock,
        *,
        rp_id: str,
        rp_name: str,
        origins: list[str],
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.clock = clock
        self.rp_id = rp_id
        self.rp_name = rp_name
        self.origins = origins

    # --- ceremonies ------------------------------------------------------------------------

    def _challenge(
        self,
        session: AsyncSession,
        purpose: str,
        binding: str,
        challenge: bytes,
        user_id: int | None,
    ) -> str:
        now = self.clock.now()
        row = WebAuthnChallenge(
            id=secrets.token_urlsafe(24), purpose=purpose, binding=binding, user_id=user_id,
            challenge=challenge, created_at=now, expires_at=now + CEREMONY_TTL,
        )  # fmt: skip
        session.add(row)
        return row.id

    async def _spend(
        self, session: AsyncSession, ceremony: str, purpose: str, binding: str
    ) -> WebAuthnChallenge:
        """Spend a live ceremony of ``purpose`` bound to ``binding`` (once). A registration
        (the caller is logged in) is refused with 400, a login with 401."""
        found = await queries.spend_webauthn_challenge(
            session, ceremony, purpose, binding, self.clock.now()
        )
        if found is None:
            log.info("webauthn %s refused: no such ceremony", purpose)
            error = Refused if purpose == REGISTER else Unauthenticated
            raise error(PASSKEY_REFUSED, code="passkey_refused")
        return found

    async def registration_options(self, principal: Principal) -> dict[str, Any]:
        """Options for ``navigator.credentials.create()``, and the ceremony's id."""
        user = principal.user
        async with self.db.transaction() as session:
            existing = [
                PublicKeyCredentialDescriptor(id=p.credential_id)
                for p in await queries.passkeys_of(session, user.id)
            ]
            options = webauthn.generate_registration_options(
                rp_id=self.rp_id,
                rp_name=self.rp_name,
                user_id=user.entity_id.bytes,
                user_name=user.email or user.username or user.entity_id.hex,
                exclude_credentials=existing,
                authenticator_selection=AuthenticatorSelectionCriteria(
                    resident_key=ResidentKeyRequirement.PREFERRED,
                    user_verification=UserVerificationRequirement.PREFERRED,
                ),
            )
            ceremony = self._challenge(
                session, REGISTER, principal.session.id, options.challenge, user.id
            )
        return {"ceremony": ceremony, "options": json.loads(webauthn.options_to_json(options))}

    async def register(
        self, principal: Principal, ceremony: str, credential: dict[str, Any], name: str
    ) -> Passkey:
        user = principal.user
        async with self.db.transaction() as session:
            found = await self._spend(session, ceremony, REGISTER, principal.session.id)
            try:
                verified = webauthn.verify_registration_response(
                    credential=credential,
                    expected_challenge=found.challenge,
                    expected_rp_id=self.rp_id,
                    expected_origin=self.origins,
                )
            except WebAuthnException as exc:
                log.info("passkey registration refused entity_id=%s: %s", user.entity_id.hex, exc)
                raise Refused(PASSKEY_REFUSED, code="passkey_refused") from exc
            if await queries.passkey_by_credential(session, verified.credential_id):
                raise Refused("This passkey is already registered.", code="passkey_exists")
            passkey = Passkey(
                user_id=user.id, credential_id=verified.credential_id,
                public_key=verified.credential_public_key, sign_count=verified.sign_count,
                transports=credential.get("response", {}).get("transports"), name=name,
                created_at=self.clock.now(),
            )  # fmt: skip
            session.add(passkey)
            await self.outbox.event(session, "passkey.created", user_event(user), user_id=user.id)
        log.info("passkey registered entity_id=%s", user.entity_id.hex)
        return passkey

    async def authentication_options(
        self, purpose: str, binding: str, user_id: int | None
    ) -> dict[str, Any]:
        """Options for ``navigator.credentials.get()``: the user's passkeys for a second factor
        (``SECOND``), any discoverable one for a passwordless login (``LOGIN``)."""
        async with self.db.transaction() as session:
            allowed = []
            if user_id is not None:
                allowed = [
                    PublicKeyCredentialDescriptor(id=p.credential_id)
                    for p in await queries.passkeys_of(session, user_id)
                ]
            options = webauthn.generate_authentication_options(
                rp_id=self.rp_id,
                allow_credentials=allowed,
                user_verification=(
                    UserVerificationRequirement.REQUIRED
                    if purpose == LOGIN
                    else UserVerificationRequirement.PREFERRED
                ),
            )
            ceremony = self._challenge(session, purpose, binding, options.challenge, user_id)
        return {"ceremony": ceremony, "options": json.loads(webauthn.options_to_json(options))}

    async def verify_assertion(
        self,
        session: AsyncSession,
        purpose: str,
        ceremony: str,
        binding: str,
        credential: dict[str, Any],
    ) -> User:
        """Spend the ceremony and check the assertion; the passkey's user."""
        found = await self._spend(session, ceremony, purpose, binding)
        passkey = await queries.passkey_by_credential(session, raw_id(credential))
        if passkey is None or (found.user_id is not None and passkey.user_id != found.user_id):
            raise Unauthenticated(PASSKEY_REFUSED, code="passkey_refused")
        try:
            verified = webauthn.verify_authentication_response(
                credential=credential,
                expected_challenge=found.challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origins,
                credential_public_key=passkey.public_key,
                credential_current_sign_count=passkey.sign_count,
                require_user_verification=purpose == LOGIN,
            )
        except WebAuthnException as exc:
            log.info("passkey assertion refused: %s", exc)
            raise Unauthenticated(PASSKEY_REFUSED, code="passkey_refused") from exc
        if not await queries.record_passkey_use(
            session, passkey.id, old_count=passkey.sign_count,
            new_count=verified.new_sign_count, now=self.clock.now(),
        ):  # fmt: skip
            raise Unauthenticated(PASSKEY_REFUSED, code="passkey_refused")
        user = await session.get(User, passkey.user_id)
        if user is None or not user.active:
            raise Unauthenticated(PASSKEY_REFUSED, code="passkey_refused")
        return user

    # --- managing --------------------------------------------------------------------------

    async def list(self, principal: Principal) -> list[Passkey]:
        async with self.db.session() as session:
            return await queries.passkeys_of(session, principal.user.id)

    async def delete(self, principal: Principal, entity_id: uuid.UUID) -> None:
        """Remove one of the user's passkeys; ``NotFound`` for another's or an unknown one,
        ``Refused`` (``last_login_method``) when it is the last way left to log in."""
        async with self.db.transaction() as session:
            # The user's lock first: a password or provider removed at the same moment waits,
            # and then counts without this passkey (or this waits, and counts without it).
            user = await lock_user(session, principal.user.id)
            if user is None:
                raise Unauthenticated()
            if not await queries.delete_own_passkey(session, user.id, entity_id):
                raise NotFound("No such passkey.")
            if await login_ways(session, user) == 0:
                raise last_login_method()  # the deletion rolls back
            await self.outbox.event(
                session, "passkey.deleted", user_event(principal.user),
                user_id=principal.user.id,
            )  # fmt: skip
        log.info("passkey removed entity_id=%s", principal.user.entity_id.hex)


class PasskeyFactor:
    """A passwordless login with a passkey (user verification required: two factors)."""

    name = "passkey"
    multi_factor = True
    kind: str | None = None

    def __init__(
        self, passkeys: Passkeys, ceremony: str, binding: str, credential: dict[str, Any]
    ) -> None:
        self._passkeys, self._ceremony = passkeys, ceremony
        self._binding, self._credential = binding, credential

    async def check(self) -> None:
        return None

    async def confirm(self, session: AsyncSession) -> User:
        return await self._passkeys.verify_assertion(
            session, LOGIN, self._ceremony, self._binding, self._credential
        )
