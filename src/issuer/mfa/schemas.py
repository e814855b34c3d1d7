"""Request and response shapes of MFA (004's ``/qrcode``, ``/verify_otp``, ``/setup_mfa``,
``/recovery_codes``, ``/login_mfa``, ``/verify_recovery_code``) and of passkeys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from issuer.accounts.schemas import Email, Password, UserOut
from issuer.schemas import STRIPPED, UNICODE, Input, Refusal, visible_line

# 004's clients send the code as a number ({"otp": 123456}); others as a string.
Otp = Annotated[int, Field(ge=0, le=999_999)] | Annotated[str, Field(pattern=r"^[0-9]{6}$")]
RecoveryCodeText = Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{32}$")]
# The MFA challenge (also sent as the HttpOnly cookie issuer_mfa).
MfaToken = Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[\w.-]+$")]
Ceremony = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\w-]+$")]
OTP_REQUIRED = Refusal("OTP is required.")


def otp_text(value: int | str) -> str:
    return f"{value:06d}" if isinstance(value, int) else value


class QrCodeIn(Input):
    """004: ``password`` for an account that has one (``login_type`` "signup"); a social
    account has none."""

    password: Password | None = None
    login_type: Literal["signup", "social"] = "signup"


class QrCodeOut(BaseModel):
    """``image``: a PNG of the ``otpauth://`` URI (RFC 6238 Key Uri Format), base64."""

    success: bool = True
    image: str


class OtpIn(Input):
    when_missing = {"otp": OTP_REQUIRED}

    otp: Otp


class OtpVerified(BaseModel):
    otp_verified: bool = True
    codes: list[str]


class VerifyOtpOut(BaseModel):
    """The recovery codes (32 upper-case hex characters each) are shown here once."""

    success: bool = True
    message: str = "OTP verified successfully"
    data: OtpVerified


NOT_NULL: dict[str, Any] = {"not": {"type": "null"}}
# What the model validator enforces, for the OpenAPI document.
SETUP_PROOF: dict[str, Any] = {
    "anyOf": [
        {"properties": {"mfa_enabled": {"const": True}, "otp": NOT_NULL}, "required": ["otp"]},
        {
            "properties": {"mfa_enabled": {"const": False}},
            "anyOf": [
                {"properties": {"otp": NOT_NULL}, "required": ["otp"]},
                {"properties": {"recovery_code": NOT_NULL}, "required": ["recovery_code"]},
            ],
        },
    ]
}


class SetupMfaIn(Input):
    """Enabling needs a current ``otp``; disabling an ``otp`` or a ``recovery_code``."""

    model_config = ConfigDict(json_schema_extra=SETUP_PROOF)
    when_missing = {"otp": OTP_REQUIRED, "proof_missing": OTP_REQUIRED}

    mfa_enabled: bool
    otp: Otp | None = None
    recovery_code: RecoveryCodeText | None = None

    @model_validator(mode="after")
    def _proof(self) -> Self:
        if self.otp is None and (self.mfa_enabled or self.recovery_code is None):
            raise PydanticCustomError("proof_missing", "OTP is required.")
        return self


class RecoveryCodesOut(BaseModel):
    """``data``: the unused codes (omitted when the server shows codes only once);
    ``remaining``: how many are left."""

    success: bool = True
    data: list[str] | None
    remaining: int


class LoginMfaIn(Input):
    """004's ``{"email", "otp"}``, with the challenge of the login's first step (``mfa_token``,
    or the ``issuer_mfa`` cookie that step set)."""

    when_missing = {"otp": OTP_REQUIRED}

    email: Email | None = None
    otp: Otp
    mfa_token: MfaToken | None = None


class RecoveryLoginIn(Input):
    when_missing = {"recovery_code": Refusal("Recovery code is required.")}
    when_invalid = {"recovery_code": Refusal("You have supplied an invalid recovery code!")}

    email: Email | None = None
    recovery_code: RecoveryCodeText
    mfa_token: MfaToken | None = None


class MfaLoginOut(BaseModel):
    """004's answer to a completed second factor; ``user.access_token`` for an API login. A
    browser login gets its session cookie instead, and ``next``: where to go."""

    success: bool = True
    message: str
    user: UserOut
    refresh_token: str | None = None
    next: str | None = None


class PasskeyOptionsOut(BaseModel):
    """``options``: ``PublicKeyCredentialCreationOptionsJSON`` or ``…RequestOptionsJSON``
    (WebAuthn Level 3); send ``ceremony`` back with the browser's answer."""

    success: bool = True
    ceremony: str
    options: dict[str, Any]


# --- WebAuthn Level 3 §5.1: the JSON forms of a PublicKeyCredential (toJSON()) ---------------

B64Url = Annotated[str, Field(max_length=16_384, pattern=r"^[A-Za-z0-9_-]*$")]
CredentialId = Annotated[str, Field(min_length=1, max_length=1_366, pattern=r"^[A-Za-z0-9_-]+$")]
Transport = Annotated[str, Field(max_length=32, pattern=r"^[a-z-]+$")]


class Credential(Input):
    id: CredentialId
    rawId: CredentialId  # WebAuthn's member names (camelCase)
    type: Literal["public-key"] = "public-key"
    authenticatorAttachment: Literal["platform", "cross-platform"] | None = None
    clientExtensionResults: dict[str, Any] = {}


class AttestationResponse(Input):
    """``AuthenticatorAttestationResponseJSON``."""

    clientDataJSON: B64Url
    attestationObject: B64Url
    transports: Annotated[list[Transport], Field(max_length=8)] = []


class RegistrationCredential(Credential):
    """``RegistrationResponseJSON``: the answer of ``navigator.credentials.create()``."""

    response: AttestationResponse


class AssertionResponse(Input):
    """``AuthenticatorAssertionResponseJSON``."""

    clientDataJSON: B64Url
    authenticatorData: B64Url
    signature: B64Url
    userHandle: B64Url | None = None


class AuthenticationCredential(Credential):
    """``AuthenticationResponseJSON``: the answer of ``navigator.credentials.get()``."""

    response: AssertionResponse


class PasskeyRegisterIn(Input):
    ceremony: Ceremony
    credential: RegistrationCredential
    name: Annotated[str, visible_line(100), UNICODE, STRIPPED] = "Passkey"


class MfaChallengeIn(Input):
    """The login's challenge, unless the ``issuer_mfa`` cookie carries it (send ``{}``)."""

    mfa_token: MfaToken | None = None


class PasswordlessLoginIn(Input):
    """The answer of ``navigator.credentials.get()``, with the ceremony of its options."""

    ceremony: Ceremony
    credential: AuthenticationCredential


class PasskeyLoginIn(PasswordlessLoginIn):
    """A passkey as the second factor: also the login's challenge (or its cookie)."""

    mfa_token: MfaToken | None = None


class PasskeyOut(BaseModel):
    id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None


class PasskeysOut(BaseModel):
    success: bool = True
    passkeys: list[PasskeyOut]


class PasskeyCreatedOut(BaseModel):
    success: bool = True
    passkey: PasskeyOut
