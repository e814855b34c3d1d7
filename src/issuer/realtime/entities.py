"""Entity events (004's Pusher channels, named after the entity that changed): which outbox
events are entity events, on which channel they go, and what the event says.

A user's events go on ``private-<entity>-<user entity_id>`` (e.g.
``private-person-3f2c…``), never on a public channel; the event name is the action
(``create``, ``update``, ``delete``). The event's data::

    {"id": <the user's event number>, "entity": "person", "action": "update",
     "type": "password.changed", "occurred_at": "<ISO 8601>", "data": {...}}

``data`` is what the outbox event holds: ids and names, never a secret, hash or token.
"""

from __future__ import annotations

import re
from typing import Any

from issuer.outbox.models import OutboxMessage

# outbox topic -> (entity, action)
ENTITY_EVENTS: dict[str, tuple[str, str]] = {
    "user.created": ("person", "create"),
    "user.verified": ("person", "update"),
    "user.updated": ("person", "update"),
    "password.changed": ("person", "update"),
    "login_method.created": ("login_method", "create"),
    "login_method.deleted": ("login_method", "delete"),
    "otp_method.enabled": ("otp_method", "create"),
    "otp_method.disabled": ("otp_method", "delete"),
    "recovery_code.regenerated": ("recovery_code", "create"),
    "recovery_code.used": ("recovery_code", "update"),
    "passkey.created": ("passkey", "create"),
    "passkey.deleted": ("passkey", "delete"),
    "session.opened": ("session", "create"),
    "session.ended": ("session", "delete"),
    "user.picture_changed": ("person", "update"),
    "post.created": ("post", "create"),
    "post.updated": ("post", "update"),
    "post.deleted": ("post", "delete"),
}
ENTITIES = frozenset(entity for entity, _ in ENTITY_EVENTS.values())
# private-<entity>-<32 hex>: one user's channel of one entity.
USER_CHANNEL = re.compile(r"^private-(?P<entity>[a-z_]+)-(?P<user>[0-9a-f]{32})$")


def user_channel(entity: str, user_entity_id: str) -> str:
    return f"private-{entity}-{user_entity_id}"


def owner_of(channel: str) -> tuple[str, str] | None:
    """``(entity, user entity_id)`` of a user's entity channel; ``None`` for any other."""
    found = USER_CHANNEL.fullmatch(channel)
    if found is None or found["entity"] not in ENTITIES:
        return None
    return found["entity"], found["user"]


def as_pusher_event(message: OutboxMessage) -> tuple[str, str, dict[str, Any]] | None:
    """``(channel, event name, data)`` of an outbox row that is an entity event."""
    known = ENTITY_EVENTS.get(message.topic)
    data = message.payload.get("data", {})
    owner = data.get("entity_id") if isinstance(data, dict) else None
    if known is None or message.seq is None or not isinstance(owner, str):
        return None
    entity, action = known
    body = {
        "id": message.seq, "entity": entity, "action": action, "type": message.topic,
        "occurred_at": message.created_at.isoformat(), "data": data,
    }  # fmt: skip
    return user_channel(entity, owner), action, body
