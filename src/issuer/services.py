"""The services of one app instance, built complete by ``create_app`` (``issuer.app``), and
their lifecycle: ``start()`` when the app starts serving, ``stop()`` when it stops.

Route code reaches them through ``issuer.web.context.services()``; tests through
``services_of(app)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from quart import Quart

from issuer.accounts.emails import AccountEmails
from issuer.accounts.passwords import Passwords
from issuer.accounts.service import Accounts
from issuer.accounts.sessions import LoginSessions
from issuer.accounts.signin import SignIn
from issuer.clock import Clock
from issuer.config import Settings
from issuer.db import Database
from issuer.idempotency.service import Idempotency
from issuer.issuance.agents.base import Agent
from issuer.issuance.devwallet import LocalAgents
from issuer.issuance.pollers import Pollers
from issuer.issuance.service import IssuanceService
from issuer.lib.network import Network
from issuer.lib.tokens import TokenCodec
from issuer.mfa.challenges import MfaChallenges
from issuer.mfa.passkeys import Passkeys
from issuer.mfa.service import Totp
from issuer.ops.metrics import sample_pool_every
from issuer.outbox.amqp import EventPublisher
from issuer.outbox.dispatcher import Dispatcher
from issuer.outbox.service import Outbox
from issuer.posts.service import Posts
from issuer.realtime.broker import Broker
from issuer.realtime.hub import Hub
from issuer.social.service import SocialLogin
from issuer.supervisor import Supervisor
from issuer.web.context import EXTENSION

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    settings: Settings
    clock: Clock
    db: Database
    supervisor: Supervisor
    outbox: Outbox
    dispatcher: Dispatcher
    publisher: EventPublisher | None
    passwords: Passwords
    tokens: TokenCodec
    sessions: LoginSessions
    challenges: MfaChallenges
    signin: SignIn
    emails: AccountEmails
    accounts: Accounts
    totp: Totp
    passkeys: Passkeys
    social: SocialLogin
    hub: Hub
    posts: Posts
    idempotency: Idempotency
    broker: Broker
    agent: Agent | None
    issuance: IssuanceService
    pollers: Pollers | None
    local_agents: LocalAgents | None
    trusted_proxies: tuple[Network, ...]
    # The key ACA-Py sends with its webhooks (generated for the local agents).
    webhook_key: str
    # Development only: the admin URL of the auto-accepting test wallet.
    test_wallet_url: str | None

    async def start(self) -> None:
        """Start the local agents (development) and the supervised loops."""
        if self.agent is None:
            log.warning("no credential agent configured: the portal answers 503 until one is")
        if self.local_agents is not None:
            await self.local_agents.start()
        self.supervisor.start()
        self.supervisor.run("outbox", self.dispatcher.run)
        self.supervisor.run("broker", self.broker.run)
        interval = self.settings.sweep_interval
        self.supervisor.run(
            "sweeper", lambda stopping: self.issuance.sweep(stopping, interval=interval)
        )
        self.supervisor.run("housekeeping", self.housekeeping)
        self.supervisor.run("channel subscriptions", self.hub.heartbeat)
        self.supervisor.run("pool metrics", lambda stopping: sample_pool_every(self.db, stopping))
        if self.settings.development:
            app_id, key, secret = self.settings.pusher_credentials
            log.warning(
                "Pusher app (development): PUSHER_APP_ID=%s PUSHER_API_KEY=%s PUSHER_API_SECRET=%s",
                app_id, key, secret,
            )  # fmt: skip

    async def housekeeping(self, stopping: asyncio.Event, interval: float = 600.0) -> None:
        """Supervised loop: forget what has expired (idempotency keys, MFA challenges)."""
        while not stopping.is_set():
            await self.idempotency.purge()
            await self.challenges.purge()
            await self.broker.purge()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)

    async def stop(self) -> None:
        """Let the loops finish what they hold (no transaction cut in half), then release
        every resource."""
        await self.supervisor.stop(grace=5)
        await self.hub.close()
        await self.close()

    async def close(self) -> None:
        """Release clients, pools, processes and the database engine."""
        if self.agent is not None:
            await self.agent.aclose()
        if self.local_agents is not None:
            await self.local_agents.stop()
        if self.publisher is not None:
            await self.publisher.close()
        await self.social.aclose()
        self.passwords.close()
        await self.db.dispose()


def services_of(app: Quart) -> Services:
    found: Services = app.extensions[EXTENSION]
    return found
