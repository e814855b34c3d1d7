"""The identity providers: each asks its provider, over httpx, who the user is.

- :class:`GitHub`: OAuth 2.0 web application flow. The code is exchanged for an access token (a
  200 answer with an ``error`` field is a refusal), then ``/user`` and ``/user/emails`` say who
  it is; only a primary, verified email counts.
- :class:`OpenIdProvider`: OpenID Connect Core 1.0 by discovery (Google, LinkedIn, Keycloak, …).
  An ID token is verified with PyJWT against the provider's JWKS (cached, fetched again on an
  unknown ``kid``): signature, ``iss``, ``aud`` = our client id, ``azp``, ``exp``, ``iat`` and,
  when the login started here, ``nonce``. A code is exchanged at the token endpoint first.
- :class:`Facebook`: the Graph API's ``debug_token`` with the app token (``is_valid``, our
  ``app_id``, the client's ``userID``, not expired), then ``/me`` with ``appsecret_proof``.

Every call has explicit timeouts. A provider that cannot be reached, is slow or answers nonsense
raises :class:`~issuer.errors.Unavailable` (503); a code, token or ID token the provider does
not vouch for raises :class:`~issuer.errors.Unauthenticated` (401). Nothing here writes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

import httpx
import jwt

from issuer.errors import Unauthenticated, Unavailable

log = logging.getLogger("issuer.social")
# Asymmetric algorithms only: an ID token signed with "none" or a shared secret is refused.
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
# Seconds of clock difference tolerated on exp / iat.
LEEWAY = 60
# Seconds a discovery document is cached. The key set is fetched again for an unknown kid, at
# most once per KEYS_REFRESH seconds (a forged kid cannot make us hammer the provider).
METADATA_TTL = 3600.0
KEYS_REFRESH = 30.0
# An identity's subject is stored as up to 255 characters; a longer one is refused, not cut.
SUBJECT_MAX = 255


@dataclass(frozen=True, slots=True)
class ProviderIdentity:
    """Who the provider says the user is. ``auth`` is 004's ``auth`` object of the answer."""

    provider: str
    subject: str
    email: str | None
    email_verified: bool
    user_name: str | None
    first_name: str | None = None
    last_name: str | None = None
    scope: str | None = None
    token_type: str | None = None
    auth: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A provider's published key, and the algorithm its JWK names (if it names one)."""

    jwk: jwt.PyJWK
    alg: str | None


class Provider(Protocol):
    name: str
    title: str

    async def authorization_url(
        self, *, redirect_uri: str, state: str, code_challenge: str, nonce: str
    ) -> str:
        """The provider's authorization endpoint for a browser login (RFC 6749 §4.1.1, RFC 7636
        S256; ``nonce`` where the protocol has one)."""
        ...

    async def identify_code(
        self, code: str, *, redirect_uri: str | None, code_verifier: str | None, nonce: str | None
    ) -> ProviderIdentity:
        """Exchange an authorization code (issued for ``redirect_uri``, when it was sent) and
        say who it belongs to."""
        ...


class ProviderHttp:
    """The one HTTP client of the providers: explicit timeouts, and the provider's failures
    turned into domain errors."""

    def __init__(self, timeout: float, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            headers={"Accept": "application/json", "User-Agent": "issuer"},
            transport=transport,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def call(self, title: str, method: str, url: str, *, refused: str, **kwargs: Any) -> Any:
        """The JSON answer of ``url``. The provider refusing (4xx) raises ``Unauthenticated``
        with ``refused``; down, slow, 5xx or not JSON raises ``Unavailable``."""
        try:
            response = await self.client.request(method, url, **kwargs)
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            log.warning("%s unreachable: %s %s: %r", title, method, url, exc)
            raise down(title) from exc
        if 400 <= response.status_code < 500:
            log.info("%s refused %s %s: %s", title, method, url, response.status_code)
            raise Unauthenticated(refused, code="social_refused")
        if response.status_code != 200:
            log.warning("%s answered %s to %s %s", title, response.status_code, method, url)
            raise down(title)
        try:
            return response.json()
        except (ValueError, RecursionError) as exc:
            log.warning("%s answered %s %s with something not JSON", title, method, url)
            raise down(title) from exc


def down(title: str) -> Unavailable:
    return Unavailable(
        f"{title} cannot be reached right now; please try again.", code="provider_unavailable"
    )


def refused(message: str) -> Unauthenticated:
    return Unauthenticated(message, code="social_refused")


def text(value: Any) -> str | None:
    """A string claim, or ``None`` (a provider may send null, a number or nothing)."""
    return value.strip() or None if isinstance(value, str) else None


def with_query(url: str, params: dict[str, str]) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


class GitHub:
    """GitHub's OAuth app ("Authorizing OAuth apps", web application flow, PKCE)."""

    name = "github"
    title = "GitHub"
    scope = "read:user user:email"

    def __init__(
        self, http: ProviderHttp, *, client_id: str, client_secret: str, oauth_url: str,
        api_url: str,
    ) -> None:  # fmt: skip
        self._http = http
        self._client_id = client_id
        self._client_secret = client_secret
        self._oauth_url = oauth_url.rstrip("/")
        self._api_url = api_url.rstrip("/")

    async def authorization_url(
        self, *, redirect_uri: str, state: str, code_challenge: str, nonce: str
    ) -> str:
        return with_query(
            f"{self._oauth_url}/login/oauth/authorize",
            {
                "client_id": self._client_id, "redirect_uri": redirect_uri, "scope": self.scope,
                "state": state, "code_challenge": code_challenge,
                "code_challenge_method": "S256", "allow_signup": "true",
            },
        )  # fmt: skip

    async def identify_code(
        self,
        code: str,
        *,
        redirect_uri: str | None = None,
        code_verifier: str | None = None,
        nonce: str | None = None,
    ) -> ProviderIdentity:
        form = {"client_id": self._client_id, "client_secret": self._client_secret, "code": code}
        if redirect_uri:
            form["redirect_uri"] = redirect_uri
        if code_verifier:
            form["code_verifier"] = code_verifier
        invalid = "The GitHub code is invalid or has expired."
        answer = await self._http.call(
            self.title, "POST", f"{self._oauth_url}/login/oauth/access_token", data=form,
            refused=invalid,
        )  # fmt: skip
        # GitHub answers a bad code with 200 and {"error": "bad_verification_code", …}.
        if not isinstance(answer, dict) or answer.get("error") or not answer.get("access_token"):
            error = answer.get("error") if isinstance(answer, dict) else None
            log.info("GitHub refused the code: %s", error)
            raise refused(invalid)
        token = str(answer["access_token"])
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}
        expired = "GitHub did not accept its own access token."
        user, emails = await asyncio.gather(
            self._http.call(self.title, "GET", f"{self._api_url}/user", headers=headers,
                            refused=expired),
            self._http.call(self.title, "GET", f"{self._api_url}/user/emails", headers=headers,
                            refused=expired),
        )  # fmt: skip
        if (
            not isinstance(user, dict)
            or not isinstance(user.get("id"), int)
            or isinstance(user.get("id"), bool)
            or not isinstance(emails, list)
        ):
            raise down(self.title)
        primary = next(
            (
                e for e in emails
                if isinstance(e, dict) and e.get("primary") is True and e.get("verified") is True
            ),
            None,
        )  # fmt: skip
        name = text(user.get("name"))
        first, _, last = (name or "").partition(" ")
        return ProviderIdentity(
            provider=self.name,
            subject=str(user["id"]),
            email=text(primary.get("email")) if primary else None,
            email_verified=primary is not None,
            user_name=name or text(user.get("login")),
            first_name=first or text(user.get("login")),
            last_name=last or None,
            scope=text(answer.get("scope")),
            token_type=text(answer.get("token_type")),
            auth={
                "access_token": token,
                "scope": answer.get("scope"),
                "token_type": answer.get("token_type"),
            },
        )


class OpenIdProvider:
    """An OpenID Connect provider found by discovery (OpenID Connect Discovery 1.0 §4)."""

    def __init__(
        self,
        http: ProviderHttp,
        *,
        name: str,
        title: str,
        issuer: str,
        client_id: str,
        client_secret: str,
        scopes: str = "openid email profile",
        also_issued_as: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.title = title
        self._http = http
        self.issuer = issuer.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._scopes = scopes
        # Google's ID tokens may say "accounts.google.com" without the scheme.
        self._issuers = (self.issuer, *also_issued_as)
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: dict[str, SigningKey] = {}
        self._fetched = False
        self._refetched_at = float("-inf")
        self._lock = asyncio.Lock()

    # --- discovery and keys ------------------------------------------------------------------

    async def metadata(self) -> dict[str, Any]:
        """The discovery document (cached); its ``issuer`` must be the configured one (§4.3)."""
        if self._metadata is not None and time.monotonic() - self._metadata_at < METADATA_TTL:
            return self._metadata
        url = f"{self.issuer}/.well-known/openid-configuration"
        found: dict[str, Any] | Any = await self._http.call(
            self.title, "GET", url, refused="Discovery refused."
        )
        if not isinstance(found, dict):
            raise down(self.title)
        issuer = found.get("issuer")
        if not isinstance(issuer, str) or issuer.rstrip("/") != self.issuer:
            log.error("%s: discovery at %s names another issuer", self.title, url)
            raise down(self.title)
        for needed in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(found.get(needed), str):
                log.error("%s: discovery document without %s", self.title, needed)
                raise down(self.title)
        self._metadata, self._metadata_at = found, time.monotonic()
        return found

    async def _key(self, kid: str | None) -> SigningKey:
        known = self._find(kid) if self._fetched else None
        if known is not None:  # no waiting behind a refetch for another kid
            return known
        async with self._lock:
            if not self._fetched:
                await self._fetch_keys()
            key = self._find(kid)
            # A key we do not know: the provider may have rotated; ask again, but not more
            # than once per KEYS_REFRESH seconds.
            if key is None and time.monotonic() - self._refetched_at >= KEYS_REFRESH:
                self._refetched_at = time.monotonic()
                await self._fetch_keys()
                key = self._find(kid)
        if key is None:
            raise refused(f"The {self.title} ID token is signed with an unknown key.")
        return key

    def _find(self, kid: str | None) -> SigningKey | None:
        if kid is not None:
            return self._keys.get(kid)
        # No kid: only unambiguous when the provider has one signing key.
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    async def _fetch_keys(self) -> None:
        url = (await self.metadata())["jwks_uri"]
        found = await self._http.call(self.title, "GET", url, refused="JWKS refused.")
        keys: dict[str, SigningKey] = {}
        entries = found.get("keys") if isinstance(found, dict) else None
        for number, entry in enumerate(entries if isinstance(entries, list) else []):
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK.from_dict(entry)
            except (jwt.PyJWTError, TypeError, ValueError):
                continue  # a key type we cannot use
            alg = entry.get("alg")
            keys[str(entry.get("kid", f"#{number}"))] = SigningKey(
                key, alg if isinstance(alg, str) else None
            )
        self._keys, self._fetched = keys, True

    # --- the ID token ------------------------------------------------------------------------

    async def verify_id_token(self, token: str, *, nonce: str | None = None) -> dict[str, Any]:
        """The claims of a valid ID token for us (OpenID Connect Core §3.1.3.7)."""
        invalid = f"The {self.title} ID token is invalid."
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise refused(invalid) from exc
        algorithm = header.get("alg")
        if algorithm not in ID_TOKEN_ALGORITHMS:
            raise refused(invalid)
        kid = header.get("kid")
        key = await self._key(kid if isinstance(kid, str) else None)
        # The header's algorithm must fit the key (an ES256 header on an RSA key is forged).
        family = {"RS": "RSA", "PS": "RSA", "ES": "EC"}[algorithm[:2]]
        if key.jwk.key_type != family or key.alg not in (algorithm, None):
            raise refused(invalid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.jwk.key,
                algorithms=[algorithm],
                audience=self._client_id,
                issuer=self._issuers,
                leeway=LEEWAY,
                options={"require": ["iss", "aud", "exp", "iat", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise refused(f"The {self.title} ID token has expired.") from exc
        except jwt.InvalidAudienceError as exc:
            raise refused(f"The {self.title} ID token was issued to another application.") from exc
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            log.info("%s ID token refused: %s", self.title, exc)
            raise refused(invalid) from exc
        if not isinstance(claims["sub"], str) or not 0 < len(claims["sub"]) <= SUBJECT_MAX:
            raise refused(invalid)
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if claims.get("azp", self._client_id) != self._client_id or (
            len(audiences) > 1 and "azp" not in claims
        ):
            raise refused(f"The {self.title} ID token was issued to another application.")
        if nonce is not None and not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
            raise refused(f"The {self.title} ID token does not belong to this login.")
        return claims

    # --- flows ------------------------------------------------------------------------------

    async def authorization_url(
        self, *, redirect_uri: str, state: str, code_challenge: str, nonce: str
    ) -> str:
        endpoint = (await self.metadata())["authorization_endpoint"]
        return with_query(
            endpoint,
            {
                "response_type": "code", "client_id": self._client_id,
                "redirect_uri": redirect_uri, "scope": self._scopes, "state": state,
                "nonce": nonce, "code_challenge": code_challenge,
                "code_challenge_method": "S256",
            },
        )  # fmt: skip

    async def identify_id_token(self, token: str) -> ProviderIdentity:
        """An ID token the client obtained itself (Google Sign-In's ``credential``)."""
        claims = await self.verify_id_token(token)
        return self._identity(claims, {"access_token": token, "expires_in": claims.get("exp")})

    async def identify_code(
        self,
        code: str,
        *,
        redirect_uri: str | None,
        code_verifier: str | None = None,
        nonce: str | None = None,
    ) -> ProviderIdentity:
        metadata = await self.metadata()
        form = {"grant_type": "authorization_code", "code": code}
        if redirect_uri:
            form["redirect_uri"] = redirect_uri
        if code_verifier:
            form["code_verifier"] = code_verifier
        # The client authentication the provider takes; client_secret_basic is the default
        # when it lists none (OpenID Connect Discovery §3).
        methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        auth = None
        if "client_secret_basic" in methods:
            auth = httpx.BasicAuth(self._client_id, self._client_secret)
        else:
            form |= {"client_id": self._client_id, "client_secret": self._client_secret}
        invalid = f"The {self.title} code is invalid or has expired."
        tokens = await self._http.call(
            self.title, "POST", metadata["token_endpoint"], data=form, auth=auth, refused=invalid
        )
        if not isinstance(tokens, dict) or not isinstance(tokens.get("id_token"), str):
            raise refused(invalid)
        claims = await self.verify_id_token(tokens["id_token"], nonce=nonce)
        access_token = tokens.get("access_token")
        if "email" not in claims and isinstance(access_token, str):
            claims = await self._with_userinfo(metadata, claims, access_token)
        return self._identity(
            claims,
            {
                "access_token": access_token, "expires_in": tokens.get("expires_in"),
                "scope": tokens.get("scope"), "token_type": tokens.get("token_type"),
            },
            scope=text(tokens.get("scope")),
            token_type=text(tokens.get("token_type")),
        )  # fmt: skip

    async def _with_userinfo(
        self, metadata: dict[str, Any], claims: dict[str, Any], access_token: str
    ) -> dict[str, Any]:
        """The ID token's claims and the UserInfo endpoint's, whose ``sub`` must be the ID
        token's (OpenID Connect Core §5.3.4)."""
        endpoint = metadata.get("userinfo_endpoint")
        if not isinstance(endpoint, str):
            return claims
        info = await self._http.call(
            self.title, "GET", endpoint, headers={"Authorization": f"Bearer {access_token}"},
            refused=f"{self.title} did not accept its own access token.",
        )  # fmt: skip
        if not isinstance(info, dict) or info.get("sub") != claims["sub"]:
            raise refused(f"The {self.title} user information is for someone else.")
        return {**info, **claims}

    def _identity(
        self, claims: dict[str, Any], auth: dict[str, Any], **extra: str | None
    ) -> ProviderIdentity:
        verified = claims.get("email_verified")
        email = text(claims.get("email"))
        return ProviderIdentity(
            provider=self.name,
            subject=str(claims["sub"]),
            email=email,
            # Some providers send the string "true".
            email_verified=email is not None and (verified is True or verified == "true"),
            user_name=text(claims.get("name")),
            first_name=text(claims.get("given_name")),
            last_name=text(claims.get("family_name")),
            auth={"name": self.name, "sub": str(claims["sub"]), **auth},
            **extra,
        )


class Facebook:
    """Facebook Login: the client's user access token, checked with the Graph API."""

    name = "facebook"
    title = "Facebook"
    scope = "email,public_profile"

    def __init__(
        self, http: ProviderHttp, *, app_id: str, app_secret: str, graph_url: str,
        dialog_url: str,
    ) -> None:  # fmt: skip
        self._http = http
        self._app_id = app_id
        self._app_secret = app_secret
        self._graph_url = graph_url.rstrip("/")
        self._dialog_url = dialog_url

    async def authorization_url(
        self, *, redirect_uri: str, state: str, code_challenge: str, nonce: str
    ) -> str:
        return with_query(
            self._dialog_url,
            {
                "client_id": self._app_id, "redirect_uri": redirect_uri, "state": state,
                "response_type": "code", "scope": self.scope, "code_challenge": code_challenge,
                "code_challenge_method": "S256",
            },
        )  # fmt: skip

    async def identify_code(
        self,
        code: str,
        *,
        redirect_uri: str | None,
        code_verifier: str | None = None,
        nonce: str | None = None,
    ) -> ProviderIdentity:
        params = {
            "client_id": self._app_id, "client_secret": self._app_secret,
            "redirect_uri": redirect_uri or "", "code": code,
        }  # fmt: skip
        if code_verifier:
            params["code_verifier"] = code_verifier
        answer = await self._http.call(
            self.title, "GET", f"{self._graph_url}/oauth/access_token", params=params,
            refused="The Facebook code is invalid or has expired.",
        )  # fmt: skip
        if not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str):
            raise refused("The Facebook code is invalid or has expired.")
        return await self.identify_token(answer["access_token"], user_id=None)

    async def identify_token(
        self, access_token: str, *, user_id: str | None, extra: dict[str, Any] | None = None
    ) -> ProviderIdentity:
        """A user access token, as Facebook's JS SDK hands it to the client (004's
        ``accessToken`` with ``userID``): valid, for our app, for that user, not expired."""
        invalid = "The Facebook access token is invalid."
        debug = await self._http.call(
            self.title, "GET", f"{self._graph_url}/debug_token",
            params={"input_token": access_token,
                    "access_token": f"{self._app_id}|{self._app_secret}"},
            refused=invalid,
        )  # fmt: skip
        data = debug.get("data") if isinstance(debug, dict) else None
        if not isinstance(data, dict) or data.get("is_valid") is not True:
            raise refused(invalid)
        if str(data.get("app_id")) != self._app_id:
            raise refused("The Facebook access token was issued to another application.")
        subject = data.get("user_id")
        subject = str(subject) if isinstance(subject, str | int) else ""
        if (
            not subject
            or len(subject) > SUBJECT_MAX
            or (user_id is not None and subject != user_id)
        ):
            raise refused("The Facebook access token belongs to another user.")
        expires_at = data.get("expires_at")
        if isinstance(expires_at, int) and 0 < expires_at < time.time():
            raise refused("The Facebook access token has expired.")
        proof = hmac.new(self._app_secret.encode(), access_token.encode(), hashlib.sha256)
        me = await self._http.call(
            self.title, "GET", f"{self._graph_url}/me",
            params={"fields": "id,name,email,first_name,last_name", "access_token": access_token,
                    "appsecret_proof": proof.hexdigest()},
            refused=invalid,
        )  # fmt: skip
        if not isinstance(me, dict) or str(me.get("id")) != subject:
            raise refused("The Facebook access token belongs to another user.")
        email = text(me.get("email"))
        extra = extra or {}
        return ProviderIdentity(
            provider=self.name,
            subject=subject,
            email=email,
            # The Graph API does not say whether the email was confirmed: treat it as not.
            email_verified=False,
            user_name=text(me.get("name")),
            first_name=text(me.get("first_name")),
            last_name=text(me.get("last_name")),
            scope=extra.get("grantedScopes"),
            auth={
                "access_token": access_token, "name": self.name, "email": email,
                "user_name": text(me.get("name")), "expires_in": extra.get("expiresIn"),
                "data_access_expiration_time": extra.get("data_access_expiration_time"),
                "scope": extra.get("grantedScopes"),
            },
        )  # fmt: skip
