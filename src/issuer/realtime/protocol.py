"""The Pusher Channels protocol, version 7: names, signatures, close codes.

Sources (pusher.com/docs/channels/library_auth_reference/): "Pusher Channels Protocol"
(pusher-websockets-protocol), "Authorizing users" (auth-signatures), and the HTTP API reference
(rest-api, "Generating authentication signatures").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from issuer.errors import Unauthenticated

PROTOCOL = 7
# Channel names: up to 200 of these characters (the protocol's "Channel naming conventions").
CHANNEL_NAME = re.compile(r"^[A-Za-z0-9_\-=@,.;]{1,200}$")
SOCKET_ID = re.compile(r"^\d{1,20}\.\d{1,20}$")
# Requests signed longer ago than this are refused (the HTTP API's replay window).
MAX_CLOCK_SKEW = 600

# Close codes (4000–4099: do not reconnect; 4100–4199: reconnect after a while; 4200–4299:
# reconnect at once).
APP_DOES_NOT_EXIST = 4001
UNSUPPORTED_PROTOCOL = 4007
UNAUTHORIZED = 4009
OVER_CAPACITY = 4100
PONG_NOT_RECEIVED = 4201
CLIENT_EVENT_REJECTED = 4301


def frame(event: str, data: Any, channel: str | None = None, **extra: Any) -> str:
    """One protocol message. ``data`` goes as a JSON-encoded string, as the protocol has it."""
    message: dict[str, Any] = {"event": event}
    if channel is not None:
        message["channel"] = channel
    message["data"] = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    message.update(extra)
    return json.dumps(message, separators=(",", ":"))


def kind_of(channel: str) -> str:
    """``public``, ``private``, ``presence`` or ``encrypted`` (not supported)."""
    if channel.startswith("private-encrypted-"):
        return "encrypted"
    if channel.startswith("private-"):
        return "private"
    if channel.startswith("presence-"):
        return "presence"
    return "public"


@dataclass(frozen=True, slots=True)
class PusherApp:
    """The app's id, key and secret; every signature is HMAC-SHA256 with the secret."""

    app_id: str
    key: str
    secret: str

    def _hmac(self, text: str) -> str:
        return hmac.new(self.secret.encode(), text.encode(), hashlib.sha256).hexdigest()

    def channel_auth(self, socket_id: str, channel: str, channel_data: str | None = None) -> str:
        """``<key>:<signature>`` of ``socket_id:channel[:channel_data]`` (what
        ``POST /pusher/auth`` answers and ``pusher:subscribe`` carries)."""
        text = f"{socket_id}:{channel}" + (f":{channel_data}" if channel_data is not None else "")
        return f"{self.key}:{self._hmac(text)}"

    def auth_valid(
        self, socket_id: str, channel: str, auth: str, channel_data: str | None = None
    ) -> bool:
        return hmac.compare_digest(
            self.channel_auth(socket_id, channel, channel_data).encode(), auth.encode()
        )

    def check_request(
        self, method: str, path: str, query: dict[str, str], body: bytes, now: float
    ) -> None:
        """A signed HTTP API request: ``auth_key`` ours, ``auth_version`` 1.0,
        ``auth_timestamp`` within 600 s, ``body_md5`` the body's, ``auth_signature`` the
        HMAC-SHA256 of ``METHOD\\npath\\nsorted query``. Refused with 401 otherwise."""
        params = {k.lower(): v for k, v in query.items()}
        signature = params.pop("auth_signature", "")
        if params.get("auth_key") != self.key or params.get("auth_version") != "1.0":
            raise Unauthenticated("Unknown auth_key or auth_version.", code="invalid_signature")
        try:
            raw = params.get("auth_timestamp", "")
            timestamp = int(raw) if len(raw) <= 12 else -1  # no overflow from a huge number
        except ValueError as exc:
            raise Unauthenticated("auth_timestamp is missing.", code="invalid_signature") from exc
        if abs(now - timestamp) > MAX_CLOCK_SKEW:
            raise Unauthenticated(
                "Timestamp expired: given timestamp is more than 600 seconds from the server's "
                "time.",
                code="timestamp_expired",
            )
        if body and not hmac.compare_digest(
            params.get("body_md5", "").encode(),
            hashlib.md5(body, usedforsecurity=False).hexdigest().encode(),
        ):
            raise Unauthenticated("body_md5 does not match the body.", code="invalid_signature")
        signed = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
        expected = self._hmac(f"{method.upper()}\n{path}\n{signed}")
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise Unauthenticated("Invalid signature.", code="invalid_signature")
