"""The accounts JSON API: register, signup, login, tokens, sessions, password, status.

Paths and success bodies follow documents 001–004; errors use the one JSON error shape with
the originals' ``message`` texts (CONTRACTS.md §2–§5).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from quart import Blueprint, current_app, redirect, request
from quart_auth import logout_user
from quart_rate_limiter import rate_limit
from quart_schema import document_request, document_response, validate_response

from issuer.accounts import views
from issuer.accounts.auth import login_required, principal, sessions
from issuer.accounts.identifiers import valid_email, valid_username
from issuer.accounts.limits import LOGIN_LIMITS, ip_key, remote_ip
from issuer.accounts.schemas import (
    LoginIn,
    LoginOut,
    Message,
    RefreshIn,
    RegisteredOut,
    RegisterIn,
    SessionsOut,
    SignupIn,
    StatusOut,
    TokensOut,
    UpdatePasswordIn,
)
from issuer.accounts.service import Accounts, NewAccount
from issuer.errors import APIError, ErrorBody
from issuer.lib.body import is_form, read_body
from issuer.outbox.templates import LANGUAGES as EMAIL_LANGUAGES

blueprint = Blueprint("accounts", __name__)
MINUTE = timedelta(minutes=1)
REGISTERED = "User registered successfully"
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # secrets.token_urlsafe ids
SIGNED_UP = "User successfully created and a confirmation email has been sent via email."


def accounts() -> Accounts:
    return current_app.extensions["accounts"]  # type: ignore[no-any-return]


def settings() -> Any:
    return current_app.config["SETTINGS"]


@blueprint.post("/register")
@blueprint.post("/auth/register")
@rate_limit(20, MINUTE, key_function=ip_key)
@document_request(RegisterIn)
@validate_response(RegisteredOut, 200)
@validate_response(RegisteredOut, 201)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 409)
@document_response(ErrorBody, 422)
@document_response(ErrorBody, 429)
async def register() -> Any:
    """Register with a username or an email, and a password.

    An HTML form post (the register page) redirects to the login page. A taken username answers
    409; a taken email answers exactly like a new one (no account enumeration, ASVS 6.3.8).
    """
    body = await read_body(RegisterIn)
    if is_form():
        return await views.register_form(body)
    if not body.password:
        raise APIError(422, "validation_error", "Password is required.")
    if not body.username and not body.email:
        raise APIError(422, "validation_error", "Username or email is required.")
    check_identifiers(body.username, body.email)
    user = await accounts().register(
        NewAccount(body.password, body.email, body.username, body.first_name, body.last_name)
    )
    # Only a taken username is said so; a taken email (even next to a new username) answers
    # like a new account, so registering cannot reveal who has one (ASVS 6.3.8).
    if user is None and body.username and await accounts().find("username", body.username):
        raise APIError(409, "user_exists", "User registered already, Please login")
    status = 201 if request.path.startswith("/auth/") else 200
    return RegisteredOut(message=REGISTERED), status


def check_identifiers(username: str | None, email: str | None) -> None:
    if username is not None and not valid_username(username):
        raise APIError(422, "validation_error", "Username must be 2–150 letters, digits or .@+-_")
    if email is not None and not valid_email(email):
        raise APIError(422, "validation_error", "Email address is not valid.")


@blueprint.post("/signup")
@rate_limit(20, MINUTE, key_function=ip_key)
@document_request(SignupIn)
@validate_response(RegisteredOut, 200)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 422)
@document_response(ErrorBody, 429)
async def signup() -> RegisteredOut:
    """Sign up with email and password (004); new and existing emails get the same answer."""
    body = await read_body(SignupIn)
    if not body.email:
        raise APIError(422, "validation_error", "Email is required.")
    if not body.password:
        raise APIError(422, "validation_error", "Password is required.")
    if body.login_method not in (None, "signup"):
        raise APIError(400, "bad_request", "Invalid login method")
    check_identifiers(None, body.email)
    # Emails go out in the language the browser asked for (Accept-Language), English otherwise.
    language = request.accept_languages.best_match(EMAIL_LANGUAGES) or "en"
    await accounts().register(
        NewAccount(body.password, body.email, None, body.first_name, body.last_name, language)
    )
    return RegisteredOut(message=SIGNED_UP)


@blueprint.post("/login")
@blueprint.post("/auth/login")
@rate_limit(limits=LOGIN_LIMITS)
@document_request(LoginIn)
@validate_response(LoginOut)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 401)
@document_response(ErrorBody, 422)
@document_response(ErrorBody, 429)
async def login() -> Any:
    """Log in with username or email and password: an access and a refresh token.

    A form post (the login page) starts a browser session and redirects to the dashboard.
    Wrong username, wrong password and unknown account answer alike (401).
    """
    body = await read_body(LoginIn)
    identifier = body.email or body.username
    if is_form():
        return await views.login_form(body)
    if not identifier:
        raise APIError(422, "validation_error", "Email is required.")
    if not body.password:
        raise APIError(422, "validation_error", "Password is required.")
    svc = accounts()
    user = await svc.authenticate(await svc.find_any(identifier), body.password)
    if user is None:
        raise APIError(401, "authentication_failed", "Authentication failed")
    pair = await sessions().open(
        user, kind="api", user_agent=request.headers.get("User-Agent"), ip=remote_ip()
    )
    return LoginOut(
        token=pair.access_token,
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        user=views.user_out(user, pair),
    )


@blueprint.post("/token/refresh")
@rate_limit(30, MINUTE, key_function=ip_key)
@document_request(RefreshIn)
@validate_response(TokensOut)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 401)
@document_response(ErrorBody, 422)
@document_response(ErrorBody, 429)
async def refresh_tokens() -> TokensOut:
    """Rotate the refresh token: a new access and refresh token (RFC 6749 §6).

    Reusing a refresh token that was already rotated revokes the whole login (ASVS 10.4.5);
    the immediately previous one is still accepted for a few seconds (two tabs at once).
    """
    body = await read_body(RefreshIn)
    pair = await sessions().refresh(body.refresh_token)
    return TokensOut(
        token=pair.access_token,
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=settings().access_token_ttl,
    )


@blueprint.post("/logout")
@blueprint.post("/auth/logout")
@login_required
@validate_response(Message)
@document_response(ErrorBody, 401)
@document_response(ErrorBody, 403)
async def logout() -> Any:
    """End this login: its tokens and browser cookie stop working everywhere."""
    current = await principal()
    await sessions().revoke(current.session.id, "logout")
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
    rows = await sessions().active(current.user.id)
    return SessionsOut(sessions=[views.session_out(row, current.session.id) for row in rows])


@blueprint.delete("/sessions/<session_id>")
@login_required
@validate_response(Message)
@document_response(ErrorBody, 401)
@document_response(ErrorBody, 403)
@document_response(ErrorBody, 404)
async def end_session(session_id: str) -> Message:
    """End one of your sessions; someone else's (or an unknown) id answers 404."""
    current = await principal()
    # Not one of our ids (NUL bytes, say): no such session, without asking the database.
    if not SESSION_ID.fullmatch(session_id) or not await sessions().end(
        current.user.id, session_id
    ):
        raise APIError(404, "not_found", "No such session.")
    return Message(message="Session ended.")


@blueprint.post("/update_password")
@rate_limit(10, MINUTE, key_function=ip_key)
@login_required
@document_request(UpdatePasswordIn)
@validate_response(Message)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 401)
@document_response(ErrorBody, 403)
@document_response(ErrorBody, 422)
@document_response(ErrorBody, 429)
async def update_password() -> Message:
    """Change your password (the current one is required); ends your other sessions."""
    body = await read_body(UpdatePasswordIn)
    current = await principal()
    await accounts().change_password(
        current.user, body.existing_password or "", body.new_password or ""
    )
    await sessions().revoke_all(current.user.id, "password_changed", keep=current.session.id)
    return Message(message="Password has been updated!!")


@blueprint.get("/auth/status")
@login_required
@validate_response(StatusOut)
@document_response(ErrorBody, 401)
async def auth_status() -> StatusOut:
    """Who am I: 003's ``{"status": "success", "data": {user_id, email, admin, registered_on}}``."""
    return views.status_out((await principal()).user)
