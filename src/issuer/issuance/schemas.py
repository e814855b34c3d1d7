"""Request and response shapes of the issuance portal."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from issuer.schemas import NO_NUL, STRIPPED, UNICODE, Input, Refusal, one_line, visible_line

# One credential attribute as the holder types it: up to 200 characters on one line with
# something visible (no control characters reach the credential), used without its outer
# whitespace.
Attribute = Annotated[str, visible_line(200), UNICODE, STRIPPED]
AgentId = Annotated[str, one_line(128, min_length=1), UNICODE]
FILL_IN = Refusal("Please fill in every field.")


class NameFormBase(Input):
    """The holder's details: one field per configured attribute, plus the CSRF token."""

    model_config = ConfigDict(extra="ignore")

    csrf_token: Annotated[str, Field(max_length=100, pattern=r"^[A-Za-z0-9_-]*$")] = ""

    def attributes(self, names: list[str]) -> dict[str, str]:
        return {name: str(getattr(self, name)) for name in names}


def name_form(attribute_names: list[str]) -> type[NameFormBase]:
    """The form model for these attribute names (``ISSUER_CREDENTIAL_ATTRIBUTES``)."""
    fields: dict[str, Any] = {name: (Attribute, ...) for name in attribute_names}
    model = create_model("NameForm", __base__=NameFormBase, **fields)
    model.when_missing = dict.fromkeys(attribute_names, FILL_IN)
    model.when_invalid = dict.fromkeys(attribute_names, FILL_IN)
    return model


class WebhookEvent(Input):
    """The fields of ACA-Py's ``connections`` and ``issue_credential_v2_0`` events we read;
    the rest of the record is ignored."""

    state: Annotated[str, one_line(64)] | None = None
    rfc23_state: Annotated[str, one_line(64)] | None = None
    connection_id: AgentId | None = None
    invitation_msg_id: AgentId | None = None
    cred_ex_id: AgentId | None = None
    error_msg: Annotated[str, Field(max_length=2000, pattern=NO_NUL), UNICODE] | None = None


class SessionState(BaseModel):
    """A session snapshot, as pushed over the websocket; ``updated_at`` is ISO 8601 in UTC."""

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


class InvitationMessage(BaseModel):
    """The out-of-band invitation message the agent created (Aries RFC 0434 ``invitation``),
    exactly as the agent encoded it; other fields of the message are passed on too."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    message_type: str = Field(
        alias="@type", examples=["https://didcomm.org/out-of-band/1.1/invitation"]
    )
    message_id: str = Field(alias="@id")
    label: str | None = None
    handshake_protocols: list[str] | None = None
    services: list[dict[str, Any] | str] | None = None
