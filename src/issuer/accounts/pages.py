"""HTML pages of the accounts (002): login and register forms, the dashboard.

The forms post to ``/login`` and ``/register``, which answer a redirect on success and the one
JSON error shape otherwise (002's ``"Invalid credentials"``, ``"Username already taken"``); the
pages' script shows that message next to the form, so no API path answers with HTML.
"""

from __future__ import annotations

import re
from typing import Any

from quart import Blueprint, redirect, render_template, request, session
from quart_auth import current_user
from quart_schema import document_response

from issuer.accounts.auth import CSRF_FAILED, principal
from issuer.accounts.identifiers import username_key
from issuer.accounts.outcomes import challenge_out, settle
from issuer.accounts.responses import session_out
from issuer.accounts.schemas import SAME_SITE_PATH, LoginForm, RegisterForm
from issuer.accounts.service import NewAccount
from issuer.accounts.signin import MfaRequired, PasswordFactor
from issuer.errors import Forbidden, Refused, Unauthenticated
from issuer.lib.csrf import csrf_token, csrf_valid
from issuer.schemas import ErrorBody
from issuer.web.client import current_client
from issuer.web.context import services, settings
from issuer.web.openapi import html_page

blueprint = Blueprint("account_pages", __name__)


async def render_form(template: str, **context: Any) -> Any:
    return await render_template(template, csrf=csrf_token(session), lang="en", **context)


def check_form_csrf(submitted: str) -> None:
    if not csrf_valid(session, submitted):
        raise Forbidden(CSRF_FAILED, code="csrf_failed")


async def register_with_form(form: RegisterForm) -> Any:
    """002's register page post: success redirects to the login page."""
    check_form_csrf(form.csrf_token)
    user = await services().accounts.register(NewAccount(form.password, username=form.username))
    if user is None:
        raise Refused("Username already taken", code="user_exists")
    return redirect("/login", 303)


async def login_with_form(form: LoginForm) -> Any:
    """The login page post: a browser session (quart-auth cookie) and the dashboard, or, for
    an account with MFA, the challenge the page's script continues with."""
    check_form_csrf(form.csrf_token)
    factor = PasswordFactor(services().db, services().passwords, form.username, form.password)
    try:
        outcome = await services().signin.sign_in(factor, kind="browser", client=current_client())
    except Unauthenticated as exc:
        raise Unauthenticated("Invalid credentials", code="invalid_credentials") from exc
    settle(outcome)
    if isinstance(outcome, MfaRequired):
        return challenge_out(outcome)
    return redirect(form.next or "/dashboard", 303)


@blueprint.get("/login")
@html_page()
async def login_page() -> Any:
    """The login form (posts to ``POST /login``), and a button per social login provider."""
    wanted = request.args.get("next", "")
    return await render_form(
        "accounts/login.html", providers=services().social.titles(),
        next=wanted if re.fullmatch(SAME_SITE_PATH, wanted) else "",
    )  # fmt: skip


@blueprint.get("/register")
@html_page()
async def register_page() -> Any:
    """The register form (posts to ``POST /register``)."""
    return await render_form("accounts/register.html")


@blueprint.get("/dashboard")
@html_page(200, 302)
async def dashboard() -> Any:
    """Your dashboard: username, last login, active sessions with an end button, two-factor
    authentication (TOTP and recovery codes), passkeys, login methods (link, unlink), and the
    account's live events (pusher-js on the user's private channels)."""
    if not current_user.auth_id:
        return redirect("/login")
    try:
        current = await principal()
    except Unauthenticated:
        return redirect("/login")
    rows = await services().sessions.active(current.user.id)
    methods = await services().social.methods(current.user)
    titles = dict(services().social.titles())
    linked = {m.provider for m in methods}
    return await render_template(
        "accounts/dashboard.html",
        user=current.user,
        sessions=[session_out(row, current.session.id) for row in rows],
        recovery_codes_left=await services().totp.recovery_codes_left(current),
        codes_shown_once=settings().recovery_codes_show_once,
        passkeys=await services().passkeys.list(current),
        login_methods=methods,
        pusher_key=services().hub.app.key,
        current_session=current.session.id,
        provider_titles=titles,
        unlinked=[(name, title) for name, title in titles.items() if name not in linked],
        csrf=csrf_token(session),
        lang="en",
    )


@blueprint.get("/dashboard/<username>")
@html_page(200, 302)
@document_response(ErrorBody, 401)
@document_response(ErrorBody, 403)
async def user_dashboard(username: str) -> Any:
    """002's per-user dashboard: only for that user (403 for anyone else)."""
    if not current_user.auth_id:
        return redirect("/login")
    current = await principal()
    if current.user.username_key != username_key(username):
        raise Forbidden("This dashboard belongs to someone else.")
    return await dashboard()
