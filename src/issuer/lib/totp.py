"""Time-based one-time passwords (RFC 6238) with pyotp: 30 s steps, 6 digits, SHA-1 (what
authenticator apps expect), at most one step of drift either way (RFC 6238 §5.2, ASVS 6.5.5).

``matching_step`` tells *which* step a code belongs to, so the caller can refuse a step that was
already used (ASVS 6.5.1); the candidates are compared in constant time.
"""

from __future__ import annotations

from datetime import datetime

import pyotp

STEP = 30  # seconds
DIGITS = 6
DRIFT = 1  # steps accepted before and after the current one


def new_secret() -> str:
    """A random base32 secret of 160 bits (RFC 4226 §4 recommends at least that)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The ``otpauth://totp/…`` URI of the Key Uri Format, for the QR code."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP).provisioning_uri(
        name=account, issuer_name=issuer
    )


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step (``unix time // 30``) within ±1 of ``now`` whose code is ``code``, or
    ``None``. Every candidate is computed and compared (constant time per candidate)."""
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP)
    current = totp.timecode(now)
    found = None
    for step in range(current - DRIFT, current + DRIFT + 1):
        if pyotp.utils.strings_equal(code, totp.generate_otp(step)) and found is None:
            found = step
    return found


def code_at(secret: str, when: datetime) -> str:
    """The code of the step ``when`` falls in (tests and the dashboard's check)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP).at(when)
