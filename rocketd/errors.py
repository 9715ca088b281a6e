"""The one exception hierarchy of rocketd.

Every failure a client can cause is an `ApiError` with a wire `code`, an HTTP `status`, a human
`message` naming what is wrong, and optional structured `details`. The HTTP error middleware is
the only place that turns these into responses; engine code never builds error bodies itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ErrorDetail:
    """One entry of `error.details`: always a message, optionally the field and rule at fault."""

    message: str
    field: str = ""
    rule: str = ""

    def to_json(self) -> dict[str, str]:
        out = {"message": self.message}
        if self.field:
            out["field"] = self.field
        if self.rule:
            out["rule"] = self.rule
        return out


@dataclass(frozen=True)
class ApiWarning:
    """One entry of a success response's `meta.warnings`: the request did what it was asked, but
    something deserves the caller's attention (items skipped, a change made differently)."""

    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class ApiError(Exception):
    """A failure with a contract error code; rendered as `{"error": {code, message, details}}`."""

    code = "INTERNAL_ERROR"
    status = 500
    default_message = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        details: list[ErrorDetail] | None = None,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message if message is not None else self.default_message
        self.details = details or []
        if status is not None:
            self.status = status
        self.headers = headers or {}
        super().__init__(self.message)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = [d.to_json() for d in self.details]
        return {"error": body}


class InvalidPayload(ApiError):
    code = "INVALID_PAYLOAD"
    status = 400
    default_message = "Invalid request body"


class UnknownField(ApiError):
    code = "UNKNOWN_FIELD"
    status = 400
    default_message = "Unknown field"


class Unauthorized(ApiError):
    code = "UNAUTHORIZED"
    status = 401
    default_message = "Unauthorized"


class Forbidden(ApiError):
    code = "FORBIDDEN"
    status = 403
    default_message = "Forbidden"


class NotFound(ApiError):
    code = "NOT_FOUND"
    status = 404
    default_message = "Not found"


class UnknownEntity(ApiError):
    code = "UNKNOWN_ENTITY"
    status = 404
    default_message = "Unknown entity"


class AppNotFound(ApiError):
    code = "APP_NOT_FOUND"
    status = 404
    default_message = "App not found"


class MethodNotAllowed(ApiError):
    code = "METHOD_NOT_ALLOWED"
    status = 405
    default_message = "Method not allowed"


class Conflict(ApiError):
    code = "CONFLICT"
    status = 409
    default_message = "Conflict"


class PayloadTooLarge(ApiError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413
    default_message = "Request body too large"


class FileTooLarge(ApiError):
    code = "FILE_TOO_LARGE"
    status = 413
    default_message = "File too large"


class UnsupportedMediaType(ApiError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    status = 415
    default_message = "Unsupported media type"


# The three below are answered by the HTTP server itself (rocketd.http.server): aiohttp refuses
# the request while parsing it, before any middleware or route runs.


class BadRequest(ApiError):
    code = "BAD_REQUEST"
    status = 400
    default_message = "Malformed HTTP request"


class UriTooLong(ApiError):
    code = "URI_TOO_LONG"
    status = 414
    default_message = "Request line too long"


class HeadersTooLarge(ApiError):
    code = "HEADERS_TOO_LARGE"
    status = 431
    default_message = "Request headers too large"


class ValidationFailed(ApiError):
    code = "VALIDATION_FAILED"
    status = 422
    default_message = "Validation failed"


class InvalidState(ApiError):
    code = "INVALID_STATE"
    status = 422
    default_message = "Invalid state"


class RateLimited(ApiError):
    """Too many failed attempts; `headers` carry `Retry-After` and the `RateLimit-*` triple."""

    code = "RATE_LIMITED"
    status = 429
    default_message = "Too many failed attempts; try again later"


class NotConfigured(ApiError):
    code = "NOT_CONFIGURED"
    status = 501
    default_message = "Not configured"


class ServiceUnavailable(ApiError):
    code = "SERVICE_UNAVAILABLE"
    status = 503
    default_message = "Service unavailable"


class Timeout(ApiError):
    code = "TIMEOUT"
    status = 504
    default_message = "The request took too long"


class InternalError(ApiError):
    code = "INTERNAL_ERROR"
    status = 500
    default_message = "Internal server error"
