"""Request and response shapes of the issuance portal."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Text = Field(min_length=1, max_length=200)


class NameForm(BaseModel):
    """The holder's details; attribute names beyond these three come from configuration."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    prename: str = Text
    surname: str = Text
    institution: str = Text
    csrf_token: str | None = Field(default=None, max_length=100)


class SessionState(BaseModel):
    """A session snapshot, as pushed over the websocket."""

    id: str
    state: Literal["invited", "connected", "offered", "accepted", "declined", "expired", "failed"]
    version: int
    error: str | None = None
    updated_at: str | None = None


class ConnectionCheck(BaseModel):
    """The original ``/check_connection/`` answer."""

    status: Literal["connected", "not connected"]


class AcceptanceCheck(BaseModel):
    """The original ``/loading/`` answer."""

    status: Literal["accepted", "not accepted"]


class WebhookAck(BaseModel):
    ok: bool = True
