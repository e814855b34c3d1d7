"""Invitation URLs: the agent's long form, our short form and the wallet deep link.

Aries RFC 0434 (Out-of-Band 1.1) encodes the invitation message into the URL itself
(``https://agent.example?oob=<base64url JSON>``, ~600 characters from ACA-Py), which makes a QR
code of version ~19. Its "URL shortening" section lets the sender publish a short, unguessable
URL instead: a wallet ``GET``s it with ``Accept: application/json`` and receives the message,
anything else is redirected (302) to the long form. Pure functions; no Quart, no database.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from urllib.parse import parse_qs, urlsplit

# 96 bits from ``secrets`` (16 URL-safe characters): unguessable for the half hour an
# invitation lives, and short enough to keep the QR code at version 4 or below.
PUBLIC_ID_BYTES = 12
PUBLIC_ID_LENGTH = 16
PUBLIC_ID = re.compile(rf"[A-Za-z0-9_-]{{{PUBLIC_ID_LENGTH}}}")
# RFC 0434 names ``oob``; RFC 0160 connection invitations (the original REST agent's) ``c_i``.
MESSAGE_PARAMETERS = ("oob", "c_i")


def new_public_id() -> str:
    """A fresh short id: ``PUBLIC_ID_LENGTH`` characters of ``[A-Za-z0-9_-]``."""
    return secrets.token_urlsafe(PUBLIC_ID_BYTES)


def is_public_id(value: str) -> bool:
    """Whether ``value`` has the shape of an id from :func:`new_public_id`."""
    return PUBLIC_ID.fullmatch(value) is not None


def short_url(base_url: str, public_id: str) -> str:
    """``{base_url}/i/{public_id}``: what the QR code encodes."""
    return f"{base_url.rstrip('/')}/i/{public_id}"


def message_json(invitation_url: str) -> bytes | None:
    """The invitation message inside an invitation URL, as the JSON bytes the agent encoded
    (base64url, padded or not, RFC 4648 §5); ``None`` when the URL carries no JSON object."""
    query = parse_qs(urlsplit(invitation_url).query)
    for name in MESSAGE_PARAMETERS:
        encoded = query.get(name, [""])[0]
        if not encoded:
            continue
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            if isinstance(json.loads(raw), dict):
                return raw
        except (binascii.Error, ValueError):
            return None
    return None


def deep_link(invitation_url: str) -> str | None:
    """The ``didcomm://`` link that opens a wallet app on the same phone (``didcomm://?oob=…``,
    the query of the agent's URL); ``None`` when the URL carries no invitation message."""
    query = urlsplit(invitation_url).query
    if not any(name in parse_qs(query) for name in MESSAGE_PARAMETERS):
        return None
    return f"didcomm://?{query}"
