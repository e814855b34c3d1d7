"""``create_app()``: the one place that wires configuration, extensions, services and routes.

Every object is built complete here, in dependency order; nothing is patched in afterwards.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from quart import Quart
from quart_schema import Info, QuartSchema

from issuer.accounts.cli import register_cli
from issuer.accounts.emails import AccountEmails
from issuer.accounts.limits import (
    AtomicMemoryStore,
    BudgetRateLimiter,
    ExpiringRedisStore,
    ip_key,
)
from issuer.accounts.passwords import Passwords
from issuer.accounts.principals import CHANNEL as PRINCIPALS_CHANNEL
from issuer.accounts.principals import PrincipalCache
from issuer.accounts.service import Accounts
from issuer.accounts.sessions import LoginSessions
from issuer.accounts.signin import SignIn
from issuer.clock import Clock, SystemClock
from issuer.config import Settings, split_states
from issuer.db import Database, asyncpg_dsn
from issuer.idempotency.service import Idempotency
from issuer.issuance.agents.acapy import AcaPyAgent
from issuer.issuance.agents.base import Agent
from issuer.issuance.agents.rest import RestAgent
from issuer.issuance.devwallet import LocalAgents
from issuer.issuance.pollers import Pollers
from issuer.issuance.service import IssuanceService, snapshot_replay
from issuer.lib.mail import SmtpSettings
from issuer.lib.network import parse_networks
from issuer.lib.passwords import PasswordHashing
from issuer.lib.secretbox import SecretBox
from issuer.lib.tokens import TokenCodec
from issuer.logs import configure_logging
from issuer.mfa.challenges import MfaChallenges
from issuer.mfa.passkeys import Passkeys
from issuer.mfa.service import Totp
from issuer.ops.metrics import REQUESTS, register_metrics
from issuer.ops.routes import HEALTH, register_release
from issuer.ops.tracking import register_error_tracking
from issuer.outbox.amqp import EventPublisher
from issuer.outbox.delivery import Delivery
from issuer.outbox.dispatcher import Dispatcher
from issuer.outbox.service import Outbox
from issuer.posts.service import Posts
from issuer.realtime.broker import Broker, PostgresBroker
from issuer.realtime.hub import Hub
from issuer.realtime.protocol import PusherApp
from issuer.release import VERSION, Release
from issuer.services import Services
from issuer.social.providers import Facebook, GitHub, OpenIdProvider, Provider, ProviderHttp
from issuer.social.service import SocialLogin
from issuer.supervisor import Supervisor
from issuer.web import proxy, server
from issuer.web.application import IssuerApp, LazyQuartAuth
from issuer.web.context import EXTENSION
from issuer.web.errors import register_error_handlers
from issuer.web.observe import RequestObserver
from issuer.web.openapi import SECURITY_SCHEMES, IssuerOpenAPI


def create_app(
    overrides: dict[str, Any] | None = None,
    *,
    agent: Agent | None = None,
    clock: Clock | None = None,
) -> Quart:
    """Build the app. ``overrides`` replace settings read from ``ISSUER_*`` and ``.env``;
    ``agent`` and ``clock`` replace the configured agent and the system clock (tests)."""
    settings = Settings(**(overrides or {}))
    configure_logging(settings.log_level, settings.log_format)
    server.install(settings.ws_compression, reuse_port=settings.reuse_port)
    app = IssuerApp(__name__)
    server.notify_shutdown(app)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="issuer_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=not settings.development,
        MAX_CONTENT_LENGTH=64 * 1024,
        # Seconds a request body may take to arrive in full (a slow client gets 408).
        BODY_TIMEOUT=settings.body_timeout,
        BACKGROUND_TASK_SHUTDOWN_TIMEOUT=5,
        QUART_AUTH_COOKIE_NAME="issuer_auth",
        QUART_AUTH_COOKIE_SECURE=not settings.development,
        QUART_AUTH_COOKIE_SAMESITE="Lax",
        QUART_AUTH_DURATION=settings.session_ttl,
        QUART_AUTH_SALT="issuer browser session",
        QUART_RATE_LIMITER_ENABLED=settings.rate_limits_enabled,
    )
    QuartSchema(
        app,
        info=Info(title="issuer", version=VERSION, description="Credential issuance portal API"),
        openapi_path="/openapi.json",
        # The viewers are our own pages (issuer.ops.docs): no CDN, no inline script.
        redoc_ui_path=None,
        swagger_ui_path=None,
        scalar_ui_path=None,
        openapi_provider_class=IssuerOpenAPI,
        security_schemes=SECURITY_SCHEMES,
    )
    LazyQuartAuth(app)
    store = ExpiringRedisStore(settings.redis_url) if settings.redis_url else AtomicMemoryStore()
    BudgetRateLimiter(app, store=store, key_function=ip_key)

    services = build_services(settings, agent=agent, clock=clock or SystemClock())
    app.extensions[EXTENSION] = services
    app.before_serving(server.tie_worker_to_master)
    app.before_serving(services.start)
    app.before_serving(server.freeze_startup_heap)
    app.after_serving(services.stop)

    register_blueprints(app, settings)
    register_error_handlers(app)
    from issuer.posts.pages import error_page
    from issuer.web.errors import HTML_ERRORS

    app.extensions[HTML_ERRORS] = error_page
    register_metrics(app)
    release = Release.current(settings.git_revision)
    register_release(app, release)
    register_error_tracking(app, settings, release)
    register_cli(app)
    if services.trusted_proxies or settings.force_https:
        proxy.install(app, services.trusted_proxies, force_https=settings.force_https)
    # Outermost, so answers the proxy layer gives itself carry a request id and headers too.
    observer = RequestObserver(app.asgi_app, secure=not settings.development, latency=REQUESTS)
    # The bytes Quart's JSON provider sends outside debug: compact, sorted keys, a newline.
    health = app.json.dumps(app.extensions[HEALTH].model_dump(), separators=(",", ":")) + "\n"
    observer.answer_directly("/health", health.encode(), b"application/json")
    app.asgi_app = observer  # type: ignore[method-assign]
    return app


def build_services(settings: Settings, *, agent: Agent | None, clock: Clock) -> Services:
    """Every service, in dependency order."""
    db = Database(
        settings.database_url,
        pool_size=settings.database_pool_size,
        pool_timeout=settings.database_pool_timeout,
    )
    supervisor = Supervisor()
    publisher = (
        EventPublisher(settings.amqp_url, settings.amqp_exchange) if settings.amqp_url else None
    )
    broker = Broker(settings.realtime_queue_size)
    if db.is_postgres:
        broker = PostgresBroker(
            asyncpg_dsn(settings.database_url), db, clock, queue_size=settings.realtime_queue_size
        )
    broker.on_reconnect(snapshot_replay(db))
    principals = PrincipalCache()
    broker.watch(PRINCIPALS_CHANNEL, principals.notified, principals.listening)
    hub = Hub(
        db, broker, clock, PusherApp(*settings.pusher_credentials),
        max_connections=settings.pusher_max_connections,
        client_event_rate=settings.pusher_client_event_rate,
        replay_window=settings.events_replay_window, replay_max=settings.events_replay_max,
    )  # fmt: skip
    broker.on_reconnect(hub.after_reconnect)
    dispatcher = Dispatcher(
        db,
        Delivery(
            smtp=smtp_settings(settings),
            publisher=publisher,
            development=settings.development,
            realtime=hub.deliver_entity_event,
        ),
        clock=clock,
        max_attempts=settings.outbox_max_attempts,
        backoff_base=settings.outbox_backoff,
        backoff_max=settings.outbox_backoff_max,
        poll_interval=settings.outbox_poll_interval,
    )
    outbox = Outbox(clock, dispatcher.wake, publishes_events=publisher is not None)
    passwords = Passwords(
        PasswordHashing(
            time_cost=settings.argon2_time_cost,
            memory_kib=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        ),
        settings.hash_threads,
    )
    # A key of its own for tokens, derived from the app secret (key separation).
    key = hmac.new(settings.secret_key.encode(), b"issuer access tokens", hashlib.sha256).digest()
    tokens = TokenCodec(key, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    sessions = LoginSessions(
        db,
        tokens,
        clock,
        outbox,
        access_ttl=settings.access_token_ttl,
        session_ttl=settings.session_ttl,
        idle_timeout=settings.session_idle_timeout,
        refresh_grace=settings.refresh_grace,
        principals=principals,
    )
    challenges = MfaChallenges(
        db,
        tokens,
        clock,
        ttl=settings.mfa_challenge_ttl,
        max_attempts=settings.mfa_max_attempts,
    )
    emails = AccountEmails(
        db,
        outbox,
        clock,
        base_url=settings.public_base_url,
        verify_ttl=settings.verify_token_ttl,
        reset_ttl=settings.reset_token_ttl,
    )
    signin = SignIn(db, sessions, challenges, clock)
    http = ProviderHttp(settings.social_timeout)
    social = SocialLogin(
        db, signin, emails, outbox, clock, http, identity_providers(settings, http),
        base_url=settings.public_base_url, deadline=3 * settings.social_timeout,
    )  # fmt: skip
    local_agents, webhook_key = None, settings.webhook_api_key
    if agent is None and settings.agent == "local":
        webhook_key = webhook_key or secrets.token_urlsafe(24)
        local_agents = LocalAgents(
            settings.acapy_bin,
            webhook_url=f"http://127.0.0.1:{settings.port}/webhooks",
            webhook_key=webhook_key,
            timeout=settings.agent_timeout,
            credential_type=settings.credential_type,
        )
        agent = local_agents.agent
    elif agent is None:
        agent = configured_agent(settings)
    issuance = IssuanceService(
        db,
        agent,
        broker,
        outbox,
        clock,
        offer_timeout=settings.offer_timeout,
        invitation_timeout=settings.invitation_timeout,
    )
    pollers = None
    if agent is not None and not agent.pushes_events:
        pollers = Pollers(
            issuance,
            supervisor,
            initial_delay=settings.poll_initial_delay,
            backoff=settings.poll_backoff,
            max_delay=settings.poll_max_delay,
        )
    test_wallet_url = None
    if settings.development:
        test_wallet_url = (
            local_agents.test_wallet_url if local_agents else settings.test_wallet_admin_url
        ) or None
    return Services(
        settings=settings,
        clock=clock,
        db=db,
        supervisor=supervisor,
        outbox=outbox,
        dispatcher=dispatcher,
        publisher=publisher,
        passwords=passwords,
        tokens=tokens,
        sessions=sessions,
        challenges=challenges,
        signin=signin,
        emails=emails,
        accounts=Accounts(db, passwords, sessions, emails, clock),
        totp=Totp(
            db,
            passwords,
            outbox,
            clock,
            secrets_box=SecretBox(settings.secret_key, "issuer totp secrets"),
            codes_box=SecretBox(settings.secret_key, "issuer recovery codes"),
            issuer_name=settings.totp_issuer,
        ),
        passkeys=Passkeys(
            db,
            outbox,
            clock,
            rp_id=settings.relying_party_id,
            rp_name=settings.webauthn_rp_name,
            origins=settings.relying_party_origins,
        ),
        social=social,
        hub=hub,
        posts=Posts(db, outbox, clock),
        idempotency=Idempotency(db, clock),
        broker=broker,
        agent=agent,
        issuance=issuance,
        pollers=pollers,
        local_agents=local_agents,
        trusted_proxies=parse_networks(settings.trusted_proxies),
        webhook_key=webhook_key,
        test_wallet_url=test_wallet_url,
    )


def identity_providers(settings: Settings, http: ProviderHttp) -> list[Provider]:
    """The social login providers that have a client id (the others are off)."""
    found: list[Provider] = []
    if settings.github_client_id:
        found.append(
            GitHub(
                http,
                client_id=settings.github_client_id,
                client_secret=settings.github_client_secret,
                oauth_url=settings.github_oauth_url,
                api_url=settings.github_api_url,
            )
        )
    openid = [
        ("google", "Google", settings.google_issuer, settings.google_client_id,
         settings.google_client_secret),
        ("linkedin", "LinkedIn", settings.linkedin_issuer, settings.linkedin_client_id,
         settings.linkedin_client_secret),
    ] + [
        (p.name, p.title or p.name, p.issuer, p.client_id, p.client_secret)
        for p in settings.oidc_providers
    ]  # fmt: skip
    for name, title, issuer, client_id, client_secret in openid:
        if client_id:
            found.append(
                OpenIdProvider(
                    http,
                    name=name,
                    title=title,
                    issuer=issuer,
                    client_id=client_id,
                    client_secret=client_secret,
                    also_issued_as=("accounts.google.com",) if name == "google" else (),
                )
            )
    if settings.facebook_app_id:
        found.append(
            Facebook(
                http,
                app_id=settings.facebook_app_id,
                app_secret=settings.facebook_app_secret,
                graph_url=settings.facebook_graph_url,
                dialog_url=settings.facebook_dialog_url,
            )
        )
    return found


def configured_agent(settings: Settings) -> Agent | None:
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
    return None


def smtp_settings(settings: Settings) -> SmtpSettings | None:
    if not settings.smtp_host:
        return None
    return SmtpSettings(
        host=settings.smtp_host,
        port=settings.smtp_port,
        security=settings.smtp_security,
        username=settings.smtp_username,
        password=settings.smtp_password,
        timeout=settings.smtp_timeout,
        sender=settings.mail_from,
    )


def register_blueprints(app: Quart, settings: Settings) -> None:
    from issuer.accounts.pages import blueprint as account_pages
    from issuer.accounts.recovery import blueprint as recovery
    from issuer.accounts.routes import blueprint as accounts
    from issuer.issuance.links import blueprint as invitations
    from issuer.issuance.routes import blueprint as issuance
    from issuer.issuance.routes import register_name_form
    from issuer.mfa.routes import blueprint as mfa
    from issuer.ops.docs import blueprint as docs
    from issuer.ops.routes import blueprint as ops
    from issuer.posts.pages import blueprint as post_pages
    from issuer.posts.routes import blueprint as posts
    from issuer.realtime.routes import blueprint as realtime
    from issuer.social.routes import blueprint as social
    from issuer.vectors.routes import blueprint as vectors

    for blueprint in (
        ops,
        docs,
        issuance,
        invitations,
        accounts,
        account_pages,
        vectors,
        recovery,
        mfa,
        social,
        realtime,
        posts,
        post_pages,
    ):
        app.register_blueprint(blueprint)
    register_name_form(app, settings.attribute_names)
    if settings.development:
        from issuer.issuance.devwallet import blueprint as devwallet
        from issuer.outbox.routes import blueprint as dev_outbox

        app.register_blueprint(dev_outbox)
        if settings.agent == "local" or settings.test_wallet_admin_url:
            app.register_blueprint(devwallet)
