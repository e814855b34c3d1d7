"""Local stand-ins for the identity providers, served on loopback by one Quart app
(:class:`tests.support.servers.InProcessServer`), so the app talks real HTTP to them:

- GitHub at ``/github`` (OAuth: ``/login/oauth/authorize``, ``/login/oauth/access_token``)
  and ``/github-api`` (``/user``, ``/user/emails``);
- Facebook's Graph API at ``/facebook`` (``/debug_token``, ``/me``, ``/oauth/access_token``);
- OpenID Connect providers at ``/oidc/<name>``: discovery, JWKS, ``/authorize``, ``/token``,
  ``/userinfo``. Each signs ID tokens with an RSA key it generates (``rotate()`` adds a new
  one); :meth:`OpenIdStub.id_token` mints any token a test needs (another audience, expired,
  signed by a stranger).

The stubs check what the real providers check (client credentials, PKCE, single-use codes,
``appsecret_proof``) and record what they were sent. ``hold()`` makes every answer wait until
``release()``: the app's timeout, not a sleep, ends such a request.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from quart import Quart, Response, redirect, request

from issuer.issuance.agents.local import free_port
from tests.support.servers import InProcessServer

CLIENT_ID = "issuer-client"
CLIENT_SECRET = "issuer-client-secret"
FACEBOOK_APP_ID = "1234567890"
FACEBOOK_APP_SECRET = "facebook-app-secret"


def s256(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


def refusal(status: int, **body: Any) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


@dataclass
class GitHubUser:
    id: int
    login: str
    name: str | None = None
    emails: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FacebookUser:
    id: str
    name: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None


@dataclass
class Grant:
    """An authorization code: whose it is, and what the token request must match."""

    subject: Any
    redirect_uri: str | None = None
    code_challenge: str | None = None
    nonce: str | None = None


class OpenIdStub:
    def __init__(self, name: str, base: str, *, auth_methods: list[str] | None) -> None:
        self.name = name
        self.issuer = f"{base}/oidc/{name}"
        self.auth_methods = auth_methods
        self.keys: list[tuple[str, rsa.RSAPrivateKey]] = []
        self.rotate()
        self.codes: dict[str, Grant] = {}
        self.access_tokens: dict[str, dict[str, Any]] = {}
        self.authorize_as: dict[str, Any] = {}
        self.userinfo_extra: dict[str, Any] = {}
        self.include_email_in_id_token = True
        self.discovery_override: Any = None
        self.jwks_override: Any = None

    def rotate(self) -> str:
        """Start signing with a new key (kid); the old ones stay published."""
        kid = f"key-{len(self.keys) + 1}"
        self.keys.append((kid, rsa.generate_private_key(public_exponent=65537, key_size=2048)))
        return kid

    def claims(self, sub: str, **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.issuer, "aud": CLIENT_ID, "sub": sub, "iat": now, "exp": now + 600,
            "email": f"{sub}@example.test", "email_verified": True, "name": f"{sub.title()} User",
            "given_name": sub.title(), "family_name": "User", **extra,
        }  # fmt: skip

    def id_token(
        self, sub: str = "ada", *, key: Any = None, kid: str | None = None,
        algorithm: str = "RS256", drop: tuple[str, ...] = (), **claims: Any,
    ) -> str:  # fmt: skip
        """An ID token for ``sub`` (``claims`` override the defaults), signed with the newest
        key unless ``key``/``kid`` say otherwise."""
        newest_kid, newest = self.keys[-1]
        body = {k: v for k, v in self.claims(sub, **claims).items() if k not in drop}
        headers = {"kid": kid or newest_kid} if kid != "" else {}
        return jwt.encode(body, key or newest, algorithm=algorithm, headers=headers)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, private in self.keys:
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def discovery(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }
        if self.auth_methods is not None:
            document["token_endpoint_auth_methods_supported"] = self.auth_methods
        return document

    def grant(self, sub: str, **grant: Any) -> str:
        """A code the token endpoint will exchange for ``sub``'s tokens."""
        code = secrets.token_urlsafe(12)
        extra = {k: v for k, v in self.authorize_as.items() if k != "sub"}
        self.codes[code] = Grant(subject=self.claims(sub, **extra), **grant)
        return code


class ProviderStubs:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.app = Quart("identity_providers")
        self.counts: Counter[str] = Counter()
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._released = asyncio.Event()
        self._released.set()
        # GitHub
        self.github_codes: dict[str, Grant] = {}
        self.github_tokens: dict[str, GitHubUser] = {}
        self.github_authorize_as: GitHubUser | None = None
        # Facebook: access token → (debug_token data, user)
        self.facebook_tokens: dict[str, tuple[dict[str, Any], FacebookUser]] = {}
        self.facebook_codes: dict[str, str] = {}
        # OpenID Connect
        self.oidc = {
            "google": OpenIdStub(
                "google", self.base, auth_methods=["client_secret_post", "client_secret_basic"]
            ),
            "linkedin": OpenIdStub("linkedin", self.base, auth_methods=["client_secret_post"]),
            "corp": OpenIdStub("corp", self.base, auth_methods=None),
        }  # fmt: skip
        self._routes()

    def reset(self) -> None:
        """Forget every code, token and request (the keys stay)."""
        self.release()
        self.counts.clear()
        self.requests.clear()
        self.github_codes.clear()
        self.github_tokens.clear()
        self.github_authorize_as = None
        self.facebook_tokens.clear()
        self.facebook_codes.clear()
        for stub in self.oidc.values():
            stub.codes.clear()
            stub.access_tokens.clear()
            stub.authorize_as = {}
            stub.userinfo_extra = {}
            stub.include_email_in_id_token = True
            stub.discovery_override = stub.jwks_override = None

    def settings(self) -> dict[str, Any]:
        """The app settings that point every provider here."""
        return {
            "github_client_id": CLIENT_ID, "github_client_secret": CLIENT_SECRET,
            "github_oauth_url": f"{self.base}/github", "github_api_url": f"{self.base}/github-api",
            "google_client_id": CLIENT_ID, "google_client_secret": CLIENT_SECRET,
            "google_issuer": self.oidc["google"].issuer,
            "linkedin_client_id": CLIENT_ID, "linkedin_client_secret": CLIENT_SECRET,
            "linkedin_issuer": self.oidc["linkedin"].issuer,
            "facebook_app_id": FACEBOOK_APP_ID, "facebook_app_secret": FACEBOOK_APP_SECRET,
            "facebook_graph_url": f"{self.base}/facebook",
            "facebook_dialog_url": f"{self.base}/facebook/dialog/oauth",
            "oidc_providers": [{
                "name": "corp", "title": "Corp SSO", "issuer": self.oidc["corp"].issuer,
                "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            }],
            "social_timeout": 1.0,
        }  # fmt: skip

    def hold(self) -> None:
        """Every answer waits until :meth:`release` (a provider that hangs)."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    # --- GitHub -----------------------------------------------------------------------------

    def github_code(self, user: GitHubUser, **grant: Any) -> str:
        code = secrets.token_hex(10)
        self.github_codes[code] = Grant(subject=user, **grant)
        return code

    # --- Facebook ---------------------------------------------------------------------------

    def facebook_token(
        self, user: FacebookUser, *, app_id: str = FACEBOOK_APP_ID, valid: bool = True,
        expires_at: int | None = None,
    ) -> str:  # fmt: skip
        token = "EAA" + secrets.token_urlsafe(24)
        data = {
            "app_id": app_id, "type": "USER", "application": "issuer", "is_valid": valid,
            "user_id": user.id, "scopes": ["email", "public_profile"],
            "expires_at": expires_at if expires_at is not None else int(time.time()) + 3600,
        }  # fmt: skip
        self.facebook_tokens[token] = (data, user)
        return token

    # --- the app ----------------------------------------------------------------------------

    def _routes(self) -> None:
        app = self.app

        @app.before_request
        async def record() -> None:
            form = dict(await request.form) if request.method == "POST" else {}
            self.requests.append((request.path, {**request.args, **form}))
            self.counts[request.path] += 1
            await self._released.wait()

        # GitHub ------------------------------------------------------------------------------
        @app.get("/github/login/oauth/authorize")
        async def github_authorize() -> Any:
            args = request.args
            if args.get("client_id") != CLIENT_ID or self.github_authorize_as is None:
                return refusal(400, error="unknown client")
            code = self.github_code(
                self.github_authorize_as, redirect_uri=args.get("redirect_uri"),
                code_challenge=args.get("code_challenge"),
            )  # fmt: skip
            query = urlencode({"code": code, "state": args.get("state", "")})
            return redirect(f"{args['redirect_uri']}?{query}")

        @app.post("/github/login/oauth/access_token")
        async def github_token() -> Any:
            form = await request.form
            if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
                return {"error": "incorrect_client_credentials"}
            grant = self.github_codes.pop(form.get("code", ""), None)
            # GitHub answers a bad code with 200 and an error field.
            if grant is None:
                return {
                    "error": "bad_verification_code",
                    "error_description": "The code passed is incorrect or expired.",
                }
            if grant.code_challenge and s256(form.get("code_verifier", "")) != grant.code_challenge:
                return {"error": "invalid_grant", "error_description": "PKCE verification failed"}
            if grant.redirect_uri and form.get("redirect_uri") != grant.redirect_uri:
                return {"error": "redirect_uri_mismatch"}
            token = "gho_" + secrets.token_hex(16)
            self.github_tokens[token] = grant.subject
            return {"access_token": token, "scope": "read:user,user:email", "token_type": "bearer"}

        def github_user() -> GitHubUser | None:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            return self.github_tokens.get(token) if scheme.lower() == "bearer" else None

        @app.get("/github-api/user")
        async def github_profile() -> Any:
            user = github_user()
            if user is None:
                return refusal(401, message="Bad credentials")
            return {"id": user.id, "login": user.login, "name": user.name}

        @app.get("/github-api/user/emails")
        async def github_emails() -> Any:
            user = github_user()
            if user is None:
                return refusal(401, message="Bad credentials")
            return Response(json.dumps(user.emails), content_type="application/json")

        # Facebook ----------------------------------------------------------------------------
        @app.get("/facebook/debug_token")
        async def facebook_debug() -> Any:
            if request.args.get("access_token") != f"{FACEBOOK_APP_ID}|{FACEBOOK_APP_SECRET}":
                return refusal(400, error={"message": "Invalid OAuth access token", "code": 190})
            found = self.facebook_tokens.get(request.args.get("input_token", ""))
            if found is None:
                return {
                    "data": {
                        "is_valid": False,
                        "error": {"code": 190, "message": "Malformed access token"},
                    }
                }
            return {"data": found[0]}

        @app.get("/facebook/me")
        async def facebook_me() -> Any:
            token = request.args.get("access_token", "")
            found = self.facebook_tokens.get(token)
            proof = hmac.new(
                FACEBOOK_APP_SECRET.encode(), token.encode(), hashlib.sha256
            ).hexdigest()
            if found is None or not found[0]["is_valid"]:
                return refusal(400, error={"message": "Invalid OAuth access token", "code": 190})
            if request.args.get("appsecret_proof") != proof:
                return refusal(400, error={"message": "Invalid appsecret_proof", "code": 100})
            user = found[1]
            me = {
                "id": user.id,
                "name": user.name,
                "first_name": user.first_name,
                "last_name": user.last_name,
            }
            if user.email:
                me["email"] = user.email
            return me

        @app.get("/facebook/oauth/access_token")
        async def facebook_code() -> Any:
            token = self.facebook_codes.pop(request.args.get("code", ""), None)
            if token is None or request.args.get("client_secret") != FACEBOOK_APP_SECRET:
                return refusal(400, error={"message": "Invalid verification code", "code": 100})
            return {"access_token": token, "token_type": "bearer", "expires_in": 5183944}

        # OpenID Connect ----------------------------------------------------------------------
        def provider(name: str) -> OpenIdStub:
            return self.oidc[name]

        def answer(document: Any) -> Response:
            return Response(json.dumps(document), content_type="application/json")

        @app.get("/oidc/<name>/.well-known/openid-configuration")
        async def discovery(name: str) -> Any:
            stub = provider(name)
            return answer(stub.discovery_override or stub.discovery())

        @app.get("/oidc/<name>/jwks")
        async def jwks(name: str) -> Any:
            stub = provider(name)
            return answer(stub.jwks_override or stub.jwks())

        @app.get("/oidc/<name>/authorize")
        async def authorize(name: str) -> Any:
            stub, args = provider(name), request.args
            if args.get("client_id") != CLIENT_ID or args.get("response_type") != "code":
                return refusal(400, error="invalid_request")
            sub = stub.authorize_as.get("sub", "ada")
            code = stub.grant(
                sub, redirect_uri=args.get("redirect_uri"),
                code_challenge=args.get("code_challenge"), nonce=args.get("nonce"),
            )  # fmt: skip
            query = urlencode({"code": code, "state": args.get("state", ""), "iss": stub.issuer})
            return redirect(f"{args['redirect_uri']}?{query}")

        @app.post("/oidc/<name>/token")
        async def token(name: str) -> Any:
            stub, form = provider(name), await request.form
            methods = stub.auth_methods or ["client_secret_basic"]
            basic = request.authorization
            if "client_secret_basic" in methods and basic is not None:
                client = (basic.username, basic.password)
            elif "client_secret_post" in methods:
                client = (form.get("client_id"), form.get("client_secret"))
            else:
                client = (None, None)
            if client != (CLIENT_ID, CLIENT_SECRET):
                return refusal(401, error="invalid_client")
            grant = stub.codes.pop(form.get("code", ""), None)
            if grant is None or form.get("grant_type") != "authorization_code":
                return refusal(400, error="invalid_grant")
            if grant.code_challenge and s256(form.get("code_verifier", "")) != grant.code_challenge:
                return refusal(400, error="invalid_grant", error_description="PKCE")
            if grant.redirect_uri and form.get("redirect_uri") != grant.redirect_uri:
                return refusal(400, error="invalid_grant", error_description="redirect_uri")
            claims = dict(grant.subject)
            if grant.nonce:
                claims["nonce"] = grant.nonce
            access = secrets.token_urlsafe(16)
            stub.access_tokens[access] = {**claims, **stub.userinfo_extra}
            drop = () if stub.include_email_in_id_token else ("email", "email_verified")
            sub = claims.pop("sub")
            id_token = stub.id_token(sub, drop=drop, **claims)
            return {
                "access_token": access, "token_type": "Bearer", "expires_in": 3600,
                "scope": "openid email profile", "id_token": id_token,
            }  # fmt: skip

        @app.get("/oidc/<name>/userinfo")
        async def userinfo(name: str) -> Any:
            _, _, token = request.headers.get("Authorization", "").partition(" ")
            claims = provider(name).access_tokens.get(token)
            if claims is None:
                return refusal(401, error="invalid_token")
            keep = ("sub", "email", "email_verified", "name", "given_name", "family_name")
            return {k: v for k, v in claims.items() if k in keep}


@asynccontextmanager
async def serving(stubs: ProviderStubs) -> AsyncIterator[ProviderStubs]:
    server = InProcessServer(stubs.app, stubs.port)
    await server.start()
    try:
        yield stubs
    finally:
        stubs.release()
        await server.stop()
