"""Social login's use cases: sign in with a provider identity, link one to the logged-in
user, list a user's login methods, unlink one.

An identity is found by ``(provider, subject)``, never by email. A first login creates an
account without a password (its email verified when the provider says so); it never takes over
an existing account with the same email — that account's owner logs in (password, and MFA if
enabled) and links the provider from there (SECURITY.md 6.8.1: an identity provider's claims
are bound to an account only by the account's owner). Provider tokens are not stored.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import logging
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from issuer.accounts import queries as accounts
from issuer.accounts.emails import AccountEmails
from issuer.accounts.events import user_event
from issuer.accounts.identifiers import email_key, username_key
from issuer.accounts.methods import last_login_method, login_ways
from issuer.accounts.models import User
from issuer.accounts.sessions import Principal
from issuer.accounts.signin import AUTHENTICATION_FAILED, Outcome, SignIn
from issuer.clock import Clock
from issuer.db import Database
from issuer.errors import Conflict, NotFound, Refused, Unauthenticated
from issuer.lib.network import Client
from issuer.outbox.service import Outbox
from issuer.social import queries
from issuer.social.models import Identity
from issuer.social.providers import (
    Facebook,
    GitHub,
    OpenIdProvider,
    Provider,
    ProviderHttp,
    ProviderIdentity,
    down,
)

log = logging.getLogger("issuer.audit")
SIGNUP = "signup"  # 004's login method of an email and a password
NAMESPACE = uuid.UUID("5b0e7a47-3f6e-4a52-9a43-52b7f1fb1d3b")
NOT_A_USERNAME = re.compile(r"[^\w.@+-]")


@dataclass(frozen=True, slots=True)
class LoginMethod:
    """One way a user logs in: a provider identity, or ``signup`` (the password)."""

    entity_id: uuid.UUID
    provider: str
    email: str | None = None
    user_name: str | None = None
    scope: str | None = None
    token_type: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class BrowserLogin:
    """A redirect login under way: what the callback must see again (RFC 6749 §10.12
    ``state``, RFC 7636 PKCE, OpenID Connect ``nonce``), kept in the browser session."""

    provider: str
    state: str
    code_verifier: str
    nonce: str
    link_session: str | None  # linking: the login session that started it
    started_at: float


def signup_method_id(user: User) -> uuid.UUID:
    """The stable id of a user's password login method (004 lists it as ``signup``)."""
    return uuid.uuid5(NAMESPACE, user.entity_id.hex)


def code_challenge(verifier: str) -> str:
    """RFC 7636 §4.2 S256."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class FirstLoginRaced(Conflict):
    """The same first login created the account (or identity) at the same time."""


def fitted(identity: ProviderIdentity) -> ProviderIdentity:
    """``identity`` cut to what is stored (an email too long to be one is dropped), so every
    write of it — first login, repeat login, link — stores the same values."""
    email = identity.email if identity.email and len(identity.email) <= 320 else None
    return dataclasses.replace(
        identity,
        email=email,
        email_verified=identity.email_verified and email is not None,
        user_name=(identity.user_name or "")[:300] or None,
        first_name=(identity.first_name or "")[:150] or None,
        last_name=(identity.last_name or "")[:150] or None,
        scope=(identity.scope or "")[:300] or None,
        token_type=(identity.token_type or "")[:32] or None,
    )


class SocialFactor:
    """A provider identity as a :class:`~issuer.accounts.signin.Factor`: one factor, so an
    account with MFA still gets its second-factor challenge."""

    name = "social"
    multi_factor = False
    kind: str | None = None

    def __init__(self, social: SocialLogin, identity: ProviderIdentity) -> None:
        self._social = social
        self._identity = identity

    async def check(self) -> None:
        """Nothing left to do: the provider vouched for the identity already."""

    async def confirm(self, session: AsyncSession) -> User:
        return await self._social.account_for(session, self._identity)


class SocialLogin:
    def __init__(
        self,
        db: Database,
        signin: SignIn,
        emails: AccountEmails,
        outbox: Outbox,
        clock: Clock,
        http: ProviderHttp,
        providers: list[Provider],
        *,
        base_url: str,
        deadline: float,
    ) -> None:
        """``deadline``: seconds one identification (all its calls to the provider) may take."""
        self.db = db
        self.deadline = deadline
        self.signin = signin
        self.emails = emails
        self.outbox = outbox
        self.clock = clock
        self.http = http
        self.providers = {p.name: p for p in providers}
        self.base_url = base_url.rstrip("/")

    async def aclose(self) -> None:
        await self.http.aclose()

    # --- providers ---------------------------------------------------------------------------

    def provider(self, name: str) -> Provider:
        """The configured provider ``name``; ``NotFound`` when it is not configured."""
        found = self.providers.get(name)
        if found is None:
            raise NotFound(f"There is no login with {name}.", code="unknown_provider")
        return found

    def titles(self) -> list[tuple[str, str]]:
        """``(name, title)`` of every configured provider, for the login page's buttons."""
        return [(p.name, p.title) for p in self.providers.values()]

    def redirect_uri(self, name: str) -> str:
        """The callback to register at the provider."""
        return f"{self.base_url}/login/{name}/callback"

    async def identify_id_token(self, name: str, token: str) -> ProviderIdentity:
        provider = self.provider(name)
        if not isinstance(provider, OpenIdProvider):
            raise Refused(f"{provider.title} logins take a code, not an ID token.")
        async with self._deadline(provider):
            return await provider.identify_id_token(token)

    async def identify_code(
        self,
        name: str,
        code: str,
        *,
        redirect_uri: str | None = None,
        code_verifier: str | None = None,
        nonce: str | None = None,
    ) -> ProviderIdentity:
        provider = self.provider(name)
        # GitHub uses the app's registered callback when none is sent (and refuses another
        # one); OpenID Connect and Facebook need the one the code was issued for.
        if redirect_uri is None and not isinstance(provider, GitHub):
            redirect_uri = self.redirect_uri(name)
        async with self._deadline(provider):
            return await provider.identify_code(
                code, redirect_uri=redirect_uri, code_verifier=code_verifier, nonce=nonce
            )

    @asynccontextmanager
    async def _deadline(self, provider: Provider) -> AsyncIterator[None]:
        """All of one identification (several calls) within ``deadline`` seconds: 503 after."""
        try:
            async with asyncio.timeout(self.deadline):
                yield
        except TimeoutError as exc:
            raise down(provider.title) from exc

    async def identify_facebook(
        self, access_token: str, user_id: str, extra: dict[str, Any]
    ) -> ProviderIdentity:
        provider = self.provider("facebook")
        assert isinstance(provider, Facebook)
        async with self._deadline(provider):
            return await provider.identify_token(access_token, user_id=user_id, extra=extra)

    # --- the browser's redirect flow ---------------------------------------------------------

    async def begin(
        self, name: str, *, link_session: str | None = None
    ) -> tuple[str, BrowserLogin]:
        """The provider's authorization URL, and what the callback will check. With
        ``link_session`` (the login session asking), the flow links instead of signing in,
        and only that login session may complete it."""
        provider = self.provider(name)
        started = BrowserLogin(
            provider=name, state=secrets.token_urlsafe(24), code_verifier=secrets.token_urlsafe(48),
            nonce=secrets.token_urlsafe(24), link_session=link_session,
            started_at=self.clock.now().timestamp(),
        )  # fmt: skip
        url = await provider.authorization_url(
            redirect_uri=self.redirect_uri(name),
            state=started.state,
            code_challenge=code_challenge(started.code_verifier),
            nonce=started.nonce,
        )
        return url, started

    async def finish(
        self,
        name: str,
        started: BrowserLogin | None,
        *,
        state: str,
        code: str,
        issuer: str | None = None,
        max_age: float,
    ) -> ProviderIdentity:
        """The identity of a callback whose ``state`` is the one this browser started with,
        for this provider, recently, and (RFC 9207) whose ``iss``, when sent, is the
        provider's; refused (401) otherwise."""
        provider = self.provider(name)
        if (
            issuer is not None
            and isinstance(provider, OpenIdProvider)
            and issuer.rstrip("/") != provider.issuer
        ):
            log.info("social login refused: callback from another issuer provider=%s", name)
            raise Unauthenticated(
                f"The answer did not come from {provider.title}.", code="issuer_mismatch"
            )
        if (
            started is None
            or started.provider != name
            or not secrets.compare_digest(started.state.encode(), state.encode())
            or self.clock.now().timestamp() - started.started_at > max_age
        ):
            log.info("social login refused: state mismatch provider=%s", name)
            raise Unauthenticated(
                "This sign-in did not start here or has expired; please try again.",
                code="state_mismatch",
            )
        return await self.identify_code(
            name, code, redirect_uri=self.redirect_uri(name),
            code_verifier=started.code_verifier, nonce=started.nonce,
        )  # fmt: skip

    # --- signing in --------------------------------------------------------------------------

    async def sign_in(self, identity: ProviderIdentity, *, kind: str, client: Client) -> Outcome:
        """Sign in through the one authentication path (an MFA account gets its challenge)."""
        identity = fitted(identity)
        try:
            return await self.signin.sign_in(SocialFactor(self, identity), kind=kind, client=client)
        except FirstLoginRaced:
            # The same first login ran at once elsewhere and created the account: use it.
            return await self.signin.sign_in(SocialFactor(self, identity), kind=kind, client=client)

    async def account_for(self, session: AsyncSession, identity: ProviderIdentity) -> User:
        """Inside the sign-in transaction: the account of ``identity``, created on its first
        login. Refused (409) when another account has its email: that owner links it."""
        now = self.clock.now()
        email = identity.email
        row = await queries.identity_by_subject(session, identity.provider, identity.subject)
        if row is not None:
            user = await accounts.user_by_id(session, row.user_id)
            if user is None or not user.active:
                raise Unauthenticated(AUTHENTICATION_FAILED, code="authentication_failed")
            await queries.stamp_identity(
                session, row.id, email=email, email_verified=identity.email_verified,
                user_name=identity.user_name, now=now,
            )  # fmt: skip
            return user
        title = self.provider(identity.provider).title
        if email and await accounts.user_by_email(session, email) is not None:
            log.info("social signup refused: email taken provider=%s", identity.provider)
            raise Conflict(
                f"An account with the email {email} already exists. Log in to it, then link "
                f"your {title} account from the dashboard.",
                code="account_exists",
            )
        # Only an email the provider verified becomes the account's: an unverified one would
        # let its holder keep an account that the email's real owner later takes over (a
        # password reset) while the provider identity stays linked. It stays on the identity.
        if not identity.email_verified:
            email = None
        username = None
        if email is None:  # every account needs an email or a username
            username = await self._free_username(session, identity)
        user = User(
            email=email, email_key=email_key(email) if email else None,
            username=username, username_key=username_key(username) if username else None,
            first_name=identity.first_name, last_name=identity.last_name,
            verified=email is not None, verified_at=now if email else None,
            password_hash=None, created_at=now,
        )  # fmt: skip
        try:
            await accounts.add_user(session, user)
            await self.emails.created(session, user)
            await self._add_identity(session, user, identity, now)
        except IntegrityError as exc:  # the same first login at once: the transaction ends
            raise FirstLoginRaced() from exc
        log.info("account created entity_id=%s by %s", user.entity_id.hex, identity.provider)
        return user

    async def _free_username(self, session: AsyncSession, identity: ProviderIdentity) -> str:
        """``<provider>-<subject>``, or with a random suffix when someone registered that."""
        base = NOT_A_USERNAME.sub("-", f"{identity.provider}-{identity.subject}")[:140]
        candidate = base
        while await accounts.user_by_username(session, candidate) is not None:
            candidate = f"{base}-{secrets.token_hex(4)}"
        return candidate

    async def _add_identity(
        self, session: AsyncSession, user: User, identity: ProviderIdentity, now: datetime
    ) -> Identity:
        row = await queries.add_identity(
            session,
            Identity(
                user_id=user.id, provider=identity.provider, subject=identity.subject,
                email=identity.email, email_verified=identity.email_verified,
                user_name=identity.user_name, scope=identity.scope,
                token_type=identity.token_type, created_at=now, last_login_at=now,
            ),
        )  # fmt: skip
        await self.outbox.event(
            session, "login_method.created", {**user_event(user), "provider": identity.provider},
            user_id=user.id,
        )  # fmt: skip
        return row

    # --- the logged-in user's login methods --------------------------------------------------

    async def link(self, principal: Principal, identity: ProviderIdentity) -> User:
        """004: with a login, the provider identity is added to that user's login methods.
        One already linked to someone else is refused (409)."""
        user = principal.user
        identity = fitted(identity)
        async with self.db.transaction() as session:
            row = await queries.identity_by_subject(session, identity.provider, identity.subject)
            if row is not None and row.user_id != user.id:
                log.info("link refused: identity of another user provider=%s", identity.provider)
                raise Conflict(
                    f"This {self.provider(identity.provider).title} account is linked to "
                    "another user.",
                    code="identity_taken",
                )
            now = self.clock.now()
            if row is None:
                try:
                    await self._add_identity(session, user, identity, now)
                except IntegrityError as exc:
                    raise Conflict("This account is being linked right now.") from exc
            else:
                await queries.stamp_identity(
                    session, row.id, email=identity.email, email_verified=identity.email_verified,
                    user_name=identity.user_name, now=now,
                )  # fmt: skip
        log.info("linked %s to entity_id=%s", identity.provider, user.entity_id.hex)
        return user

    async def methods(self, user: User) -> list[LoginMethod]:
        """004's ``GET /social``: the linked providers, and ``signup`` with a password."""
        async with self.db.session() as session:
            rows = await queries.identities_of(session, user.id)
        found = [
            LoginMethod(
                r.entity_id, r.provider, email=r.email, user_name=r.user_name, scope=r.scope,
                token_type=r.token_type, created_at=r.created_at,
            )
            for r in rows
        ]  # fmt: skip
        if user.password_hash is not None:
            found.append(LoginMethod(signup_method_id(user), SIGNUP, created_at=user.created_at))
        return found

    async def unlink(self, principal: Principal, method_id: uuid.UUID) -> None:
        """Remove a login method; never the last way to log in (a password, a provider, or a
        passkey). Another user's (or an unknown) id is refused with 004's message."""
        async with self.db.transaction() as session:
            user = await queries.lock_user(session, principal.user.id)
            if user is None:
                raise Unauthenticated()
            identities = await queries.identities_of(session, user.id)
            ways = await login_ways(session, user)
            target = next((r for r in identities if r.entity_id == method_id), None)
            is_password = user.password_hash is not None and method_id == signup_method_id(user)
            if target is None and not is_password:
                raise Refused(
                    f"This user doesn't have login method {method_id.hex}", code="unknown_method"
                )
            if ways <= 1:
                raise last_login_method()
            if target is not None:
                await queries.delete_own_identity(session, user.id, method_id)
                provider = target.provider
            else:
                await queries.remove_password(session, user.id)
                provider = SIGNUP
            await self.outbox.event(
                session, "login_method.deleted", {**user_event(user), "provider": provider},
                user_id=user.id,
            )  # fmt: skip
        log.info("unlinked %s from entity_id=%s", provider, user.entity_id.hex)
