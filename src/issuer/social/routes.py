"""Social login over the API, as 004's clients call it (``/social/github``, ``/social/google``,
``/social/linkedin``, ``/social/facebook``, ``GET /social``, ``DELETE /social/<id>``), any
configured OpenID Connect provider (``/social/<name>``), and the browser's redirect flow
(``/login/<name>`` → the provider → ``/login/<name>/callback``).

With an access token in ``Authorization``, the provider identity is linked to that user
(004); without, the identity signs in (an MFA account gets its challenge, not tokens).
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field
from quart import Blueprint, redirect, render_template, session
from quart_rate_limiter import rate_limit
from quart_schema import (
    document_response,
    validate_querystring,
    validate_request,
    validate_response,
)

from issuer.accounts.auth import header_token, login_required, principal, token_optional
from issuer.accounts.limits import ip_key
from issuer.accounts.outcomes import challenge_out, settle
from issuer.accounts.responses import user_out
from issuer.accounts.signin import MfaRequired
from issuer.errors import DomainError, Unauthenticated
from issuer.lib.csrf import csrf_token
from issuer.schemas import ErrorBody, Message
from issuer.social.providers import ProviderIdentity
from issuer.social.schemas import (
    CodeIn,
    FacebookIn,
    LoginMethodOut,
    LoginMethodProfile,
    LoginMethodsOut,
    OpenIdIn,
    SocialAnswer,
    SocialLoginOut,
)
from issuer.social.service import BrowserLogin, SocialLogin
from issuer.web.bodies import takes_no_body
from issuer.web.client import current_client
from issuer.web.context import services
from issuer.web.errors import STATUS
from issuer.web.openapi import html_page

blueprint = Blueprint("social", __name__)
MINUTE = timedelta(minutes=1)
STARTED = "social_login"  # the browser-session key of a redirect login under way
# Seconds a redirect login may take at the provider.
BROWSER_LOGIN_TTL = 600.0


def social() -> SocialLogin:
    return services().social


async def answer(identity: ProviderIdentity) -> Any:
    """Link ``identity`` to the caller of the access token, or sign in with it."""
    if header_token() is not None:
        current = await principal(allow_cookie=False)  # resolved by token_optional
        user = await social().link(current, identity)
        return SocialLoginOut(auth=identity.auth, user=user_out(user))
    outcome = await social().sign_in(identity, kind="api", client=current_client())
    settle(outcome)
    if isinstance(outcome, MfaRequired):
        return challenge_out(outcome)
    return SocialLoginOut(
        auth=identity.auth,
        user=user_out(outcome.user, outcome.pair),
        refresh_token=outcome.pair.refresh_token,
    )


def documented_failures(func: Any) -> Any:
    for status in (400, 401, 404, 409, 503):
        func = document_response(ErrorBody, status)(func)
    return func


@blueprint.post("/social/github")
@rate_limit(20, MINUTE, key_function=ip_key)
@token_optional
@validate_request(CodeIn)
@validate_response(SocialAnswer)
@documented_failures
async def github(data: CodeIn) -> Any:
    """Log in with (or link) GitHub: the ``code`` of GitHub's redirect is exchanged for an
    access token, and GitHub's ``/user`` and ``/user/emails`` name the user (only a primary,
    verified email counts). 401: a bad or expired code; 503: GitHub is down or slow."""
    identity = await social().identify_code(
        "github", data.code, redirect_uri=data.redirect_uri, code_verifier=data.code_verifier
    )
    return await answer(identity)


@blueprint.post("/social/facebook")
@rate_limit(20, MINUTE, key_function=ip_key)
@token_optional
@validate_request(FacebookIn)
@validate_response(SocialAnswer)
@documented_failures
async def facebook(data: FacebookIn) -> Any:
    """Log in with (or link) Facebook: the SDK's ``accessToken`` is checked with Facebook
    (``debug_token``: valid, for this app, for ``userID``, not expired), then ``/me`` says who
    it is (``email``/``name`` in the body are not trusted). 401: a token Facebook does not
    vouch for; 503: Facebook is down or slow."""
    extra = data.model_dump(include={"expiresIn", "data_access_expiration_time", "grantedScopes"})
    identity = await social().identify_facebook(data.accessToken, data.userID, extra)
    return await answer(identity)


@blueprint.post("/social/<provider:name>")
@rate_limit(20, MINUTE, key_function=ip_key)
@token_optional
@validate_request(OpenIdIn)
@validate_response(SocialAnswer)
@documented_failures
async def openid(name: str, data: OpenIdIn) -> Any:
    """Log in with (or link) an OpenID Connect provider (``google``, ``linkedin``, or one
    configured in ``ISSUER_OIDC_PROVIDERS``): an ``idtoken``, verified with the provider's
    keys (``iss``, ``aud``, ``exp``), or a ``code`` exchanged for one. 401: a forged, expired
    or foreign ID token, or a bad code; 404: no such provider; 503: the provider is down."""
    if data.idtoken is not None:
        identity = await social().identify_id_token(name, data.idtoken)
    else:
        assert data.code is not None  # the schema requires one of the two
        identity = await social().identify_code(
            name, data.code, redirect_uri=data.redirect_uri, code_verifier=data.code_verifier
        )
    return await answer(identity)


@blueprint.get("/social")
@login_required
@validate_response(LoginMethodsOut)
async def login_methods() -> LoginMethodsOut:
    """Your login methods (004): linked providers, and ``signup`` when you have a password."""
    current = await principal()
    methods = await social().methods(current.user)
    return LoginMethodsOut(
        login_methods=[
            LoginMethodOut(
                provider=m.provider,
                profile=LoginMethodProfile(
                    entity_id=m.entity_id.hex,
                    name=m.provider,
                    email=m.email,
                    user_name=m.user_name,
                    scope=m.scope,
                    token_type=m.token_type,
                ),
            )
            for m in methods
        ]
    )


@blueprint.delete("/social/<public_id:method_id>")
@login_required
@takes_no_body
@validate_response(Message)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 403)
# A path that is not a login method's id names a provider: that resource takes POST only.
@document_response(ErrorBody, 405)
async def unlink(method_id: str) -> Message:
    """Remove one of your login methods; 400 for your last way to log in, and 004's "This user
    doesn't have login method <id>" for someone else's or an unknown id."""
    await social().unlink(await principal(), uuid.UUID(hex=method_id))
    return Message(message="Login method is deleted")


# --- the browser's redirect flow -------------------------------------------------------------


class CallbackQuery(BaseModel):
    """What the provider appends to the callback (RFC 6749 §4.1.2, §4.1.2.1)."""

    code: str | None = Field(None, max_length=2048)
    state: str | None = Field(None, max_length=512)
    error: str | None = Field(None, max_length=256)
    error_description: str | None = Field(None, max_length=1024)
    # RFC 9207: the provider that answered (checked against the one asked, mix-up attacks).
    iss: str | None = Field(None, max_length=2048)


async def login_page(
    status: int, *, error: str | None = None, methods: list[str] | None = None
) -> Any:
    """The login page, showing ``error`` or asking for the second factor (``methods``)."""
    page = await render_template(
        "accounts/login.html", csrf=csrf_token(session), lang="en", error=error,
        providers=social().titles(), second_step=",".join(methods or []),
    )  # fmt: skip
    return page, status


@blueprint.get("/login/<provider:name>")
@rate_limit(30, MINUTE, key_function=ip_key)
@html_page(302)
@document_response(ErrorBody, 404)
@document_response(ErrorBody, 503)
async def browser_login(name: str) -> Any:
    """Start a login at the provider: a redirect to its authorization endpoint with
    ``state``, PKCE (S256) and, for OpenID Connect, ``nonce``, all kept in the browser session
    for the callback. (Linking is ``POST``: a link needs the logged-in page's CSRF token.)"""
    url, started = await social().begin(name)
    session[STARTED] = dataclasses.asdict(started)
    return redirect(url, 302)


class LinkStartOut(BaseModel):
    """Where to send the browser: the provider's authorization URL."""

    success: bool = True
    location: str


@blueprint.post("/login/<provider:name>")
@rate_limit(30, MINUTE, key_function=ip_key)
@login_required
@takes_no_body
@validate_response(LinkStartOut)
@document_response(ErrorBody, 403)
@document_response(ErrorBody, 404)
@document_response(ErrorBody, 503)
async def browser_link(name: str) -> LinkStartOut:
    """Start linking a provider to the logged-in account (the dashboard's "Link …" button):
    the provider's authorization URL (``location``) for the browser to go to, the flow bound to
    this login session (only it can complete the link). A cookie login needs its CSRF token
    (``X-CSRF-Token``), so another site cannot start a link that would attach someone else's
    provider account."""
    current = await principal()
    url, started = await social().begin(name, link_session=current.session.id)
    session[STARTED] = dataclasses.asdict(started)
    return LinkStartOut(location=url)


@blueprint.get("/login/<provider:name>/callback")
@rate_limit(30, MINUTE, key_function=ip_key)
@validate_querystring(CallbackQuery)
@html_page(200, 303, 401, 409, 503)
@document_response(ErrorBody, 404)
async def browser_callback(name: str, query_args: CallbackQuery) -> Any:
    """The provider's redirect back: ``state`` must be the one this browser started with;
    then the login (or link) completes and the dashboard follows. A refused or failed
    sign-in shows the login page with the reason (401, 409, 503)."""
    social().provider(name)  # 404 for a provider that is not configured
    saved = session.pop(STARTED, None)
    started = None
    if isinstance(saved, dict):
        try:
            started = BrowserLogin(**saved)
        except TypeError:
            started = None
    if query_args.error:
        title = social().provider(name).title
        return await login_page(401, error=f"{title} did not sign you in ({query_args.error}).")
    try:
        identity = await social().finish(
            name, started, state=query_args.state or "", code=query_args.code or "",
            issuer=query_args.iss, max_age=BROWSER_LOGIN_TTL,
        )  # fmt: skip
        if started is not None and started.link_session is not None:
            current = await principal()
            if current.session.id != started.link_session:
                raise Unauthenticated(
                    "This link was started by another login; please try again.",
                    code="state_mismatch",
                )
            await social().link(current, identity)
            return redirect("/dashboard#login-methods", 303)
        outcome = await social().sign_in(identity, kind="browser", client=current_client())
    except DomainError as exc:
        status = next((s for kind, s in STATUS.items() if isinstance(exc, kind)), 400)
        return await login_page(status, error=exc.message)
    settle(outcome)
    if isinstance(outcome, MfaRequired):
        return await login_page(200, methods=list(outcome.methods))
    return redirect("/dashboard", 303)
