"""Mapping rows to response bodies, and the HTML form flows of the login and register pages."""

from __future__ import annotations

from typing import Any

from quart import current_app, redirect, render_template, request, session
from quart_auth import AuthUser, login_user

from issuer.accounts.identifiers import valid_username
from issuer.accounts.models import LoginSession, User
from issuer.accounts.schemas import LoginIn, RegisterIn, SessionOut, StatusData, StatusOut, UserOut
from issuer.accounts.service import Accounts, NewAccount
from issuer.accounts.sessions import TokenPair
from issuer.db import as_utc
from issuer.lib.csrf import csrf_token, csrf_valid
from issuer.lib.passwords import password_problem


def user_out(user: User, pair: TokenPair | None = None) -> UserOut:
    return UserOut(
        entity_id=user.entity_id.hex,
        active=user.active,
        username=user.username,
        first_name=user.first_name,
        last_name=user.last_name,
        email=user.email,
        verified=user.verified,
        verified_on=int(as_utc(user.verified_at).timestamp()) if user.verified_at else None,
        access_token=pair.access_token if pair else None,
        expires_in=pair.access_expires_at if pair else None,
        mfa_enabled=user.mfa_enabled,
    )


def session_out(row: LoginSession, current_id: str) -> SessionOut:
    return SessionOut(
        id=row.id,
        kind=row.kind,
        current=row.id == current_id,
        created_at=as_utc(row.created_at),
        last_seen_at=as_utc(row.last_seen_at),
        expires_at=as_utc(row.expires_at),
        user_agent=row.user_agent,
        ip=row.ip,
    )


def status_out(user: User) -> StatusOut:
    return StatusOut(
        data=StatusData(
            user_id=user.entity_id.hex,
            email=user.email,
            username=user.username,
            admin=user.admin,
            registered_on=as_utc(user.created_at),
        )
    )


async def render_form(template: str, error: str | None = None, status: int = 200) -> Any:
    body = await render_template(template, error=error, csrf=csrf_token(session), lang="en")
    return body, status


def _accounts() -> Accounts:
    return current_app.extensions["accounts"]  # type: ignore[no-any-return]


async def register_form(body: RegisterIn) -> Any:
    """002's register page post: success redirects to the login page."""
    if not csrf_valid(session, body.csrf_token):
        return await render_form("accounts/register.html", "The form expired; try again.", 403)
    if not body.username or not valid_username(body.username):
        return await render_form(
            "accounts/register.html", "Choose a username (2–150 characters).", 422
        )
    problem = password_problem(body.password or "")
    if problem:
        return await render_form("accounts/register.html", problem, 422)
    user = await _accounts().register(NewAccount(body.password or "", username=body.username))
    if user is None:
        return await render_form("accounts/register.html", "Username already taken", 400)
    return redirect("/login", 303)


async def login_form(body: LoginIn) -> Any:
    """The login page post: a browser session (quart-auth cookie) and the dashboard."""
    if not csrf_valid(session, body.csrf_token):
        return await render_form("accounts/login.html", "The form expired; try again.", 403)
    identifier = body.username or body.email or ""
    accounts = _accounts()
    user = await accounts.authenticate(await accounts.find_any(identifier), body.password or "")
    if user is None:
        return await render_form("accounts/login.html", "Invalid credentials", 401)
    sessions = current_app.extensions["sessions"]
    pair = await sessions.open(
        user, kind="browser", user_agent=request.headers.get("User-Agent"), ip=request.remote_addr
    )
    login_user(AuthUser(pair.session_id))
    session.pop("csrf_token", None)  # a new token after authentication
    return redirect("/dashboard", 303)
