"""Password hashing: argon2id (OWASP: m=19 MiB, t=2, p=1), legacy bcrypt verified once.

ASVS 11.4.2 / 6.2.x. Hashing costs ~17 ms of CPU, so every call here is synchronous and meant
to run in a worker thread (``Passwords`` in ``accounts.passwords`` does that). Hashes with absurd
parameters are refused before verifying, so an imported row cannot become a denial of service.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.low_level import Type

MIN_LENGTH = 8  # ASVS 6.2.1
MAX_LENGTH = 1024  # long passphrases welcome (6.2.9); bounded so hashing stays cheap
# Stored hashes beyond these would make one verify cost ~0.1 s or more: refused, not verified.
MAX_MEMORY_KIB = 64 * 1024
MAX_TIME_COST = 4
MAX_PARALLELISM = 4
MAX_BCRYPT_COST = 14


@dataclass(frozen=True, slots=True)
class Verification:
    """``ok``: the password matches; ``new_hash``: store this instead (rehash or upgrade)."""

    ok: bool
    new_hash: str | None = None


class UnsafeHash(ValueError):
    """A stored hash whose parameters would make verifying it a denial of service."""


class PasswordHashing:
    def __init__(self, *, time_cost: int = 2, memory_kib: int = 19 * 1024, parallelism: int = 1):
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        # Verified against when the account does not exist (or has no password), so both cases
        # cost the same. Of a random secret: no password anyone knows matches it.
        self.dummy_hash = self._hasher.hash(secrets.token_urlsafe(32))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str, password: str) -> Verification:
        """Check ``password`` against ``stored`` (argon2id, or legacy bcrypt ``$2a/b/y$``)."""
        if stored.startswith(("$2a$", "$2b$", "$2y$")):
            return self._verify_bcrypt(stored, password)
        _check_argon2_parameters(stored)
        try:
            self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return Verification(False)
        if self._hasher.check_needs_rehash(stored):
            return Verification(True, self.hash(password))
        return Verification(True)

    def _verify_bcrypt(self, stored: str, password: str) -> Verification:
        try:
            cost = int(stored.split("$")[2])
        except (IndexError, ValueError) as exc:
            raise UnsafeHash("malformed bcrypt hash") from exc
        if cost > MAX_BCRYPT_COST:
            raise UnsafeHash(f"bcrypt cost {cost} is above {MAX_BCRYPT_COST}")
        secret = password.encode()
        # bcrypt only reads 72 bytes: a longer password cannot have produced a legacy hash
        # that we would want to accept as proof of the whole password.
        if len(secret) > 72:
            return Verification(False)
        try:
            ok = bcrypt.checkpw(secret, stored.encode())
        except ValueError:
            return Verification(False)
        return Verification(True, self.hash(password)) if ok else Verification(False)


def _check_argon2_parameters(stored: str) -> None:
    try:
        params = dict(p.split("=") for p in stored.split("$")[3].split(","))
        memory, time_cost, lanes = int(params["m"]), int(params["t"]), int(params["p"])
    except (IndexError, KeyError, ValueError) as exc:
        raise UnsafeHash("malformed argon2 hash") from exc
    if memory > MAX_MEMORY_KIB or time_cost > MAX_TIME_COST or lanes > MAX_PARALLELISM:
        raise UnsafeHash(f"argon2 parameters m={memory} t={time_cost} p={lanes} are too costly")


def password_problem(password: str) -> str | None:
    """Why ``password`` is not acceptable (length only, no composition rules), or ``None``."""
    if len(password) < MIN_LENGTH:
        return f"Password must be at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Password must be at most {MAX_LENGTH} characters."
    return None
