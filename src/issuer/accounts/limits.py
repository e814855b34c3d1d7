"""Rate-limit keys (quart-rate-limiter): per client IP, per account and IP, per user.

The per-account limit is keyed by account *and* client address, so an attacker elsewhere
cannot lock the victim out of their own account (ASVS 6.3.1); the per-IP limit caps one
source across all accounts.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from quart import Response, current_app, request
from quart_rate_limiter import KeyCallable, RateLimit, RateLimiter, RateLimitExceeded
from quart_rate_limiter.redis_store import RedisStore

from issuer.accounts.identifiers import email_key
from issuer.lib.tokens import Purpose, TokenExpired, TokenInvalid
from issuer.ops.metrics import LOGINS
from issuer.web.bodies import FORM_TYPES
from issuer.web.client import remote_ip
from issuer.web.context import services, settings


async def ip_key() -> str:
    return f"ip:{remote_ip()}"


async def account_key() -> str:
    """The normalised login identifier from the JSON or form body, plus the client address."""
    data = await request.get_json(silent=True)
    if not isinstance(data, dict):
        data = (await request.form).to_dict() if request.mimetype in FORM_TYPES else {}
    identifier = str(data.get("email") or data.get("username") or "")
    # surrogatepass: a lone surrogate in the JSON is refused by the view, not a 500 here.
    digest = hashlib.sha256(email_key(identifier).encode(errors="surrogatepass")).hexdigest()[:32]
    return f"account:{digest}:{remote_ip()}"


async def mfa_account_key() -> str:
    """The account of the login's MFA challenge (its token, in the body or the cookie, decoded
    without a database read), else the email in the body; plus the client address."""
    data = await request.get_json(silent=True)
    data = data if isinstance(data, dict) else {}
    token = data.get("mfa_token") or request.cookies.get("issuer_mfa") or ""
    try:
        account = services().tokens.decode(str(token), Purpose.MFA).sub
    except (TokenExpired, TokenInvalid):
        identifier = str(data.get("email") or "")
        account = hashlib.sha256(email_key(identifier).encode(errors="surrogatepass")).hexdigest()
    return f"mfa:{account[:32]}:{remote_ip()}"


async def user_key() -> str:
    """The access token's subject (no database read), else the client address."""
    raw = request.headers.get("Authorization", "")
    token = raw.partition(" ")[2].strip()
    try:
        claims = services().tokens.decode(token, Purpose.ACCESS)
    except (TokenExpired, TokenInvalid):
        return f"ip:{remote_ip()}"
    return f"user:{claims.sub}"


class ConfiguredLimit(RateLimit):
    """A quart-rate-limiter limit whose count and period (seconds) are read from settings
    when a request is checked, so each app instance uses its own configuration.

    ``budget`` names a count shared by every route the limit is on (the library counts each
    route apart): the MFA steps share one, so a guesser cannot add the recovery-code and
    passkey routes' allowances to the TOTP route's.
    """

    def __init__(
        self,
        count_setting: str,
        period_setting: str | int,
        key: KeyCallable,
        *,
        budget: str | None = None,
        sign_in: bool = False,
    ) -> None:
        self._count_setting = count_setting
        self._period_setting = period_setting
        self.budget = budget
        self.sign_in = sign_in  # a refusal counts as a rate-limited login
        super().__init__(1, timedelta(seconds=1), key)

    @property
    def count(self) -> int:
        return int(getattr(settings(), self._count_setting))

    @count.setter
    def count(self, _value: int) -> None:  # dataclass __init__ assigns it; settings win
        return None

    @property
    def period(self) -> timedelta:
        period = self._period_setting
        seconds = period if isinstance(period, int) else getattr(settings(), period)
        return timedelta(seconds=int(seconds))

    @period.setter
    def period(self, _value: timedelta) -> None:
        return None


class BudgetRateLimiter(RateLimiter):
    """quart-rate-limiter, with the counts of a :class:`ConfiguredLimit`'s ``budget`` shared
    across its routes (the library keys every count by its route)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Endpoint → whether it has any limit; most have none, and the library otherwise
        # gathers their (empty) limits twice per request.
        self._limited: dict[str | None, bool] = {}

    def _has_limits(self) -> bool:
        endpoint = request.endpoint
        found = self._limited.get(endpoint)
        if found is None:
            view = current_app.view_functions.get(endpoint) if endpoint else None
            blueprint = current_app.blueprints.get(request.blueprint or "")
            found = view is not None and bool(self._get_limits_for_view_function(view, blueprint))
            self._limited[endpoint] = found
        return found

    async def _before_request(self) -> None:
        if self._has_limits():
            await super()._before_request()

    async def _after_request(self, response: Response) -> Response:
        if self._has_limits():
            return await super()._after_request(response)
        return response

    async def _create_key(self, endpoint: str, rate_limit: RateLimit) -> str:
        budget = getattr(rate_limit, "budget", None)
        return await super()._create_key(budget or endpoint, rate_limit)

    async def _raise_on_rejection(self, endpoint: str, rate_limits: list[RateLimit]) -> None:
        try:
            await super()._raise_on_rejection(endpoint, rate_limits)
        except RateLimitExceeded:
            # A refused login never reaches the sign-in service, which counts the others.
            if any(getattr(limit, "sign_in", False) for limit in rate_limits):
                LOGINS.labels("rate_limited").inc()
            raise


class ExpiringRedisStore(RedisStore):
    """quart-rate-limiter's Redis store with two fixes: a key expires once its limit has fully
    recovered (the library keeps every client's key forever: unbounded growth under a spray of
    addresses or names), and shutting down uses ``aclose()`` (``close()`` is deprecated)."""

    async def set(self, key: str, tat: datetime) -> None:
        # Past its theoretical arrival time a key says nothing a missing key would not.
        assert self._redis is not None, "used before serving"
        ttl_ms = int((tat - datetime.now(UTC)).total_seconds() * 1000) + 1000
        await self._redis.set(key, tat.timestamp(), px=max(ttl_ms, 1000))

    async def after_serving(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


LOGIN_LIMITS: list[RateLimit] = [
    ConfiguredLimit("login_limit_per_ip", "login_limit_period", ip_key, sign_in=True),
    ConfiguredLimit("login_limit_per_account", "login_limit_period", account_key, sign_in=True),
]
GENERATE_ARRAY_QUOTA: list[RateLimit] = [ConfiguredLimit("generate_array_quota", 60, user_key)]
MFA_LIMITS: list[RateLimit] = [
    ConfiguredLimit("mfa_limit_per_ip", "mfa_limit_period", ip_key, budget="mfa", sign_in=True),
    ConfiguredLimit(
        "mfa_limit_per_account", "mfa_limit_period", mfa_account_key, budget="mfa", sign_in=True
    ),
]
