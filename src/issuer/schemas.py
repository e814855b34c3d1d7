"""What every feature's request and response schemas share: the base input model, text types
whose limits the OpenAPI document states, and how the originals' messages are told.

Strings never hold what PostgreSQL or a credential cannot (NUL, other control characters in
one-line fields, lone surrogates), and those limits are part of the JSON Schema (``pattern``)
wherever JSON Schema can say them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# One line of text: no control characters (C0: NUL, tab, newlines…; DEL; C1: NEL…).
ONE_LINE = r"^[^\x00-\x1f\x7f-\x9f]*$"
# One line with something visible in it: at least one character that is not whitespace as
# Python's str.isspace() has it (spelled out, as ECMA's \s and Python's differ).
VISIBLE_LINE = (
    r"^[^\x00-\x1f\x7f-\x9f]*"
    r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    r"[^\x00-\x1f\x7f-\x9f]*$"
)
# Free text (and secrets): anything but NUL, which PostgreSQL text cannot store.
NO_NUL = r"^[^\x00]*$"


def _encodable(value: str) -> str:
    """Refuse lone surrogates (valid JSON escapes, but not Unicode text)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("Text must be valid Unicode.") from None
    return value


# Annotated metadata: ``Annotated[str, one_line(150, min_length=1), UNICODE]``.
UNICODE = AfterValidator(_encodable)


def one_line(max_length: int, *, min_length: int = 0, **kwargs: Any) -> Any:
    """Field limits of a one-line string of ``min_length``..``max_length`` characters."""
    return Field(min_length=min_length, max_length=max_length, pattern=ONE_LINE, **kwargs)


def visible_line(max_length: int, **kwargs: Any) -> Any:
    """Field limits of a one-line string with something visible in it, up to ``max_length``
    characters; pair it with ``STRIPPED`` (the value is used without its outer whitespace)."""
    return Field(min_length=1, max_length=max_length, pattern=VISIBLE_LINE, **kwargs)


STRIPPED = AfterValidator(str.strip)


def free_text(max_length: int, *, min_length: int = 0, **kwargs: Any) -> Any:
    """Field limits of a free-text string (line breaks allowed)."""
    return Field(min_length=min_length, max_length=max_length, pattern=NO_NUL, **kwargs)


@dataclass(frozen=True, slots=True)
class Refusal:
    """How a field's failure is told to the originals' clients (CONTRACTS.md)."""

    message: str
    status: int = 422
    code: str = "validation_error"


def one_of_required(*fields: str) -> dict[str, Any]:
    """JSON Schema for "at least one of ``fields``, as a string" (a model validator enforces
    it; this tells the OpenAPI document)."""
    return {
        "anyOf": [{"required": [name], "properties": {name: {"type": "string"}}} for name in fields]
    }


class Input(BaseModel):
    """Base of request bodies. Unknown fields are ignored (old clients send extra ones).

    ``when_missing`` maps a field name (or a model-level error type) to the refusal told when
    that field is missing or empty; ``when_invalid`` when it is present but wrong (keys
    ``"field"`` or ``"field:pydantic_error_type"``). The first failing field with an entry
    decides the answer; otherwise it is the generic 422.
    """

    model_config = ConfigDict(extra="ignore")

    when_missing: ClassVar[Mapping[str, Refusal]] = {}
    when_invalid: ClassVar[Mapping[str, Refusal]] = {}


class Message(BaseModel):
    """``{"success": true, "message": …}``, the originals' plain answer."""

    success: bool = True
    message: str


class ErrorBody(BaseModel):
    """The one error shape: ``error`` is a stable code, ``message`` human text, ``details`` a
    list of ``{"loc": [...], "msg": ...}`` (only when there are any)."""

    success: bool = False
    error: str
    message: str
    details: list[dict[str, Any]] | None = None
