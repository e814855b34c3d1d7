"""The app class: Quart with our request class, the ``public_id`` and ``provider`` URL
converters, and a malformed ``Host`` answered 400.

werkzeug refuses a ``Host`` it cannot IDNA-encode (an empty label as in ``a..b``, a label over
63 characters) while Quart builds the request context, outside its error handling
(``quart/ctx.py``: ``create_url_adapter`` is called without a ``try``), so the client got an
empty 500 and the log a traceback. Here that refusal becomes the request's routing error, so
it reaches the error handlers (and the response hooks) like any 400, on HTTP and websockets.
"""

from __future__ import annotations

from typing import Any, NoReturn

from quart import Quart, g
from quart.sessions import SecureCookieSession, SecureCookieSessionInterface
from quart.wrappers import BaseRequestWebsocket, Response
from quart_auth import QuartAuth
from werkzeug.exceptions import BadHost, BadRequest, HTTPException
from werkzeug.routing import BaseConverter

from issuer.web.bodies import IssuerRequest

BAD_HOST = "The Host header is not a valid host name."


class RefusingAdapter:
    """Stands in for the URL adapter of a request whose ``Host`` could not be bound: matching
    it raises the 400, which Quart keeps as the request's routing exception."""

    def __init__(self, error: HTTPException) -> None:
        self.error = error

    def match(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise self.error

    allowed_methods = build = match


class PublicIdConverter(BaseConverter):
    """``<public_id:name>``: an entity's public id, a UUID as 32 lower-case hex digits. A path
    that is not one does not match, so ``/passkeys/options`` is never a passkey's URL."""

    regex = "[0-9a-f]{32}"


class ProviderConverter(BaseConverter):
    """``<provider:name>``: an identity provider's name (``issuer.config.PROVIDER_NAME``), at
    most 31 characters, so a login method's 32-hex id is never read as one, and never
    ``passkey`` (``/login/passkey`` is the passwordless login)."""

    regex = "(?!passkey(?![a-z0-9_-]))[a-z][a-z0-9_-]{0,30}"


class RowIdConverter(BaseConverter):
    """``<row_id:name>``: a row's integer id (a post's), up to 9 digits so it always fits the
    database's 32-bit integers; anything else does not match (404)."""

    regex = "[0-9]{1,9}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: object) -> str:
        return str(value)


class CookieSessions(SecureCookieSessionInterface):
    """Quart's signed-cookie sessions, without their cost on requests that carry no session
    cookie (most API calls): Quart builds an itsdangerous serializer on every request before it
    looks for the cookie; here it is built once per secret key, and only when a cookie is read
    or written."""

    def __init__(self) -> None:
        self._serializers: dict[tuple[Any, ...], Any] = {}

    def get_signing_serializer(self, app: Quart) -> Any:
        key = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        found = self._serializers.get(key)
        if found is None:
            found = self._serializers[key] = super().get_signing_serializer(app)
        return found

    async def open_session(
        self, app: Quart, request: BaseRequestWebsocket
    ) -> SecureCookieSession | None:
        if app.secret_key and self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return await super().open_session(app, request)


class LazyQuartAuth(QuartAuth):
    """quart-auth, whose response hook reads the auth cookie on every request to learn whether
    a login or logout happened; a request that never looked at the user did neither."""

    async def after_request(self, response: Response) -> Response:
        if not hasattr(g, self.attribute_name):
            return response
        return await super().after_request(response)


class IssuerApp(Quart):
    request_class = IssuerRequest
    session_interface = CookieSessions()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.url_map.converters["public_id"] = PublicIdConverter
        self.url_map.converters["provider"] = ProviderConverter
        self.url_map.converters["row_id"] = RowIdConverter

    def create_url_adapter(self, request: Any) -> Any:
        try:
            return super().create_url_adapter(request)
        except BadRequest:  # BadHost (IDNA)
            if request is None:
                raise
            return RefusingAdapter(BadHost(BAD_HOST))
