"""The issuance state machine.

``invited → connected → offered → accepted | declined | expired | failed``; ``expired`` and
``failed`` can also end a session before the offer. A transition is applied only from an allowed
predecessor, so webhooks that arrive twice or out of order never move a session backwards.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    INVITED = "invited"
    CONNECTED = "connected"
    OFFERED = "offered"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({State.ACCEPTED, State.DECLINED, State.EXPIRED, State.FAILED})
ACTIVE_STATES = frozenset({State.INVITED, State.CONNECTED, State.OFFERED})

# target → the states it may be entered from
ALLOWED_FROM: dict[State, frozenset[State]] = {
    State.INVITED: frozenset(),
    State.CONNECTED: frozenset({State.INVITED}),
    # An offer-sent webhook may overtake the connection's "active" one.
    State.OFFERED: frozenset({State.CONNECTED}),
    State.ACCEPTED: frozenset({State.OFFERED}),
    State.DECLINED: frozenset({State.OFFERED}),
    State.EXPIRED: ACTIVE_STATES,
    State.FAILED: ACTIVE_STATES,
}
