"""Email verification and password reset (004's flows, 003's time-limited reset tokens).

The links in emails open small HTML pages (``GET``) whose script posts to the JSON endpoints
(``POST``) below.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from quart import Blueprint, render_template
from quart_rate_limiter import rate_limit
from quart_schema import document_response, validate_request, validate_response

from issuer.accounts.emails import EmailLinkFactor
from issuer.accounts.limits import ip_key
from issuer.accounts.outcomes import settle
from issuer.accounts.responses import user_out
from issuer.accounts.schemas import EmailIn, NewPasswordIn, VerifiedOut
from issuer.accounts.signin import MfaRequired
from issuer.schemas import ErrorBody, Message
from issuer.web.bodies import takes_no_body
from issuer.web.client import current_client
from issuer.web.context import services
from issuer.web.openapi import html_page

blueprint = Blueprint("recovery", __name__)
MINUTE = timedelta(minutes=1)
TOKEN_PATH = "<string(maxlength=200):token>/<string(maxlength=200):uidb64>"  # noqa: S105


@blueprint.post(f"/verify/{TOKEN_PATH}")
@rate_limit(10, MINUTE, key_function=ip_key)
@takes_no_body
@validate_response(VerifiedOut)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 429)
async def verify_email(token: str, uidb64: str) -> VerifiedOut:
    """Confirm an email address with the link's token (single use, 1 h by default).

    Logs the user in (004); for an account with MFA, answers the challenge (``mfa_token``) for
    the second factor instead, as a link alone must not log anyone in.
    """
    factor = EmailLinkFactor(services().emails, token, uidb64)
    outcome = await services().signin.sign_in(factor, kind="api", client=current_client())
    settle(outcome)
    message = "You have confirmed your account. Thanks!"
    if isinstance(outcome, MfaRequired):
        return VerifiedOut(message=message, user=user_out(outcome.user), mfa_token=outcome.token)
    return VerifiedOut(message=message, user=user_out(outcome.user, outcome.pair))


@blueprint.post("/resend_confirmation")
@rate_limit(5, MINUTE, key_function=ip_key)
@validate_request(EmailIn)
@validate_response(Message)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 422)
@document_response(ErrorBody, 429)
async def resend_confirmation(data: EmailIn) -> Message:
    """Send the verification email again; known and unknown emails get the same answer."""
    await services().emails.resend(data.email)
    return Message(message="A confirmation email has been sent via email.")


@blueprint.post("/forgot_password")
@rate_limit(5, MINUTE, key_function=ip_key)
@validate_request(EmailIn)
@validate_response(Message)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 422)
@document_response(ErrorBody, 429)
async def forgot_password(data: EmailIn) -> Message:
    """Email a password-reset link (30 min); known and unknown emails get the same answer."""
    await services().emails.forgot(data.email)
    return Message(message="Password reset email sent to the user")


@blueprint.post(f"/reset_password/{TOKEN_PATH}")
@rate_limit(10, MINUTE, key_function=ip_key)
@validate_request(NewPasswordIn)
@validate_response(Message)
@document_response(ErrorBody, 400)
@document_response(ErrorBody, 422)
@document_response(ErrorBody, 429)
async def reset_password(token: str, uidb64: str, data: NewPasswordIn) -> Message:
    """Set a new password with the emailed token; every session of the account ends."""
    new_hash = await services().passwords.hash(data.password)
    await services().emails.reset(token, uidb64, new_hash)
    return Message(message="Your password has been updated! You are now able to log in.")


async def link_page(template: str, **context: Any) -> Any:
    body = await render_template(template, lang="en", **context)
    # The URL holds a secret: never leak it to other sites (or our own logs) as a referrer.
    return body, 200, {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


@blueprint.get(f"/verify/{TOKEN_PATH}")
@html_page()
async def verify_page(token: str, uidb64: str) -> Any:
    """The page an emailed verification link opens; its button posts the token."""
    return await link_page("accounts/verify.html", action=f"/verify/{token}/{uidb64}")


@blueprint.get(f"/reset_password/{TOKEN_PATH}")
@html_page()
async def reset_page(token: str, uidb64: str) -> Any:
    """The page an emailed reset link opens: a new-password form."""
    return await link_page("accounts/reset.html", action=f"/reset_password/{token}/{uidb64}")


@blueprint.get("/forgot_password")
@html_page()
async def forgot_page() -> Any:
    """A form asking for the email address to send a reset link to."""
    return await link_page("accounts/forgot.html", action="/forgot_password")
