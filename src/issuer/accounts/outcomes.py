"""Route helpers: the HTTP answer to a sign-in outcome (``issuer.accounts.signin``).

- An API login: 004's body with the access token and a refresh token.
- A browser login: the quart-auth session cookie (no token in the body).
- An MFA challenge: 004's ``{"success", "user": {"mfa_enabled", "email", "verified"}}`` with
  ``mfa_token``, which is also set as the HttpOnly, ``SameSite=Strict`` cookie ``issuer_mfa``
  on the second-factor paths only, so a browser client that sends just 004's
  ``{"email", "otp"}`` keeps working and no other request carries it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from quart import after_this_request, request, session
from quart.typing import ResponseTypes
from quart_auth import AuthUser, login_user

from issuer.accounts.schemas import MfaChallengeOut, MfaUser
from issuer.accounts.signin import MfaRequired, Outcome, SignedIn
from issuer.lib.csrf import FIELD
from issuer.web.context import settings

MFA_COOKIE = "issuer_mfa"
# The second-factor endpoints (a cookie's Path covers a path and everything under it).
MFA_PATHS = ("/login_mfa", "/verify_recovery_code")


def mfa_token_from(body_token: str | None) -> str | None:
    """The challenge: from the body, else from the cookie the first step set."""
    return body_token or request.cookies.get(MFA_COOKIE)


def settle(outcome: Outcome) -> None:
    """Give this request's answer the cookies of ``outcome``: the browser session of a browser
    login; the challenge cookie of an MFA challenge (cleared once the login completes)."""
    if isinstance(outcome, SignedIn) and outcome.kind == "browser":
        login_user(AuthUser(outcome.pair.session_id))
        session.pop(FIELD, None)  # a new CSRF token after authentication
    after_this_request(_challenge_cookie(outcome))


def _challenge_cookie(outcome: Outcome) -> Callable[[ResponseTypes], Awaitable[ResponseTypes]]:
    async def apply(response: ResponseTypes) -> ResponseTypes:
        secure = not settings().development
        for path in MFA_PATHS:
            if isinstance(outcome, MfaRequired):
                response.set_cookie(
                    MFA_COOKIE, outcome.token, max_age=settings().mfa_challenge_ttl, path=path,
                    secure=secure, httponly=True, samesite="Strict",
                )  # fmt: skip
            elif request.cookies.get(MFA_COOKIE):
                response.delete_cookie(MFA_COOKIE, path=path, secure=secure, httponly=True)
        return response

    return apply


def challenge_out(outcome: MfaRequired) -> MfaChallengeOut:
    return MfaChallengeOut(
        user=MfaUser(email=outcome.user.email, verified=outcome.user.verified),
        mfa_token=outcome.token,
        mfa_expires_in=int(outcome.expires_at.timestamp()),
        mfa_methods=list(outcome.methods),
    )
