"""MFA over the API, as 004 has it (``/qrcode``, ``/verify_otp``, ``/setup_mfa``,
``/recovery_codes``, ``/login_mfa``, ``/verify_recovery_code``), and passkeys.

Enrolment and passkey management need a login (an access token, or the browser session with
its CSRF token). The second-factor steps need the MFA challenge of the login's first step; its
token is good for nothing else (every other endpoint takes access tokens only).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import timedelta
from typing import Any

from quart import Blueprint, session
from quart_rate_limiter import rate_limit
from quart_schema import document_response, validate_request, validate_response

from issuer.accounts.auth import login_required, principal
from issuer.accounts.limits import MFA_LIMITS, ip_key
from issuer.accounts.outcomes import mfa_token_from, settle
from issuer.accounts.responses import user_out
from issuer.accounts.signin import Factor, SignedIn
from issuer.lib.qr import qr_png_base64
from issuer.mfa.factors import SecondFactor
from issuer.mfa.passkeys import LOGIN, SECOND, PasskeyFactor
from issuer.mfa.schemas import (
    LoginMfaIn,
    MfaChallengeIn,
    MfaLoginOut,
    OtpIn,
    OtpVerified,
    PasskeyCreatedOut,
    PasskeyLoginIn,
    PasskeyOptionsOut,
    PasskeyOut,
    PasskeyRegisterIn,
    PasskeysOut,
    PasswordlessLoginIn,
    QrCodeIn,
    QrCodeOut,
    RecoveryCodesOut,
    RecoveryLoginIn,
    SetupMfaIn,
    VerifyOtpOut,
    otp_text,
)
from issuer.mfa.service import INVALID_OTP, INVALID_RECOVERY_CODE
from issuer.schemas import ErrorBody, Message
from issuer.web.bodies import takes_no_body
from issuer.web.client import current_client
from issuer.web.context import services, settings

blueprint = Blueprint("mfa", __name__)
MINUTE = timedelta(minutes=1)
PASSWORDLESS = "passwordless"  # the browser-session key binding a passwordless ceremony


@blueprint.post("/qrcode")
@rate_limit(10, MINUTE, key_function=ip_key)
@login_required
@validate_request(QrCodeIn)
@validate_response(QrCodeOut)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 403)
@document_response(ErrorBody, 409)
async def qrcode(data: QrCodeIn) -> QrCodeOut:
    """Start TOTP enrolment: a new secret, as a QR code of its ``otpauth://`` URI.

    ``password`` is needed for an account that has one. The secret stays pending (stored
    encrypted) until a code from it is verified (``/verify_otp``) and MFA enabled.
    """
    uri = await services().totp.begin(await principal(), data.password)
    return QrCodeOut(image=await asyncio.to_thread(qr_png_base64, uri))


@blueprint.post("/verify_otp")
@rate_limit(10, MINUTE, key_function=ip_key)
@login_required
@validate_request(OtpIn)
@validate_response(VerifyOtpOut)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 403)
@document_response(ErrorBody, 409)
async def verify_otp(data: OtpIn) -> VerifyOtpOut:
    """Check a code of the pending secret; answers five recovery codes, shown this once."""
    codes = await services().totp.confirm(await principal(), otp_text(data.otp))
    return VerifyOtpOut(data=OtpVerified(codes=codes))


@blueprint.post("/setup_mfa")
@rate_limit(10, MINUTE, key_function=ip_key)
@login_required
@validate_request(SetupMfaIn)
@validate_response(Message)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 403)
@document_response(ErrorBody, 409)
async def setup_mfa(data: SetupMfaIn) -> Message:
    """Enable MFA (a current ``otp``) or disable it (an ``otp`` or a ``recovery_code``)."""
    totp, current = services().totp, await principal()
    if data.mfa_enabled:
        await totp.enable(current, otp_text(data.otp))  # type: ignore[arg-type]
        return Message(message="MFA enabled successfully")
    otp = otp_text(data.otp) if data.otp is not None else None
    await totp.disable(current, otp, data.recovery_code)
    return Message(message="MFA disabled successfully")


@blueprint.get("/recovery_codes")
@login_required
@validate_response(RecoveryCodesOut)
async def list_recovery_codes() -> RecoveryCodesOut:
    """Your unused recovery codes (only how many remain, if the server shows them once)."""
    codes, remaining = await services().totp.recovery_codes(await principal())
    shown = None if settings().recovery_codes_show_once else codes
    return RecoveryCodesOut(data=shown, remaining=remaining)


@blueprint.post("/recovery_codes")
@rate_limit(10, MINUTE, key_function=ip_key)
@login_required
@takes_no_body
@validate_response(RecoveryCodesOut)
@document_response(ErrorBody, 403)
@document_response(ErrorBody, 409)
async def regenerate_recovery_codes() -> RecoveryCodesOut:
    """Replace all your recovery codes with five new ones (shown this once)."""
    codes = await services().totp.regenerate(await principal())
    return RecoveryCodesOut(data=codes, remaining=len(codes))


async def complete(factor: Factor, message: str) -> MfaLoginOut:
    """Sign in with a second factor; 004's answer."""
    outcome = await services().signin.sign_in(factor, kind="api", client=current_client())
    assert isinstance(outcome, SignedIn)  # a second factor proves the second factor
    settle(outcome)
    api = outcome.kind == "api"
    return MfaLoginOut(
        message=message,
        user=user_out(outcome.user, outcome.pair if api else None),
        refresh_token=outcome.pair.refresh_token if api else None,
        next=None if api else "/dashboard",
    )


@blueprint.post("/login_mfa")
@rate_limit(limits=MFA_LIMITS)
@validate_request(LoginMfaIn)
@validate_response(MfaLoginOut)
@document_response(ErrorBody, 401)
async def login_mfa(data: LoginMfaIn) -> MfaLoginOut:
    """The login's second step with a TOTP code (RFC 6238; each step works once).

    Needs the challenge of the first step: ``mfa_token``, or the ``issuer_mfa`` cookie it set.
    """
    totp, code = services().totp, otp_text(data.otp)
    factor = SecondFactor(
        "totp", services().challenges, mfa_token_from(data.mfa_token),
        lambda session, user: totp.use_code(session, user, code),
        email=data.email, wrong=INVALID_OTP,
    )  # fmt: skip
    return await complete(factor, "The TOTP MFA token is valid")


@blueprint.post("/verify_recovery_code")
@rate_limit(limits=MFA_LIMITS)
@validate_request(RecoveryLoginIn)
@validate_response(MfaLoginOut)
@document_response(ErrorBody, 401)
async def verify_recovery_code(data: RecoveryLoginIn) -> MfaLoginOut:
    """The login's second step with a recovery code (each works once); needs the challenge."""
    totp, code = services().totp, data.recovery_code
    factor = SecondFactor(
        "recovery_code", services().challenges, mfa_token_from(data.mfa_token),
        lambda session, user: totp.use_recovery_code(session, user, code),
        email=data.email, wrong=INVALID_RECOVERY_CODE,
    )  # fmt: skip
    return await complete(factor, "The MFA recovery code is valid")


# --- passkeys -------------------------------------------------------------------------------


def passkey_out(row: Any) -> PasskeyOut:
    return PasskeyOut(
        id=row.entity_id.hex, name=row.name, created_at=row.created_at,
        last_used_at=row.last_used_at,
    )  # fmt: skip


@blueprint.get("/passkeys")
@login_required
@validate_response(PasskeysOut)
async def list_passkeys() -> PasskeysOut:
    """Your passkeys."""
    rows = await services().passkeys.list(await principal())
    return PasskeysOut(passkeys=[passkey_out(r) for r in rows])


@blueprint.post("/passkeys/options")
@rate_limit(10, MINUTE, key_function=ip_key)
@login_required
@takes_no_body
@validate_response(PasskeyOptionsOut)
@document_response(ErrorBody, 403)
async def passkey_registration_options() -> PasskeyOptionsOut:
    """Options for ``navigator.credentials.create()`` to register a passkey (5 minutes)."""
    found = await services().passkeys.registration_options(await principal())
    return PasskeyOptionsOut(**found)


@blueprint.post("/passkeys")
@rate_limit(10, MINUTE, key_function=ip_key)
@login_required
@validate_request(PasskeyRegisterIn)
@validate_response(PasskeyCreatedOut, 201)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 403)
async def register_passkey(data: PasskeyRegisterIn) -> tuple[PasskeyCreatedOut, int]:
    """Register a passkey: the browser's answer to the options, with the ceremony id."""
    row = await services().passkeys.register(
        await principal(), data.ceremony, data.credential.model_dump(exclude_none=True), data.name
    )
    return PasskeyCreatedOut(passkey=passkey_out(row)), 201


@blueprint.delete("/passkeys/<public_id:passkey_id>")
@login_required
@takes_no_body
@validate_response(Message)
@document_response(ErrorBody, 403)
@document_response(ErrorBody, 404)
async def delete_passkey(passkey_id: str) -> Message:
    """Remove one of your passkeys; someone else's (or an unknown) id answers 404."""
    await services().passkeys.delete(await principal(), uuid.UUID(hex=passkey_id))
    return Message(message="Passkey removed.")


@blueprint.post("/login_mfa/passkey/options")
@rate_limit(limits=MFA_LIMITS)
@validate_request(MfaChallengeIn)
@validate_response(PasskeyOptionsOut)
@document_response(ErrorBody, 401)
async def second_factor_passkey_options(data: MfaChallengeIn) -> PasskeyOptionsOut:
    """Options for ``navigator.credentials.get()`` with your passkeys, as the second factor.

    Needs the login's challenge (``mfa_token`` or the ``issuer_mfa`` cookie).
    """
    challenges = services().challenges
    claims = challenges.claims(mfa_token_from(data.mfa_token))
    user = await challenges.attempt(claims)
    found = await services().passkeys.authentication_options(SECOND, claims.sid, user.id)
    return PasskeyOptionsOut(**found)


@blueprint.post("/login_mfa/passkey")
@rate_limit(limits=MFA_LIMITS)
@validate_request(PasskeyLoginIn)
@validate_response(MfaLoginOut)
@document_response(ErrorBody, 401)
async def second_factor_passkey(data: PasskeyLoginIn) -> MfaLoginOut:
    """The login's second step with one of your passkeys; needs the login's challenge."""
    token = mfa_token_from(data.mfa_token)
    claims = services().challenges.claims(token)
    credential = data.credential.model_dump(exclude_none=True)
    passkeys = services().passkeys

    async def verify(session: Any, user: Any) -> None:
        await passkeys.verify_assertion(session, SECOND, data.ceremony, claims.sid, credential)

    factor = SecondFactor(
        "passkey", services().challenges, token, verify, wrong="The passkey could not be verified."
    )
    return await complete(factor, "The passkey is valid")


@blueprint.post("/login/passkey/options")
@rate_limit(10, MINUTE, key_function=ip_key)
@takes_no_body
@validate_response(PasskeyOptionsOut)
async def passwordless_options() -> PasskeyOptionsOut:
    """Options for a passwordless login with a passkey (any passkey of this site)."""
    binding = session.setdefault(PASSWORDLESS, secrets.token_urlsafe(24))
    found = await services().passkeys.authentication_options(LOGIN, binding, None)
    return PasskeyOptionsOut(**found)


@blueprint.post("/login/passkey")
@rate_limit(10, MINUTE, key_function=ip_key)
@validate_request(PasswordlessLoginIn)
@validate_response(MfaLoginOut)
@document_response(ErrorBody, 401)
async def passwordless_login(data: PasswordlessLoginIn) -> MfaLoginOut:
    """A passwordless login with a passkey (user verification required): a browser session.

    The ceremony must come from ``POST /login/passkey/options`` in this browser session.
    """
    binding = str(session.get(PASSWORDLESS, ""))
    credential = data.credential.model_dump(exclude_none=True)
    factor = PasskeyFactor(services().passkeys, data.ceremony, binding, credential)
    outcome = await services().signin.sign_in(factor, kind="browser", client=current_client())
    assert isinstance(outcome, SignedIn)
    settle(outcome)
    return MfaLoginOut(
        message="Signed in with a passkey.", user=user_out(outcome.user), next="/dashboard"
    )
