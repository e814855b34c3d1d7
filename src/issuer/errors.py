"""Domain errors: what went wrong, in the words of the use case, never in HTTP terms.

Services raise these; the web layer (``issuer.web.errors``) is the one place that maps each kind
to a status code and the one JSON error shape. ``code`` is a stable machine-readable id,
``message`` human text (the originals' text where CONTRACTS.md lists one), ``details`` a list of
``{"loc", "msg"}`` entries.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """Base of every refusal a caller should see. Subclasses name the kind of failure."""

    default_code: ClassVar[str] = "error"
    default_message: ClassVar[str] = "The request could not be completed."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: list[dict[str, Any]] | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.message: str = message or self.default_message
        self.code: str = code or self.default_code
        self.details = details
        self.retry_after = retry_after
        super().__init__(self.message)


class InvalidInput(DomainError):
    """The input is well-formed but not acceptable (a weak password, an unknown attribute)."""

    default_code = "validation_error"
    default_message = "The request is not valid."


class Refused(DomainError):
    """The request cannot be carried out as asked (004's "bad request" answers)."""

    default_code = "bad_request"


class Unauthenticated(DomainError):
    """No valid credential: missing, malformed, expired or revoked."""

    default_code = "unauthorized"
    default_message = "Authentication is required."


class Forbidden(DomainError):
    """The caller is known but may not do this (someone else's object, a failed CSRF check)."""

    default_code = "forbidden"
    default_message = "You may not do this."


class NotFound(DomainError):
    default_code = "not_found"
    default_message = "Not found."


class Conflict(DomainError):
    """The object is not in a state that allows this (already taken, not yet connected)."""

    default_code = "conflict"


class PreconditionFailed(DomainError):
    """A conditional request's precondition (``If-Match``) no longer holds."""

    default_code = "precondition_failed"


class PreconditionRequired(DomainError):
    """A write that must be conditional (``If-Match``) came without its condition (RFC 6585)."""

    default_code = "precondition_required"


class Unavailable(DomainError):
    """A dependency (database, agent, provider) is down or overloaded: try again later."""

    default_code = "unavailable"
    default_message = "The service is unavailable right now; please try again."

    def __init__(self, message: str | None = None, *, retry_after: int = 2, **kw: Any) -> None:
        super().__init__(message, retry_after=retry_after, **kw)
