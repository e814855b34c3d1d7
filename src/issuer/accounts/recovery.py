"""Email verification and password reset (004's flows, 003's time-limited reset tokens).

The links in emails open small HTML pages (``GET``) whose script posts to the JSON endpoints
(``POST``) below.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field
from quart import Blueprint, current_app, render_template, request
from quart_rate_limiter import rate_limit
from quart_schema import document_request, document_response, hide, validate_response

from issuer.accounts.emails import AccountEmails, check_new_password
from issuer.accounts.identifiers import valid_email
from issuer.accounts.limits import ip_key, remote_ip
from issuer.accounts.schemas import Message, UserOut
from issuer.accounts.views import user_out
from issuer.errors import APIError, ErrorBody
from issuer.lib.body import read_body

blueprint = Blueprint("recovery", __name__)
MINUTE = timedelta(minutes=1)
TOKEN_PATH = "<string(maxlength=200):token>/<string(maxlength=200):uidb64>"  # noqa: S105


class EmailIn(BaseModel):
    email: str | None = Field(default=None, max_length=320)


class PasswordIn(BaseModel):
    password: str | None = Field(default=None, max_length=4096)


class VerifiedOut(BaseModel):
    success: bool = True
    message: str
    user: UserOut


def emails() -> AccountEmails:
    return current_app.extensions["account_emails"]  # type: ignore[no-any-return]


async def email_from_body() -> str:
    body = await read_body(EmailIn)
    if not body.email:
        raise APIError(422, "validation_error", "Email is required.")
    if not valid_email(body.email):
        raise APIError(422, "validation_error", "Email address is not valid.")
    return body.email


@blueprint.post(f"/verify/{TOKEN_PATH}")
@rate_limit(10, MINUTE, key_function=ip_key)
@validate_response(VerifiedOut)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 429)
async def verify_email(token: str, uidb64: str) -> VerifiedOut:
    """Confirm an email address with the link's token (single use, 1 h by default)."""
    user = await emails().verify(token, uidb64)
    pair = None
    if not user.mfa_enabled:  # with MFA on, a link alone must not log anyone in
        pair = await current_app.extensions["sessions"].open(
            user, kind="api", user_agent=request.headers.get("User-Agent"), ip=remote_ip()
        )
    return VerifiedOut(
        message="You have confirmed your account. Thanks!", user=user_out(user, pair)
    )


@blueprint.post("/resend_confirmation")
@rate_limit(5, MINUTE, key_function=ip_key)
@document_request(EmailIn)
@validate_response(Message)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 422)
@document_response(ErrorBody, 429)
async def resend_confirmation() -> Message:
    """Send the verification email again; known and unknown emails get the same answer."""
    await emails().resend(await email_from_body())
    return Message(message="A confirmation email has been sent via email.")


@blueprint.post("/forgot_password")
@rate_limit(5, MINUTE, key_function=ip_key)
@document_request(EmailIn)
@validate_response(Message)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 422)
@document_response(ErrorBody, 429)
async def forgot_password() -> Message:
    """Email a password-reset link (30 min); known and unknown emails get the same answer."""
    await emails().forgot(await email_from_body())
    return Message(message="Password reset email sent to the user")


@blueprint.post(f"/reset_password/{TOKEN_PATH}")
@rate_limit(10, MINUTE, key_function=ip_key)
@document_request(PasswordIn)
@validate_response(Message)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 422)
@document_response(ErrorBody, 429)
async def reset_password(token: str, uidb64: str) -> Message:
    """Set a new password with the emailed token; every session of the account ends."""
    password = check_new_password((await read_body(PasswordIn)).password)
    new_hash = await current_app.extensions["accounts"].hash_password(password)
    await emails().reset(token, uidb64, new_hash)
    return Message(message="Your password has been updated! You are now able to log in.")


async def link_page(template: str, **context: Any) -> Any:
    body = await render_template(template, lang="en", **context)
    # The URL holds a secret: never leak it to other sites (or our own logs) as a referrer.
    return body, 200, {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


@blueprint.get(f"/verify/{TOKEN_PATH}")
@hide
async def verify_page(token: str, uidb64: str) -> Any:
    """The page an emailed verification link opens; its button posts the token."""
    return await link_page("accounts/verify.html", action=f"/verify/{token}/{uidb64}")


@blueprint.get(f"/reset_password/{TOKEN_PATH}")
@hide
async def reset_page(token: str, uidb64: str) -> Any:
    """The page an emailed reset link opens: a new-password form."""
    return await link_page("accounts/reset.html", action=f"/reset_password/{token}/{uidb64}")


@blueprint.get("/forgot_password")
@hide
async def forgot_page() -> Any:
    """A form asking for the email address to send a reset link to."""
    return await link_page("accounts/forgot.html", action="/forgot_password")
