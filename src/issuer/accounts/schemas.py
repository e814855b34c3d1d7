"""Request and response shapes of the accounts API (bodies as in documents 001–004).

Required fields are required and limits are declared, so the OpenAPI document says what the
server accepts; the originals' messages for a missing or bad field are declared next to it
(``when_missing`` / ``when_invalid``, CONTRACTS.md §2–§5).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator
from pydantic_core import PydanticCustomError

from issuer.lib.passwords import MAX_LENGTH as PASSWORD_MAX
from issuer.lib.passwords import MIN_LENGTH as PASSWORD_MIN
from issuer.schemas import NO_NUL, UNICODE, Input, Refusal, one_line, one_of_required

# 2–150 letters, digits or .@+-_ (002's usernames).
USERNAME_PATTERN = r"^[\w.@+-]{2,150}$"
# local@domain, no space or control characters (RFC 5321 lengths). No class escapes such as
# \s: JSON Schema (ECMA-262) and Python disagree on what they match.
EMAIL_PATTERN = r"^[^@\x00-\x20\x7f-\x9f]{1,64}@[^@\x00-\x20\x7f-\x9f]{1,255}$"

Username = Annotated[str, Field(min_length=2, max_length=150, pattern=USERNAME_PATTERN), UNICODE]
Email = Annotated[str, Field(min_length=3, max_length=320, pattern=EMAIL_PATTERN), UNICODE]
# A username or an email address, as typed into a login form.
Identifier = Annotated[str, one_line(320, min_length=1), UNICODE]
Name = Annotated[str, one_line(150), UNICODE]
# A new password: at least 8 characters, long passphrases welcome (ASVS 6.2.1, 6.2.9).
NewPassword = Annotated[
    str, Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX, pattern=NO_NUL), UNICODE
]
# A password to check: any length an older account may have (never truncated).
Password = Annotated[str, Field(min_length=1, max_length=4096, pattern=NO_NUL), UNICODE]
CsrfToken = Annotated[str, Field(max_length=100, pattern=r"^[A-Za-z0-9_-]*$")]
# A path on this site ("/post/new"), never another origin ("//evil", "/\\evil", "https://…").
SAME_SITE_PATH = r"^(/([\x21-\x2e\x30-\x5b\x5d-\x7e][\x21-\x7e]*)?)?$"

EMAIL_REQUIRED = Refusal("Email is required.")
EMAIL_INVALID = Refusal("Email address is not valid.")
PASSWORD_REQUIRED = Refusal("Password is required.")
USERNAME_INVALID = Refusal("Username must be 2–150 letters, digits or .@+-_")
WEAK_PASSWORD = {
    "password:string_too_short": Refusal(
        f"Password must be at least {PASSWORD_MIN} characters.", code="weak_password"
    ),
    "password:string_too_long": Refusal(
        f"Password must be at most {PASSWORD_MAX} characters.", code="weak_password"
    ),
}


def _new_password_rules(field: str) -> dict[str, Refusal]:
    return {f"{field}:{k.split(':')[1]}": v for k, v in WEAK_PASSWORD.items()}


class RegisterIn(Input):
    """001's ``{"username", "password"}`` or 003's ``{"email", "password"}`` (at least one of
    ``username`` and ``email``), with optional names."""

    model_config = ConfigDict(json_schema_extra=one_of_required("username", "email"))
    when_missing = {
        "password": PASSWORD_REQUIRED,
        "identifier_missing": Refusal("Username or email is required."),
    }
    when_invalid = {"username": USERNAME_INVALID, "email": EMAIL_INVALID, **WEAK_PASSWORD}

    username: Username | None = None
    email: Email | None = None
    password: NewPassword
    first_name: Name | None = None
    last_name: Name | None = None

    @model_validator(mode="after")
    def _one_identifier(self) -> Self:
        if self.username is None and self.email is None:
            raise PydanticCustomError("identifier_missing", "Username or email is required.")
        return self


class RegisterForm(Input):
    """The register page's form (002): a username and a password, with the CSRF token."""

    when_missing = {"password": PASSWORD_REQUIRED, "username": Refusal("Choose a username.")}
    when_invalid = {"username": USERNAME_INVALID, **WEAK_PASSWORD}

    username: Username
    password: NewPassword
    csrf_token: CsrfToken = ""


class SignupIn(Input):
    """004's signup: ``login_method`` is ``signup`` for email and password."""

    when_missing = {"email": EMAIL_REQUIRED, "password": PASSWORD_REQUIRED}
    when_invalid = {
        "email": EMAIL_INVALID,
        "login_method": Refusal("Invalid login method", 400, "bad_request"),
        **WEAK_PASSWORD,
    }

    login_method: Literal["signup"] = "signup"
    first_name: Name | None = None
    last_name: Name | None = None
    email: Email
    password: NewPassword


class LoginIn(Input):
    """``username`` (001, 002) or ``email`` (003, 004), and ``password``."""

    model_config = ConfigDict(json_schema_extra=one_of_required("username", "email"))
    when_missing = {"identifier_missing": EMAIL_REQUIRED, "password": PASSWORD_REQUIRED}

    username: Identifier | None = None
    email: Identifier | None = None
    password: Password

    @model_validator(mode="after")
    def _one_identifier(self) -> Self:
        if not (self.email or self.username):
            raise PydanticCustomError("identifier_missing", "Email is required.")
        return self

    @property
    def identifier(self) -> str:
        return self.email or self.username or ""


class LoginForm(Input):
    """The login page's form: a username or email, a password, the CSRF token."""

    when_missing = {"username": EMAIL_REQUIRED, "password": PASSWORD_REQUIRED}

    username: Identifier
    password: Password
    csrf_token: CsrfToken = ""
    # Where to go after logging in: a path of this site only (no open redirect).
    next: Annotated[str, Field(max_length=2000, pattern=SAME_SITE_PATH)] = ""


class RefreshIn(Input):
    when_missing = {"refresh_token": Refusal("A refresh token is required.")}

    refresh_token: Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[\w.-]+$")]


class UpdatePasswordIn(Input):
    """004's password change; ``new_password`` is checked first, as the original did."""

    when_missing = {
        "new_password": Refusal("Please provide a new password.", 400, "bad_request"),
        "existing_password": Refusal("Please provide an existing password.", 400, "bad_request"),
    }
    when_invalid = _new_password_rules("new_password")

    new_password: NewPassword
    existing_password: Password


class EmailIn(Input):
    when_missing = {"email": EMAIL_REQUIRED}
    when_invalid = {"email": EMAIL_INVALID}

    email: Email


class NewPasswordIn(Input):
    when_missing = {"password": Refusal("Please provide a new password.")}
    when_invalid = WEAK_PASSWORD

    password: NewPassword


class RegisteredOut(BaseModel):
    success: bool = True
    message: str


class UserOut(BaseModel):
    """004's ``user`` object. ``verified_on`` and ``expires_in`` are unix times."""

    entity_id: str
    version: int = 1
    active: bool
    latest: bool = True
    username: str | None
    first_name: str | None
    last_name: str | None
    email: str | None
    verified: bool
    verified_on: int | None
    access_token: str | None = None
    expires_in: int | None = None
    login_method: str | None = None
    mfa_enabled: bool


class LoginOut(BaseModel):
    """Serves both old client kinds: ``token`` (001) and ``success`` + ``user`` (004)."""

    success: bool = True
    token: str
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105  (RFC 6750 token type, not a secret)
    user: UserOut


class MfaUser(BaseModel):
    mfa_enabled: bool = True
    email: str | None
    verified: bool


class MfaChallengeOut(BaseModel):
    """004's answer to ``/login`` for an account with MFA: no access token; ``mfa_token`` (also
    an HttpOnly cookie for the MFA paths) is needed by the second-factor step, until
    ``mfa_expires_in`` (unix time); ``mfa_methods`` are the second factors the account has
    (``totp``, ``recovery_code``, ``passkey``)."""

    success: bool = True
    user: MfaUser
    mfa_token: str
    mfa_expires_in: int
    mfa_methods: list[Literal["totp", "recovery_code", "passkey"]]


class LoginAnswer(RootModel[LoginOut | MfaChallengeOut]):
    """A login's answer: the tokens, or (an account with MFA) the challenge."""


class TokensOut(BaseModel):
    """``expires_in`` is the access token's lifetime in seconds (RFC 6749 §5.1)."""

    success: bool = True
    token: str
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105  (RFC 6750 token type, not a secret)
    expires_in: int


class VerifiedOut(BaseModel):
    """``mfa_token``: for an account with MFA, the challenge of the second factor."""

    success: bool = True
    message: str
    user: UserOut
    mfa_token: str | None = None


class SessionOut(BaseModel):
    id: str
    kind: str
    current: bool
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    user_agent: str | None
    ip: str | None


class SessionsOut(BaseModel):
    success: bool = True
    sessions: list[SessionOut]


class StatusData(BaseModel):
    user_id: str
    email: str | None
    username: str | None
    admin: bool
    registered_on: datetime


class StatusOut(BaseModel):
    """003's "who am I"."""

    status: str = "success"
    data: StatusData
