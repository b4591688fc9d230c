"""Domain errors raised by services; the API renders them as RFC 9457 problems, commands as one line."""

from typing import Any


class NucleusError(Exception):
    """A refusal with an HTTP status, a stable code and a sentence for people."""

    status = 400
    code = "bad_request"
    title = "Bad request"
    retry_after: int | None = None  # seconds, sent as Retry-After: for refusals that pass with time

    def __init__(
        self, detail: str, *, code: str | None = None, errors: list[dict] | None = None, **extra: Any
    ):
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.errors = errors
        self.extra = extra


class BadRequest(NucleusError):
    pass


class Forbidden(NucleusError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(NucleusError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(NucleusError):
    status, code, title = 409, "conflict", "Conflict"


class PreconditionFailed(NucleusError):
    status, code, title = 412, "precondition_failed", "Precondition failed"


class ContentTooLarge(NucleusError):
    status, code, title = 413, "content_too_large", "Content too large"


class ValidationFailed(NucleusError):
    status, code, title = 422, "validation_failed", "Validation failed"


class PreconditionRequired(NucleusError):
    status, code, title = 428, "if_match_required", "Precondition required"
