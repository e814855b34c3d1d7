"""What accounts' events say about a user: ids and names, never a secret, hash or token."""

from __future__ import annotations

from issuer.accounts.models import User


def user_event(user: User) -> dict[str, object]:
    return {"entity_id": user.entity_id.hex, "email": user.email, "username": user.username}
