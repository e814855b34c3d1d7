"""Rate limits (quart-rate-limiter): their keys (per client IP, per account and IP, per user)
and stores that check and count a request in one step.

The per-account limit is keyed by account *and* client address, so an attacker elsewhere
cannot lock the victim out of their own account (ASVS 6.3.1); the per-IP limit caps one
source across all accounts.

The library checks every limit of a request (reading each key) and then counts it (reading
and writing each key again), awaiting between: attempts sent at once all passed the check
before any was counted, so a guesser with 24 parallel requests got 24 tries against a limit
of 3 (ASVS 2.2.1). Here both stores check and count all of a request's limits in one step:
the memory store with no ``await`` inside (atomic on the event loop), Redis in one Lua
script. The algorithm is the library's, GCRA (the generic cell rate algorithm: a key holds
its theoretical arrival time, TAT; a request is refused while the TAT is more than
``period - period / count`` ahead of now, and each admitted one moves it ``period / count``
on).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from math import ceil
from typing import Any, Protocol

from quart import Response, current_app, request
from quart_rate_limiter import KeyCallable, RateLimit, RateLimiter, RateLimitExceeded
from quart_rate_limiter.redis_store import RedisStore
from quart_rate_limiter.store import MemoryStore
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from issuer.accounts.identifiers import email_key
from issuer.errors import Unavailable
from issuer.lib.tokens import Purpose, TokenExpired, TokenInvalid
from issuer.ops.metrics import LOGINS
from issuer.web.bodies import FORM_TYPES
from issuer.web.client import remote_ip
from issuer.web.context import services, settings

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Count:
    """One limit of one request: its key in the store, its period and its emission interval
    (``period / count``), in seconds."""

    key: str
    period: float
    inverse: float


class AtomicStore(Protocol):
    async def acquire(self, counts: list[Count]) -> float | None:
        """Admit and count the request if no limit refuses it (``None``); else the seconds
        until the first refusing limit admits again, counting nothing. The time is read in
        the same step: requests are judged in the order they are counted in, so none is
        refused for a clock read a moment before another's."""
        ...


class BudgetRateLimiter(RateLimiter):
    """quart-rate-limiter, with the counts of a :class:`ConfiguredLimit`'s ``budget`` shared
    across its routes (the library keys every count by its route), and each request checked
    and counted in one step of its store (:class:`AtomicStore`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.store, AtomicMemoryStore | ExpiringRedisStore):
            raise TypeError(f"a store that checks and counts in one step, not {self.store!r}")
        self.atomic: AtomicStore = self.store
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
            try:
                return await super()._after_request(response)  # the RateLimit-* headers
            except RedisError:  # unreachable: the answer goes without them
                return response
        return response

    async def _create_key(self, endpoint: str, rate_limit: RateLimit) -> str:
        budget = getattr(rate_limit, "budget", None)
        return await super()._create_key(budget or endpoint, rate_limit)

    async def _raise_on_rejection(self, endpoint: str, rate_limits: list[RateLimit]) -> None:
        """Check and count the request (the library only checks here, and counts later)."""
        counts = [
            Count(await self._create_key(endpoint, limit), limit.period.total_seconds(),
                  limit.inverse)
            for limit in rate_limits
        ]  # fmt: skip
        if not counts:
            return
        try:
            retry_after = await self.atomic.acquire(counts)
        except RedisError as exc:  # the shared counts are out of reach: refuse, don't guess
            log.warning("rate limit store unavailable: %s", exc)
            raise Unavailable("Too busy to check the request's limits; please try again.",
                              code="limits_unavailable") from exc  # fmt: skip
        if retry_after is not None:
            # A refused login never reaches the sign-in service, which counts the others.
            if any(getattr(limit, "sign_in", False) for limit in rate_limits):
                LOGINS.labels("rate_limited").inc()
            raise RateLimitExceeded(max(1, ceil(retry_after)))

    async def _update_limits(self, endpoint: str, rate_limits: list[RateLimit]) -> None:
        """Nothing: :meth:`_raise_on_rejection` counted the request in the step that checked
        it."""
        return None


class AtomicMemoryStore(MemoryStore):
    """quart-rate-limiter's memory store (one worker), checking and counting a request in one
    step, and forgetting keys whose limit has fully recovered once there are many."""

    PRUNE_ABOVE = 10_000

    def __init__(self) -> None:
        super().__init__()
        self._prune_above = self.PRUNE_ABOVE

    async def acquire(self, counts: list[Count]) -> float | None:
        # No await in here: nothing else runs on the event loop between check and count.
        now = datetime.now(UTC)
        tats = []
        for count in counts:
            tat = max(self._tats.get(count.key, now), now)
            ahead = (tat - now).total_seconds() - (count.period - count.inverse)
            if ahead > 0:
                return ahead
            tats.append(tat + timedelta(seconds=count.inverse))
        for count, tat in zip(counts, tats, strict=True):
            self._tats[count.key] = tat
        if len(self._tats) > self._prune_above:
            self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
            # Keys still live stay: the next pass waits for as many again, so a spray of
            # addresses costs one pass per as many new keys, not one per request.
            self._prune_above = max(self.PRUNE_ABOVE, 2 * len(self._tats))
        return None


# KEYS: the limits' keys; ARGV: each key's period and emission interval (seconds). Now is
# Redis's clock (one clock for every worker and host). Returns nil when admitted (and counted),
# else the seconds until the first refusing key admits again, as a string (Redis truncates Lua
# numbers to integers).
# A TAT is stored as seconds since the epoch (the library's format; a value that is not a
# number counts as none) and expires once its limit has recovered.
GCRA_SCRIPT = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local tats = {}
for i, key in ipairs(KEYS) do
  local period = tonumber(ARGV[2 * i - 1])
  local inverse = tonumber(ARGV[2 * i])
  local tat = math.max(tonumber(redis.call('GET', key)) or now, now)
  local ahead = tat - now - (period - inverse)
  if ahead > 0 then
    return tostring(ahead)
  end
  tats[i] = tat + inverse
end
for i, key in ipairs(KEYS) do
  local ttl = math.max(math.ceil((tats[i] - now) * 1000) + 1000, 1000)
  redis.call('SET', key, string.format('%.6f', tats[i]), 'PX', ttl)
end
return nil
"""


class ExpiringRedisStore(RedisStore):
    """quart-rate-limiter's Redis store (every worker and host shares it), checking and
    counting a request in one Lua script (:data:`GCRA_SCRIPT`); a key expires once its limit
    has fully recovered (the library keeps every client's key forever: unbounded growth under a
    spray of addresses or names), and shutting down uses ``aclose()`` (``close()`` is
    deprecated)."""

    _script: AsyncScript | None = None

    def __init__(self, address: str, *, timeout: float = 2.0) -> None:
        """``timeout``: seconds each Redis call may take; past it, or with Redis down, a
        limited request is refused as unavailable (503), never counted by guesswork."""
        super().__init__(address, socket_timeout=timeout, socket_connect_timeout=timeout)

    async def before_serving(self) -> None:
        await super().before_serving()
        assert self._redis is not None
        self._script = self._redis.register_script(GCRA_SCRIPT)  # EVALSHA, loaded on first use

    async def acquire(self, counts: list[Count]) -> float | None:
        assert self._script is not None, "used before serving"
        limits = [value for count in counts for value in (count.period, count.inverse)]
        keys = [count.key for count in counts]
        answer = await self._script(keys=keys, args=limits)
        return None if answer is None else float(answer)

    async def after_serving(self) -> None:
        self._script = None
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
