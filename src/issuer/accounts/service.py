"""Accounts: registration, authentication and password changes.

Passwords are hashed and verified in a small thread pool, never on the event loop (a verify is
~17 ms of CPU). Uniqueness is the database's job: a unique index on each normalised identifier,
so N concurrent registrations of one identifier make exactly one account.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from issuer.accounts.emails import AccountEmails
from issuer.accounts.identifiers import email_key, username_key
from issuer.accounts.models import User
from issuer.db import Database, utcnow
from issuer.errors import APIError
from issuer.lib.passwords import PasswordHashing, UnsafeHash, Verification, password_problem

log = logging.getLogger("issuer.audit")
# How much lower the hashing threads run (nice increment). With as many hashing threads as cores
# at the loop's priority, a login storm takes the event loop's CPU and every other request waits
# (the loop shares its process's scheduling group with them). Lower, they still get all the CPU
# the loop leaves; login throughput is unchanged.
HASH_THREAD_NICENESS = 10


def _lower_thread_priority() -> None:
    """Thread-pool initializer: lower this thread's priority (on Linux, nice is per thread)."""
    if sys.platform != "linux":
        return
    thread = threading.get_native_id()
    with contextlib.suppress(OSError):  # not allowed here: hash at the normal priority
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + HASH_THREAD_NICENESS))


@dataclass(frozen=True, slots=True)
class NewAccount:
    password: str
    email: str | None = None
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    language: str | None = None


class Accounts:
    def __init__(self, db: Database, hashing: PasswordHashing, threads: int) -> None:
        self.db = db
        self.hashing = hashing
        self._pool = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="argon2", initializer=_lower_thread_priority
        )
        # Writes the emails and events of account changes in the same transaction.
        self.emails: AccountEmails | None = None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def hash_password(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.hashing.hash, password)

    async def verify_password(self, stored: str | None, password: str) -> Verification:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._pool, self.hashing.verify, stored or self.hashing.dummy_hash, password
            )
        except UnsafeHash as exc:
            log.warning("refused to verify an unsafe stored hash: %s", exc)
            return Verification(False)

    async def register(self, account: NewAccount, *, check: bool = True) -> User | None:
        """Create the account; ``None`` when the email or username is taken.

        ``check=False`` skips the password policy (importing legacy accounts only).
        """
        problem = password_problem(account.password) if check else None
        if problem:
            raise APIError(422, "weak_password", problem)
        user = User(
            email=account.email.strip() if account.email else None,
            email_key=email_key(account.email) if account.email else None,
            username=account.username.strip() if account.username else None,
            username_key=username_key(account.username) if account.username else None,
            first_name=account.first_name,
            last_name=account.last_name,
            language=account.language,
            password_hash=await self.hash_password(account.password),
            created_at=utcnow(),
        )
        try:
            async with self.db.transaction() as session:
                session.add(user)
                await session.flush()
                if self.emails is not None:
                    await self.emails.created(session, user)
        except IntegrityError:
            log.info("registration refused: identifier taken")
            if account.email and self.emails is not None:
                await self.emails.signup_taken(account.email)
            return None
        if self.emails is not None:
            self.emails.wake()
        log.info("account created entity_id=%s", user.entity_id.hex)
        return user

    async def find(self, kind: Literal["email", "username"], identifier: str) -> User | None:
        column, key = (
            (User.email_key, email_key(identifier))
            if kind == "email"
            else (User.username_key, username_key(identifier))
        )
        async with self.db.sessions() as session:
            return await session.scalar(select(User).where(column == key))

    async def find_any(self, identifier: str) -> User | None:
        """By email or username, whichever matches."""
        async with self.db.sessions() as session:
            return await session.scalar(
                select(User)
                .where(
                    or_(
                        User.email_key == email_key(identifier),
                        User.username_key == username_key(identifier),
                    )
                )
                .limit(1)
            )

    async def authenticate(self, user: User | None, password: str) -> User | None:
        """Check the password (the same work whether or not the user exists; ASVS 6.3.8)."""
        result = await self.verify_password(user.password_hash if user else None, password)
        if user is None or not result.ok or not user.active:
            log.info("login failed entity_id=%s", user.entity_id.hex if user else "-")
            return None
        if result.new_hash:  # parameters changed, or a legacy bcrypt hash: upgrade it now
            await self._store_hash(user.id, result.new_hash)
            user.password_hash = result.new_hash
        return user

    async def _store_hash(self, user_id: int, new_hash: str) -> None:
        async with self.db.transaction() as session:
            await session.execute(
                update(User).where(User.id == user_id).values(password_hash=new_hash)
            )

    async def change_password(self, user: User, existing: str, new: str) -> None:
        """ASVS 6.2.3: the current password is required. Raises 400/422 with 004's messages."""
        if not new:
            raise APIError(400, "bad_request", "Please provide a new password.")
        if not existing:
            raise APIError(400, "bad_request", "Please provide an existing password.")
        if existing == new:
            raise APIError(400, "bad_request", "Existing and new password cannot be same.")
        problem = password_problem(new)
        if problem:
            raise APIError(422, "weak_password", problem)
        if not (await self.verify_password(user.password_hash, existing)).ok:
            raise APIError(400, "bad_request", "Provided existing password is invalid")
        new_hash = await self.hash_password(new)
        async with self.db.transaction() as session:
            await session.execute(
                update(User).where(User.id == user.id).values(password_hash=new_hash)
            )
            if self.emails is not None:
                await self.emails.password_changed(session, user)
        if self.emails is not None:
            self.emails.wake()
        log.info("password changed entity_id=%s", user.entity_id.hex)
