"""HTML pages of the accounts (002): login and register forms, the dashboard."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, current_app, redirect, render_template, session
from quart_auth import current_user
from quart_schema import hide

from issuer.accounts.auth import principal
from issuer.accounts.identifiers import username_key
from issuer.accounts.views import render_form, session_out
from issuer.errors import APIError
from issuer.lib.csrf import csrf_token

blueprint = Blueprint("account_pages", __name__)


@blueprint.get("/login")
@hide
async def login_page() -> Any:
    """The login form (posts to ``POST /login``)."""
    return await render_form("accounts/login.html")


@blueprint.get("/register")
@hide
async def register_page() -> Any:
    """The register form (posts to ``POST /register``)."""
    return await render_form("accounts/register.html")


@blueprint.get("/dashboard")
@hide
async def dashboard() -> Any:
    """Your dashboard: username, last login, active sessions with an end button."""
    if not current_user.auth_id:
        return redirect("/login")
    try:
        current = await principal()
    except APIError as exc:
        if exc.status == 401:
            return redirect("/login")
        raise
    rows = await current_app.extensions["sessions"].active(current.user.id)
    return await render_template(
        "accounts/dashboard.html",
        user=current.user,
        sessions=[session_out(row, current.session.id) for row in rows],
        csrf=csrf_token(session),
        lang="en",
    )


@blueprint.get("/dashboard/<username>")
@hide
async def user_dashboard(username: str) -> Any:
    """002's per-user dashboard: only for that user (403 for anyone else)."""
    if not current_user.auth_id:
        return redirect("/login")
    current = await principal()
    if current.user.username_key != username_key(username):
        raise APIError(403, "forbidden", "This dashboard belongs to someone else.")
    return await dashboard()
