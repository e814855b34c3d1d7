"""Normalised identifiers: the unique keys behind email and username (ASVS 6.3.8)."""

from __future__ import annotations

import re
import unicodedata

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
USERNAME = re.compile(r"^[\w.@+-]{2,150}$")


def email_key(email: str) -> str:
    """Case-insensitive key for an email address (the whole address, as users expect)."""
    return unicodedata.normalize("NFKC", email).strip().casefold()


def username_key(username: str) -> str:
    return unicodedata.normalize("NFKC", username).strip().casefold()


def valid_email(email: str) -> bool:
    return bool(EMAIL.match(email.strip())) and len(email) <= 320


def valid_username(username: str) -> bool:
    return bool(USERNAME.match(unicodedata.normalize("NFKC", username).strip()))
