"""JSON Web Tokens (RFC 7519) with one purpose each, HS256 only.

Every token carries ``sub`` (the user's entity id, a string), ``sid`` (the login session),
``jti``, ``iat``, ``exp``, ``iss``, ``aud`` and ``typ``. Decoding verifies the signature before
any claim is read, allows only HS256 (no ``none``, no HS/RS confusion), ignores ``jku``/``x5u``/
``jwk`` headers and requires every claim (ASVS 9.1.1–9.2.3).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt

ALGORITHM = "HS256"
REQUIRED = ["sub", "sid", "jti", "iat", "exp", "iss", "aud", "typ"]
# What our own tokens carry: ids from ``secrets.token_urlsafe`` and hex entity ids. A claim of
# another shape (a NUL byte, say) cannot be ours and never reaches a query.
ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Purpose(StrEnum):
    ACCESS = "access"
    REFRESH = "refresh"
    # A login waiting for its second factor: accepted by the second-factor endpoints only.
    MFA = "mfa"


class TokenExpired(Exception):
    pass


class TokenInvalid(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    sid: str
    jti: str
    iat: int
    exp: int
    typ: Purpose


# Verified tokens a codec remembers (a few MB at most).
VERIFIED_MAX = 20_000


class TokenCodec:
    def __init__(self, key: bytes, *, issuer: str, audience: str) -> None:
        if len(key) < 32:
            raise ValueError("the signing key must be at least 256 bits")
        self._key = key
        self._issuer = issuer
        self._audience = audience
        # Tokens whose signature and claims were verified, and what they said: a token is
        # checked by the rate limiter's key and by the authentication of the same request,
        # and by every request of its client. Only the expiry changes with time, and is
        # checked on every use. Emptied when full.
        self._verified: dict[str, Claims] = {}

    def issue(
        self, purpose: Purpose, *, sub: str, sid: str, ttl: float, jti: str | None = None
    ) -> tuple[str, Claims]:
        """A signed token valid for ``ttl`` seconds, and its claims (a fresh ``jti`` by default)."""
        now = int(time.time())
        claims = Claims(sub, sid, jti or secrets.token_urlsafe(16), now, now + int(ttl), purpose)
        payload: dict[str, Any] = {
            "sub": sub,
            "sid": sid,
            "jti": claims.jti,
            "iat": now,
            "exp": claims.exp,
            "iss": self._issuer,
            "aud": self._audience,
            "typ": purpose.value,
        }
        return jwt.encode(payload, self._key, algorithm=ALGORITHM, headers={"typ": "JWT"}), claims

    def decode(self, token: str, purpose: Purpose) -> Claims:
        """Verify ``token`` for ``purpose``; raises ``TokenExpired`` or ``TokenInvalid``."""
        known = self._verified.get(token)
        if known is not None:
            if known.typ is not purpose:
                raise TokenInvalid("wrong token type")
            if known.exp <= time.time():
                raise TokenExpired
            return known
        claims = self._verify(token, purpose)
        if len(self._verified) >= VERIFIED_MAX:
            self._verified.clear()
        self._verified[token] = claims
        return claims

    def _verify(self, token: str, purpose: Purpose) -> Claims:
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": REQUIRED},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpired from exc
        except jwt.PyJWTError as exc:
            raise TokenInvalid(str(exc)) from exc
        if payload["typ"] != purpose.value:
            raise TokenInvalid("wrong token type")
        sub, sid, jti = payload["sub"], payload["sid"], payload["jti"]
        if not all(isinstance(v, str) and ID.fullmatch(v) for v in (sub, sid, jti)):
            raise TokenInvalid("malformed claims")
        try:
            return Claims(sub, sid, jti, int(payload["iat"]), int(payload["exp"]), purpose)
        except (TypeError, ValueError) as exc:
            raise TokenInvalid("malformed claims") from exc
