"""``create_app()``: the one place that wires configuration, extensions, database and routes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from typing import Any

from quart import Quart
from quart_auth import QuartAuth
from quart_rate_limiter import RateLimiter
from quart_rate_limiter.store import MemoryStore
from quart_schema import Info, QuartSchema

from issuer.accounts.cli import register_cli
from issuer.accounts.emails import AccountEmails
from issuer.accounts.limits import ExpiringRedisStore, ip_key
from issuer.accounts.service import Accounts
from issuer.accounts.sessions import Sessions
from issuer.config import Settings, split_states
from issuer.db import Database, asyncpg_dsn
from issuer.errors import register_error_handlers
from issuer.issuance.agents.acapy import AcaPyAgent
from issuer.issuance.agents.base import Agent
from issuer.issuance.agents.rest import RestAgent
from issuer.issuance.broker import LocalBroker, PostgresBroker
from issuer.issuance.pollers import Pollers
from issuer.issuance.service import IssuanceService
from issuer.lib.mail import SmtpSettings
from issuer.lib.network import parse_networks
from issuer.lib.passwords import PasswordHashing
from issuer.lib.tokens import TokenCodec
from issuer.logs import configure_logging
from issuer.ops.metrics import register_metrics
from issuer.outbox.amqp import EventPublisher
from issuer.outbox.delivery import Delivery
from issuer.outbox.dispatcher import Dispatcher
from issuer.web import register_web_hooks

log = logging.getLogger(__name__)


def create_app(overrides: dict[str, Any] | None = None) -> Quart:
    """Build the app. ``overrides`` replace settings read from ``ISSUER_*`` and ``.env``."""
    settings = Settings(**(overrides or {}))
    configure_logging(settings.log_level)
    app = Quart(__name__)
    app.config.update(
        SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="issuer_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=not settings.development,
        MAX_CONTENT_LENGTH=64 * 1024,
        BACKGROUND_TASK_SHUTDOWN_TIMEOUT=5,
    )
    QuartSchema(
        app,
        info=Info(title="issuer", version="0.1.0", description="Credential issuance portal API"),
        openapi_path="/openapi.json",
        redoc_ui_path="/redocs",
        swagger_ui_path="/docs",
        scalar_ui_path=None,
    )
    register_error_handlers(app)
    register_web_hooks(app)
    register_metrics(app)

    db = Database(
        settings.database_url,
        pool_size=settings.database_pool_size,
        pool_timeout=settings.database_pool_timeout,
    )
    broker = LocalBroker()
    service = IssuanceService(
        db,
        None,
        broker,
        offer_timeout=settings.offer_timeout,
        invitation_timeout=settings.invitation_timeout,
    )
    if db.is_postgres:
        service.broker = broker = PostgresBroker(asyncpg_dsn(settings.database_url), service.resync)
    app.extensions.update(db=db, issuance=service)
    init_outbox(app, settings, db)
    init_accounts(app, settings, db)
    service.wake_outbox = app.extensions["dispatcher"].wake

    from issuer.accounts.pages import blueprint as account_pages_bp
    from issuer.accounts.recovery import blueprint as recovery_bp
    from issuer.accounts.routes import blueprint as accounts_bp
    from issuer.issuance.routes import blueprint as issuance_bp
    from issuer.ops.routes import blueprint as ops_bp
    from issuer.vectors.routes import blueprint as vectors_bp

    app.register_blueprint(ops_bp)
    app.register_blueprint(issuance_bp)
    app.register_blueprint(accounts_bp)
    app.register_blueprint(account_pages_bp)
    app.register_blueprint(vectors_bp)
    app.register_blueprint(recovery_bp)
    if settings.development and (settings.agent == "local" or settings.test_wallet_admin_url):
        from issuer.issuance.devwallet import blueprint as dev_bp

        app.register_blueprint(dev_bp)
    if settings.development:
        from issuer.outbox.routes import blueprint as dev_outbox_bp

        app.register_blueprint(dev_outbox_bp)

    background: list[asyncio.Task[None]] = []
    stopping = asyncio.Event()

    @app.before_serving
    async def startup() -> None:
        agent = await build_agent(app, settings)
        service._agent = agent
        if agent is not None and not agent.pushes_events:
            app.extensions["pollers"] = Pollers(
                service,
                initial_delay=settings.poll_initial_delay,
                backoff=settings.poll_backoff,
                max_delay=settings.poll_max_delay,
            )
        await broker.start()
        stopping.clear()
        sweeper = sweep_forever(service, settings, stopping)
        background.append(asyncio.create_task(sweeper, name="sweeper"))
        dispatcher = app.extensions["dispatcher"]
        background.append(asyncio.create_task(dispatcher.run_forever(), name="outbox"))

    @app.after_serving
    async def shutdown() -> None:
        # Let the loops finish what they hold (no transaction cut in half), then insist.
        stopping.set()
        app.extensions["dispatcher"].stop()
        _, late = await asyncio.wait(background, timeout=5)
        for task in late:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        background.clear()
        pollers = app.extensions.pop("pollers", None)
        if pollers is not None:
            await pollers.stop()
        await broker.stop()
        if service._agent is not None:
            await service._agent.aclose()
            service._agent = None
        for stop in app.extensions.pop("stop_on_shutdown", []):
            await stop()
        app.extensions["accounts"].close()
        publisher = app.extensions["delivery"].publisher
        if publisher is not None:
            await publisher.close()
        await db.dispose()

    return app


async def build_agent(app: Quart, settings: Settings) -> Agent | None:
    if settings.agent == "acapy":
        return AcaPyAgent(
            settings.acapy_admin_url,
            api_key=settings.acapy_admin_api_key,
            timeout=settings.agent_timeout,
            credential_type=settings.credential_type,
        )
    if settings.agent == "rest":
        return RestAgent(
            settings.rest_connection_url,
            settings.rest_issuer_url,
            settings.rest_credential_definition_id,
            timeout=settings.agent_timeout,
            accepted=split_states(settings.rest_accepted_states),
            declined=split_states(settings.rest_declined_states),
            failed=split_states(settings.rest_failed_states),
        )
    if settings.agent == "local":
        from issuer.issuance.devwallet import start_local_agents

        return await start_local_agents(app, settings)
    log.warning("no credential agent configured: the portal answers 503 until one is")
    return None


async def sweep_forever(
    service: IssuanceService, settings: Settings, stopping: asyncio.Event
) -> None:
    """Expire overdue sessions and reconcile ones whose webhooks may have been missed."""
    stale_after = max(3 * settings.sweep_interval, 10.0)
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), settings.sweep_interval)
        if stopping.is_set():
            return
        try:
            await service.expire_due()
            agent = service._agent
            if agent is not None and agent.pushes_events:
                await service.reconcile_stale(stale_after)
        except Exception:
            log.exception("sweep failed; trying again next interval")


def init_accounts(app: Quart, settings: Settings, db: Database) -> None:
    """Password hashing, token codec, login sessions, quart-auth cookies and rate limits."""
    hashing = PasswordHashing(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )
    # A key of its own for tokens, derived from the app secret (key separation).
    key = hmac.new(settings.secret_key.encode(), b"issuer access tokens", hashlib.sha256).digest()
    codec = TokenCodec(key, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    accounts = app.extensions["accounts"] = Accounts(db, hashing, settings.hash_threads)
    accounts.emails = app.extensions["account_emails"] = AccountEmails(
        db,
        base_url=settings.public_base_url,
        verify_ttl=settings.verify_token_ttl,
        reset_ttl=settings.reset_token_ttl,
        wake=app.extensions["dispatcher"].wake,
    )
    app.extensions["sessions"] = Sessions(
        db,
        codec,
        access_ttl=settings.access_token_ttl,
        session_ttl=settings.session_ttl,
        idle_timeout=settings.session_idle_timeout,
        refresh_grace=settings.refresh_grace,
    )
    app.extensions["trusted_proxies"] = parse_networks(settings.trusted_proxies)
    app.config.update(
        QUART_AUTH_COOKIE_NAME="issuer_auth",
        QUART_AUTH_COOKIE_SECURE=not settings.development,
        QUART_AUTH_COOKIE_SAMESITE="Lax",
        QUART_AUTH_DURATION=settings.session_ttl,
        QUART_AUTH_SALT="issuer browser session",
    )
    QuartAuth(app)
    store = ExpiringRedisStore(settings.redis_url) if settings.redis_url else MemoryStore()
    RateLimiter(app, store=store, key_function=ip_key)
    register_cli(app)


def init_outbox(app: Quart, settings: Settings, db: Database) -> None:
    """The outbox dispatcher and where it delivers: SMTP (aiosmtplib), RabbitMQ (aio-pika)."""
    smtp = None
    if settings.smtp_host:
        smtp = SmtpSettings(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=settings.smtp_password,
            timeout=settings.smtp_timeout,
            sender=settings.mail_from,
        )
    publisher = (
        EventPublisher(settings.amqp_url, settings.amqp_exchange) if settings.amqp_url else None
    )
    delivery = Delivery(smtp=smtp, publisher=publisher, development=settings.development)
    app.extensions["delivery"] = delivery
    app.extensions["dispatcher"] = Dispatcher(
        db,
        delivery,
        max_attempts=settings.outbox_max_attempts,
        backoff_base=settings.outbox_backoff,
        backoff_max=settings.outbox_backoff_max,
        poll_interval=settings.outbox_poll_interval,
    )
