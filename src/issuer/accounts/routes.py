"""The accounts JSON API: register, signup, login, tokens, sessions, password, status.

Paths and success bodies follow documents 001–004; errors use the one JSON error shape with
the originals' ``message`` texts (CONTRACTS.md §2–§5). ``/register`` and ``/login`` also take
the HTML form posts of the pages (002), answered by ``accounts.pages``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from quart import Blueprint, redirect, request
from quart_auth import logout_user
from quart_rate_limiter import rate_limit
from quart_schema import document_response, validate_request, validate_response

from issuer.accounts import pages
from issuer.accounts.auth import login_required, principal
from issuer.accounts.limits import LOGIN_LIMITS, ip_key
from issuer.accounts.outcomes import challenge_out, settle
from issuer.accounts.responses import session_out, status_out, user_out
from issuer.accounts.schemas import (
    LoginAnswer,
    LoginForm,
    LoginIn,
    LoginOut,
    RefreshIn,
    RegisteredOut,
    RegisterForm,
    RegisterIn,
    SessionsOut,
    SignupIn,
    StatusOut,
    TokensOut,
    UpdatePasswordIn,
)
from issuer.accounts.service import NewAccount
from issuer.accounts.signin import MfaRequired, PasswordFactor
from issuer.errors import Conflict, NotFound
from issuer.outbox.templates import LANGUAGES as EMAIL_LANGUAGES
from issuer.schemas import ErrorBody, Message
from issuer.web.bodies import is_form, takes_no_body, validate_json_or_form
from issuer.web.client import current_client
from issuer.web.context import services
from issuer.web.idempotency import idempotent

blueprint = Blueprint("accounts", __name__)
MINUTE = timedelta(minutes=1)
REGISTERED = "User registered successfully"
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # secrets.token_urlsafe ids
SIGNED_UP = "User successfully created and a confirmation email has been sent via email."


@blueprint.post("/register")
@blueprint.post("/auth/register")
@rate_limit(20, MINUTE, key_function=ip_key)
@idempotent
@validate_json_or_form(RegisterIn, RegisterForm)
@validate_response(RegisteredOut, 200)
@validate_response(RegisteredOut, 201)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 409)
@document_response(ErrorBody, 422)
@document_response(ErrorBody, 429)
async def register(data: RegisterIn | RegisterForm) -> Any:
    """Register with a username or an email, and a password.

    An HTML form post (the register page) redirects to the login page. A taken username answers
    409; a taken email answers exactly like a new one (no account enumeration, ASVS 6.3.8).
    """
    if isinstance(data, RegisterForm):
        return await pages.register_with_form(data)
    accounts = services().accounts
    user = await accounts.register(
        NewAccount(data.password, data.email, data.username, data.first_name, data.last_name)
    )
    # Only a taken username is said so; a taken email (even next to a new username) answers
    # like a new account, so registering cannot reveal who has one (ASVS 6.3.8).
    if user is None and data.username and await accounts.username_taken(data.username):
        raise Conflict("User registered already, Please login", code="user_exists")
    status = 201 if request.path.startswith("/auth/") else 200
    return RegisteredOut(message=REGISTERED), status


@blueprint.post("/signup")
@rate_limit(20, MINUTE, key_function=ip_key)
@idempotent
@validate_request(SignupIn)
@validate_response(RegisteredOut, 200)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 422)
@document_response(ErrorBody, 429)
async def signup(data: SignupIn) -> RegisteredOut:
    """Sign up with email and password (004); new and existing emails get the same answer."""
    # Emails go out in the language the browser asked for (Accept-Language), English otherwise.
    language = request.accept_languages.best_match(EMAIL_LANGUAGES) or "en"
    await services().accounts.register(
        NewAccount(data.password, data.email, None, data.first_name, data.last_name, language)
    )
    return RegisteredOut(message=SIGNED_UP)


@blueprint.post("/login")
@blueprint.post("/auth/login")
@rate_limit(limits=LOGIN_LIMITS)
@validate_json_or_form(LoginIn, LoginForm)
@validate_response(LoginAnswer)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 401)
@document_response(ErrorBody, 422)
@document_response(ErrorBody, 429)
async def login(data: LoginIn | LoginForm) -> Any:
    """Log in with username or email and password: an access and a refresh token.

    For an account with MFA, 004's ``{"success", "user": {"mfa_enabled": true, …}}`` and the
    challenge (``mfa_token``, also a cookie) for ``/login_mfa`` or ``/verify_recovery_code``
    instead. A form post (the login page) starts a browser session and redirects to the
    dashboard. Wrong username, wrong password and unknown account answer alike (401).
    """
    if isinstance(data, LoginForm):
        return await pages.login_with_form(data)
    factor = PasswordFactor(services().db, services().passwords, data.identifier, data.password)
    outcome = await services().signin.sign_in(factor, kind="api", client=current_client())
    settle(outcome)
    if isinstance(outcome, MfaRequired):
        return challenge_out(outcome)
    pair = outcome.pair
    return LoginOut(
        token=pair.access_token,
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        user=user_out(outcome.user, pair),
    )


@blueprint.post("/token/refresh")
@rate_limit(30, MINUTE, key_function=ip_key)
@validate_request(RefreshIn)
@validate_response(TokensOut)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 401)
@document_response(ErrorBody, 422)
@document_response(ErrorBody, 429)
async def refresh_tokens(data: RefreshIn) -> TokensOut:
    """Rotate the refresh token: a new access and refresh token (RFC 6749 §6).

    Reusing a refresh token that was already rotated revokes the whole login (ASVS 10.4.5);
    the immediately previous one is still accepted for a few seconds (two tabs at once).
    """
    pair = await services().sessions.refresh(data.refresh_token)
    return TokensOut(
        token=pair.access_token,
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=services().settings.access_token_ttl,
    )


@blueprint.post("/logout")
@blueprint.post("/auth/logout")
@login_required
@takes_no_body
@validate_response(Message)
@document_response(ErrorBody, 401)
@document_response(ErrorBody, 403)
async def logout() -> Any:
    """End this login: its tokens and browser cookie stop working everywhere."""
    current = await principal()
    await services().sessions.revoke(current, "logout")
    logout_user()
    if is_form():
        return redirect("/login", 303)
    return Message(message="User successfully logged out.")


@blueprint.get("/sessions")
@login_required
@validate_response(SessionsOut)
@document_response(ErrorBody, 401)
async def list_sessions() -> SessionsOut:
    """Your active sessions (ASVS 7.5.2); ``current`` marks the one making this request."""
    current = await principal()
    rows = await services().sessions.active(current.user.id)
    return SessionsOut(sessions=[session_out(row, current.session.id) for row in rows])


@blueprint.delete("/sessions/<session_id>")
@login_required
@takes_no_body
@validate_response(Message)
@document_response(ErrorBody, 401)
@document_response(ErrorBody, 403)
@document_response(ErrorBody, 404)
async def end_session(session_id: str) -> Message:
    """End one of your sessions; someone else's (or an unknown) id answers 404."""
    current = await principal()
    # Not one of our ids (NUL bytes, say): no such session, without asking the database.
    if not SESSION_ID.fullmatch(session_id) or not await services().sessions.end(
        current.user, session_id
    ):
        raise NotFound("No such session.")
    return Message(message="Session ended.")


@blueprint.post("/update_password")
@rate_limit(10, MINUTE, key_function=ip_key)
@login_required
@validate_request(UpdatePasswordIn)
@validate_response(Message)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 401)
@document_response(ErrorBody, 403)
@document_response(ErrorBody, 422)
@document_response(ErrorBody, 429)
async def update_password(data: UpdatePasswordIn) -> Message:
    """Change your password (the current one is required); ends your other sessions."""
    await services().accounts.change_password(
        await principal(), data.existing_password, data.new_password
    )
    return Message(message="Password has been updated!!")


@blueprint.get("/auth/status")
@login_required
@validate_response(StatusOut)
@document_response(ErrorBody, 401)
async def auth_status() -> StatusOut:
    """Who am I: 003's ``{"status": "success", "data": {user_id, email, admin, registered_on}}``."""
    return status_out((await principal()).user)
