"""Sending one email over SMTP with aiosmtplib (RFC 5321), plain text plus HTML alternative."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Literal

import aiosmtplib


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """``security``: ``starttls`` (port 587), ``tls`` (implicit, port 465) or ``none``."""

    host: str
    port: int = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password: str = ""
    timeout: float = 10.0
    sender: str = "issuer <no-reply@localhost>"


def build_message(
    sender: str, to: str, subject: str, text: str, html: str | None, message_id: str
) -> EmailMessage:
    """``message_id`` is the outbox event id: a receiver can de-duplicate redeliveries."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = f"<{message_id}@issuer>"
    message.set_content(text)
    if html:
        message.add_alternative(html, subtype="html")
    return message


async def send(settings: SmtpSettings, message: EmailMessage) -> None:
    """Deliver ``message``; raises ``aiosmtplib.SMTPException`` or ``OSError`` on failure."""
    await aiosmtplib.send(
        message,
        hostname=settings.host,
        port=settings.port,
        username=settings.username or None,
        password=settings.password or None,
        use_tls=settings.security == "tls",
        start_tls=settings.security == "starttls",
        timeout=settings.timeout,
    )
