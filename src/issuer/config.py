"""Settings read from ``ISSUER_*`` environment variables and a ``.env`` file.

Every setting is documented in the README's configuration table. Validation happens once, at
``create_app()``; a production start with a missing or placeholder secret is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from enum import StrEnum
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset({"", "change-me", "changeme", "secret", "dev", "development"})


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


# A provider's name in paths (``/social/<name>``, ``/login/<name>``): at most 31 characters, so
# it never reads as a 32-hex login-method id.
PROVIDER_NAME = r"^[a-z][a-z0-9_-]{0,30}$"
# Built-in providers, 004's password method, and /login/passkey.
RESERVED_PROVIDER_NAMES = frozenset(
    {"github", "google", "linkedin", "facebook", "signup", "passkey"}
)


class OidcProviderSettings(BaseModel):
    """An OpenID Connect provider, found by discovery at
    ``{issuer}/.well-known/openid-configuration``."""

    name: str = Field(pattern=PROVIDER_NAME)
    issuer: str
    client_id: str
    client_secret: str = ""
    # The button's text ("Keycloak"); the name when empty.
    title: str = ""
    scopes: str = "openid email profile"

    @model_validator(mode="after")
    def _not_reserved(self) -> OidcProviderSettings:
        if self.name in RESERVED_PROVIDER_NAMES:
            raise ValueError(f"ISSUER_OIDC_PROVIDERS: the name {self.name!r} is taken")
        return self


class Settings(BaseSettings):
    """The whole configuration. Field ``x`` is read from ``ISSUER_X``."""

    # An empty variable (ISSUER_AGENT=) means "not set": the default applies.
    model_config = SettingsConfigDict(
        env_prefix="ISSUER_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
    )

    env: Environment = Environment.PRODUCTION
    secret_key: str = ""
    port: int = Field(5000, validation_alias=AliasChoices("PORT", "ISSUER_PORT"))
    database_url: str = "sqlite+aiosqlite:///issuer.db"
    # Pool size per worker; size it to the concurrency you expect per worker (see README).
    database_pool_size: int = 20
    database_pool_timeout: float = 10.0
    public_base_url: str = "http://localhost:5000"
    # Extra websocket origins besides the server's own (ASVS 4.4.1); comma separated.
    allowed_origins: str = ""
    log_level: str = "INFO"
    # Seconds a request body may take to arrive in full; slower clients get 408.
    body_timeout: float = 10.0
    # When set, GET /metrics needs "Authorization: Bearer <token>".
    metrics_token: str = ""
    # "text" (one readable line per event, the development default) or "json" (one JSON object
    # per line for a log collector).
    log_format: Literal["text", "json"] = "text"
    # Plain-HTTP page requests are redirected to HTTPS; plain-HTTP API requests answer 403.
    # Behind a TLS-terminating proxy list it in ISSUER_TRUSTED_PROXIES (X-Forwarded-Proto).
    force_https: bool = False
    # The git revision this build is (the image sets it at build time); empty: unknown.
    git_revision: str = ""

    # --- error tracking (each off unless configured) -------------------------------------
    # A Sentry DSN (Sentry, self-hosted Sentry or GlitchTip).
    sentry_dsn: str = ""
    # The environment and release reported with each event (default: ISSUER_ENV, and the
    # version plus git revision).
    sentry_environment: str = ""
    sentry_release: str = ""
    # Share of errors sent (1.0: all), and of requests traced for performance (0: none).
    sentry_sample_rate: float = Field(1.0, ge=0.0, le=1.0)
    sentry_traces_sample_rate: float = Field(0.0, ge=0.0, le=1.0)
    # Rollbar (004's error tracker): a project's post_server_item access token.
    rollbar_access_token: str = ""
    rollbar_environment: str = ""
    rollbar_endpoint: str = "https://api.rollbar.com/api/1/"

    # --- accounts ----------------------------------------------------------------------------
    jwt_issuer: str = "issuer"
    jwt_audience: str = "issuer-api"
    # Seconds. 001's tokens lived 30 min.
    access_token_ttl: int = 1800
    # Absolute lifetime of a login (its refresh tokens cannot outlive it), seconds.
    session_ttl: int = 30 * 24 * 3600
    # A session unused this long ends (002 used 120 s), seconds.
    session_idle_timeout: int = 3600
    # Seconds the previous refresh token stays valid after a rotation (two tabs at once).
    refresh_grace: float = 10.0
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19 * 1024
    argon2_parallelism: int = 1
    # Threads that hash passwords; argon2 holds no GIL, so one per core saturates the CPU.
    hash_threads: int = 2
    # Rate limits (quart-rate-limiter); shared by every worker when redis_url is set. Off only
    # where something in front of the app limits rates (or to fuzz the API).
    rate_limits_enabled: bool = True
    redis_url: str = ""
    login_limit_per_ip: int = 20
    login_limit_per_account: int = 5
    login_limit_period: int = 60
    generate_array_quota: int = 10
    # Second-factor attempts (TOTP, recovery code, passkey) per client address, and per
    # account and address, per period (seconds).
    mfa_limit_per_ip: int = 20
    mfa_limit_per_account: int = 5
    mfa_limit_period: int = 60

    # --- multi-factor authentication ----------------------------------------------------------
    # The issuer name authenticator apps show next to the account (RFC 6238 Key Uri Format).
    totp_issuer: str = "issuer"
    # GET /recovery_codes answers only how many remain (004's clients expect the codes).
    recovery_codes_show_once: bool = False
    # Seconds a login may wait for its second factor, and the attempts it gets.
    mfa_challenge_ttl: int = 300
    mfa_max_attempts: int = 5
    # WebAuthn relying party: its id (a registrable domain; default: public_base_url's host),
    # its name, and the origins pages may call it from (default: public_base_url's origin).
    webauthn_rp_id: str = ""
    webauthn_rp_name: str = "issuer"
    webauthn_origins: str = ""
    # Comma-separated proxy addresses/networks whose X-Forwarded-For is believed.
    trusted_proxies: str = ""

    # --- social login (a provider without a client id is off) --------------------------------
    github_client_id: str = ""
    github_client_secret: str = ""
    github_oauth_url: str = "https://github.com"
    github_api_url: str = "https://api.github.com"
    google_client_id: str = ""
    google_client_secret: str = ""
    google_issuer: str = "https://accounts.google.com"
    linkedin_client_id: str = ""
    linkedin_client_secret: str = ""
    linkedin_issuer: str = "https://www.linkedin.com/oauth"
    facebook_app_id: str = ""
    facebook_app_secret: str = ""
    facebook_graph_url: str = "https://graph.facebook.com"
    facebook_dialog_url: str = "https://www.facebook.com/dialog/oauth"
    # More OpenID Connect providers, as a JSON list of
    # {"name", "issuer", "client_id", "client_secret", "title"?, "scopes"?}.
    oidc_providers: list[OidcProviderSettings] = []
    # Seconds each call to a provider may take (connect, read) before it counts as down.
    social_timeout: float = 5.0

    # --- realtime (websockets) -----------------------------------------------------------------
    # permessage-deflate on websockets: "off" (~90 KB less per socket), "no-context-takeover"
    # (each message compressed alone), or "on" (hypercorn's default).
    ws_compression: Literal["off", "no-context-takeover", "on"] = "off"
    # With several hypercorn workers, each listens on its own SO_REUSEPORT socket so the kernel
    # spreads connections across them (otherwise one worker may take them all).
    reuse_port: bool = True
    # Messages a websocket may fall behind before it is dropped (closed; the client reconnects).
    realtime_queue_size: int = 256
    # The Pusher Channels app (004's PUSHER_APP_ID, PUSHER_API_KEY, PUSHER_API_SECRET). Unset,
    # they are derived from ISSUER_SECRET_KEY (the same in every worker; printed in development).
    pusher_app_id: str = Field("", pattern=r"^[0-9]*$")
    pusher_key: str = Field("", pattern=r"^[A-Za-z0-9_-]*$")
    pusher_secret: str = ""
    # Seconds without a message before the server expects a ping (Pusher's activity_timeout).
    pusher_activity_timeout: int = 120
    # Websocket connections per worker; more are refused with 4100 (over capacity).
    pusher_max_connections: int = 10_000
    # Bytes of one client message, and of one event's data through the Events API.
    pusher_max_message_bytes: int = 10_240
    # Client events per second per connection (more are refused with 4301).
    pusher_client_event_rate: float = 10.0
    # Missed entity events a reconnecting client may ask for (``since``): how old (seconds), and
    # how many at most.
    events_replay_window: int = 86_400
    events_replay_max: int = 1000

    # --- email and events (the outbox) -------------------------------------------------------
    # Without an SMTP host, development writes emails to the log and /dev/outbox; elsewhere
    # they wait in the outbox (retrying) until one is configured.
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_timeout: float = 10.0
    mail_from: str = "issuer <no-reply@localhost>"
    # Seconds a verification / reset link stays valid.
    verify_token_ttl: int = 3600
    reset_token_ttl: int = 1800
    # RabbitMQ: domain events go to a durable topic exchange when this is set.
    amqp_url: str = ""
    amqp_exchange: str = "issuer.events"
    outbox_max_attempts: int = 8
    # Seconds: first retry delay (doubling each time) and its ceiling; idle poll interval.
    outbox_backoff: float = 2.0
    outbox_backoff_max: float = 600.0
    outbox_poll_interval: float = 1.0

    # --- the credential agent ---------------------------------------------------------------
    # "acapy" (ACA-Py admin API), "rest" (the original connect/issue REST API), or "local"
    # (development: start a local ACA-Py issuer, and a test wallet, as subprocesses).
    agent: Literal["acapy", "rest", "local"] | None = None
    agent_timeout: float = 5.0
    acapy_admin_url: str = ""
    acapy_admin_api_key: str = ""
    # Shared key ACA-Py sends with every webhook (``--webhook-url URL#KEY`` → ``x-api-key``).
    webhook_api_key: str = ""
    acapy_bin: str = ".venv-acapy/bin/aca-py"
    # Development only: admin URL of an auto-accepting ACA-Py holder behind "Use the local test
    # wallet". With ISSUER_AGENT=local one is started for you.
    test_wallet_admin_url: str = ""
    rest_connection_url: str = ""
    rest_issuer_url: str = ""
    rest_credential_definition_id: str = ""
    rest_accepted_states: str = "DONE,COMPLETED,ACCEPTED,ISSUED,CREDENTIAL_ACKED"
    rest_declined_states: str = "DECLINED,REJECTED,ABANDONED"
    rest_failed_states: str = "FAILED,ERROR"
    # Polling backoff for the REST adapter, seconds: first delay, factor, ceiling.
    poll_initial_delay: float = 2.0
    poll_backoff: float = 1.15
    poll_max_delay: float = 5.0

    # --- the credential --------------------------------------------------------------------
    credential_type: str = "EducationCredential"
    credential_attributes: str = "prename,surname,institution"
    default_language: Literal["de", "fr", "en"] = "de"
    # Seconds an offer may stay unanswered before the session becomes ``expired``.
    offer_timeout: float = 300.0
    # Seconds an invitation may stay unused before the session becomes ``expired``.
    invitation_timeout: float = 1800.0
    # Seconds between sweeps that expire sessions and reconcile missed webhooks.
    sweep_interval: float = 5.0

    @model_validator(mode="after")
    def _check_secrets(self) -> Settings:
        if not 30 <= self.mfa_challenge_ttl <= 300:
            raise ValueError("ISSUER_MFA_CHALLENGE_TTL must be 30–300 seconds (ASVS 7.2.4)")
        if self.secret_key.strip().lower() in PLACEHOLDER_SECRETS:
            if self.env is Environment.PRODUCTION:
                raise ValueError(
                    "ISSUER_SECRET_KEY is missing or a placeholder; set a long random value"
                )
            self.secret_key = secrets.token_urlsafe(32)
        # OWASP's argon2id floor (ASVS 11.4.2) is enforced in production.
        weak = self.argon2_time_cost < 2 or self.argon2_memory_kib < 19 * 1024
        if weak and self.env is Environment.PRODUCTION:
            raise ValueError("argon2 parameters below OWASP's minimum (m=19 MiB, t=2, p=1)")
        if self.agent is None:
            self.agent = (
                "acapy" if self.acapy_admin_url else "rest" if self.rest_issuer_url else None
            )
            if self.agent is None and self.env is Environment.DEVELOPMENT:
                self.agent = "local"
        return self

    @property
    def pusher_credentials(self) -> tuple[str, str, str]:
        """``(app_id, key, secret)``: the configured ones, or ones derived from the secret key
        (HMAC-SHA256 with a label each), so every worker and host agrees without setup."""

        def derived(label: str) -> str:
            return hmac.new(self.secret_key.encode(), label.encode(), hashlib.sha256).hexdigest()

        app_id = self.pusher_app_id or str(int(derived("issuer pusher app id")[:8], 16))
        return (
            app_id,
            self.pusher_key or derived("issuer pusher key")[:20],
            self.pusher_secret or derived("issuer pusher secret"),
        )

    @property
    def development(self) -> bool:
        return self.env is Environment.DEVELOPMENT

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")

    @property
    def attribute_names(self) -> list[str]:
        return [a.strip() for a in self.credential_attributes.split(",") if a.strip()]

    @property
    def relying_party_id(self) -> str:
        return self.webauthn_rp_id or (urlsplit(self.public_base_url).hostname or "localhost")

    @property
    def relying_party_origins(self) -> list[str]:
        if self.webauthn_origins:
            return [o.strip().rstrip("/") for o in self.webauthn_origins.split(",") if o.strip()]
        parts = urlsplit(self.public_base_url)
        return [f"{parts.scheme}://{parts.netloc}"]

    @property
    def origin_allow_list(self) -> set[str]:
        return {o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip()}


def split_states(value: str) -> frozenset[str]:
    return frozenset(s.strip().upper() for s in value.split(",") if s.strip())
