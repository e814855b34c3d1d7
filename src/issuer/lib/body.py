"""Reading request bodies into models: JSON for API clients, form fields for HTML forms."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from quart import request

from issuer.errors import APIError

M = TypeVar("M", bound=BaseModel)
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def is_form() -> bool:
    return request.mimetype in FORM_TYPES


async def json_body() -> Any:
    """The parsed JSON body, or ``None`` when there is none or it is not JSON. Invalid UTF-8 and
    nesting deeper than the parser allows count as not JSON (Quart lets those escape)."""
    try:
        return await request.get_json(silent=True)
    except (ValueError, RecursionError):
        return None


def _contains_nul(data: Any) -> bool:
    """Whether any key or string holds U+0000, which PostgreSQL text cannot store."""
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


async def read_body(model: type[M]) -> M:
    """A JSON object (or form post) validated as ``model``.

    400 ``"Please use 'application/json'"`` (004's text) for a missing, empty, non-JSON or
    non-object body; 422 with per-field ``details`` when a field is wrong.
    """
    data: Any
    if is_form():
        data = (await request.form).to_dict()
    else:
        data = await json_body()
        if not isinstance(data, dict) or not data:
            raise APIError(400, "bad_request", "Please use 'application/json'")
    if _contains_nul(data):
        details = [{"loc": [], "msg": "Text must not contain NUL characters."}]
        raise APIError(422, "validation_error", "The request is not valid.", details=details)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise APIError(
            422, "validation_error", "The request is not valid.", details=details
        ) from exc
