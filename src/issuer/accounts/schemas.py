"""Request and response shapes of the accounts API (bodies as in documents 001–004)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

Name = Field(default=None, max_length=150)
# Longer than any acceptable password so the answer is "too long", not a schema error.
Secret = Field(default=None, max_length=4096)


class Input(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=False, extra="ignore")


class RegisterIn(Input):
    """``username`` or ``email`` (at least one), and ``password``."""

    username: str | None = Name
    email: str | None = Field(default=None, max_length=320)
    password: str | None = Secret
    first_name: str | None = Name
    last_name: str | None = Name
    csrf_token: str | None = Field(default=None, max_length=100)


class SignupIn(Input):
    """004's signup: ``login_method`` is ``signup`` for email and password."""

    login_method: str | None = Field(default="signup", max_length=50)
    first_name: str | None = Name
    last_name: str | None = Name
    email: str | None = Field(default=None, max_length=320)
    password: str | None = Secret


class LoginIn(Input):
    """``username`` (001, 002) or ``email`` (003, 004), and ``password``."""

    username: str | None = Name
    email: str | None = Field(default=None, max_length=320)
    password: str | None = Secret
    csrf_token: str | None = Field(default=None, max_length=100)


class RefreshIn(Input):
    refresh_token: str = Field(max_length=4096)


class UpdatePasswordIn(Input):
    existing_password: str | None = Secret
    new_password: str | None = Secret


class Message(BaseModel):
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


class TokensOut(BaseModel):
    """``expires_in`` is the access token's lifetime in seconds (RFC 6749 §5.1)."""

    success: bool = True
    token: str
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105  (RFC 6750 token type, not a secret)
    expires_in: int


class RegisteredOut(BaseModel):
    success: bool = True
    message: str


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
