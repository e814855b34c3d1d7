"""Request and response shapes of social login (004's ``/social`` routes)."""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator
from pydantic_core import PydanticCustomError

from issuer.accounts.schemas import MfaChallengeOut, UserOut
from issuer.schemas import UNICODE, Input, Refusal, one_line, one_of_required

# What providers hand out: printable ASCII without spaces (codes, JWTs, access tokens).
Code = Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^[\x21-\x7e]+$")]
IdToken = Annotated[str, Field(min_length=1, max_length=16_384, pattern=r"^[\x21-\x7e]+$")]
# RFC 7636 §4.1.
CodeVerifier = Annotated[str, Field(min_length=43, max_length=128, pattern=r"^[A-Za-z0-9._~-]+$")]
RedirectUri = Annotated[str, Field(max_length=2048, pattern=r"^https?://[\x21-\x7e]+$")]
CODE_REQUIRED = Refusal("Code is required.", 400, "bad_request")


class CodeIn(Input):
    """004's GitHub login: the ``code`` of GitHub's redirect; ``redirect_uri`` and
    ``code_verifier`` when the client sent them to GitHub (PKCE, RFC 7636)."""

    when_missing = {"code": CODE_REQUIRED}

    code: Code
    redirect_uri: RedirectUri | None = None
    code_verifier: CodeVerifier | None = None


class OpenIdIn(Input):
    """An OpenID Connect login: an ``idtoken`` the client got itself (004's Google login), or
    a ``code`` with the ``redirect_uri`` it was issued for (our callback when omitted, 004's
    LinkedIn login) and the PKCE ``code_verifier``."""

    model_config = ConfigDict(json_schema_extra=one_of_required("idtoken", "code"))
    when_missing = {"credential_missing": Refusal("An idtoken or a code is required.", 400)}

    idtoken: IdToken | None = None
    code: Code | None = None
    redirect_uri: RedirectUri | None = None
    code_verifier: CodeVerifier | None = None

    @model_validator(mode="after")
    def _one_credential(self) -> Self:
        if self.idtoken is None and self.code is None:
            raise PydanticCustomError("credential_missing", "An idtoken or a code is required.")
        return self


class FacebookIn(Input):
    """004's Facebook login: what Facebook's JS SDK gives the client (``authResponse``). Only
    ``accessToken`` and ``userID`` are used; Facebook itself is asked for the rest."""

    when_missing = {
        "accessToken": Refusal("accessToken is required.", 400),
        "userID": Refusal("userID is required.", 400),
    }

    accessToken: Code  # the SDK's member names (camelCase)
    userID: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9]+$")]
    expiresIn: Annotated[int, Field(ge=0, le=2**31)] | None = None
    data_access_expiration_time: Annotated[int, Field(ge=0, le=2**40)] | None = None
    grantedScopes: Annotated[str, one_line(1000), UNICODE] | None = None
    email: Annotated[str, one_line(320), UNICODE] | None = None
    name: Annotated[str, one_line(300), UNICODE] | None = None


class SocialLoginOut(BaseModel):
    """004's answer: ``auth`` (what the provider answered, its token included: returned once,
    never stored), ``user`` with our access token (an API login; none when linking), and a
    refresh token."""

    success: bool = True
    auth: dict[str, Any]
    user: UserOut
    refresh_token: str | None = None


class SocialAnswer(RootModel[SocialLoginOut | MfaChallengeOut]):
    """A social login's answer: the tokens, or (an account with MFA) the challenge."""


class LoginMethodProfile(BaseModel):
    """004's ``profile``; provider tokens are never returned here (``null``)."""

    entity_id: str
    name: str
    email: str | None = None
    user_name: str | None = None
    scope: str | None = None
    token_type: str | None = None
    access_token: None = None
    expires_in: None = None
    refresh_token: None = None
    refresh_token_expires_in: None = None


class LoginMethodOut(BaseModel):
    provider: str
    profile: LoginMethodProfile


class LoginMethodsOut(BaseModel):
    success: bool = True
    login_methods: list[LoginMethodOut]
