"""Secrets kept at rest encrypted (AES-256-GCM, the ``cryptography`` library), and keyed
fingerprints for looking secrets up without storing them (HMAC-SHA-256).

Each purpose gets a key of its own, derived from the server secret with HKDF-SHA-256 and the
purpose as the label (SECURITY.md: MFA secrets and recovery codes encrypted at rest), so a key
leaked for one purpose opens nothing else. The purpose is also bound into each ciphertext as
associated data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE = 12


class SecretBoxError(ValueError):
    """A ciphertext that this key did not produce (tampered, or another server secret)."""


def derive_key(server_secret: str, purpose: str) -> bytes:
    """32 bytes for ``purpose`` (e.g. ``"issuer totp secrets"``) from the server secret."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
        server_secret.encode()
    )


class SecretBox:
    def __init__(self, server_secret: str, purpose: str) -> None:
        self._aead = AESGCM(derive_key(server_secret, f"{purpose} encryption"))
        self._mac_key = derive_key(server_secret, f"{purpose} lookup")
        self._purpose = purpose.encode()

    def seal(self, plaintext: str) -> str:
        """``base64url(nonce || ciphertext || tag)``."""
        nonce = os.urandom(NONCE)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), self._purpose)
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str) -> str:
        try:
            raw = base64.urlsafe_b64decode(sealed.encode())
            return self._aead.decrypt(raw[:NONCE], raw[NONCE:], self._purpose).decode()
        except (InvalidTag, ValueError) as exc:
            raise SecretBoxError("cannot open this secret") from exc

    def fingerprint(self, value: str) -> str:
        """A keyed SHA-256 of ``value``: equal values, equal fingerprints; not reversible."""
        return hmac.new(self._mac_key, value.encode(), hashlib.sha256).hexdigest()
