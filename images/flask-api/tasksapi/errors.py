"""One JSON error shape for every failure, and the mapping from exceptions.

Every error response body is::

    {"error": {"status": 422, "code": "validation_failed",
               "message": "...", "details": [{"field": "name", "message": "..."}]}}
"""

from psycopg import errors as pg_errors
from psycopg import OperationalError
from psycopg_pool import PoolTimeout
from werkzeug.exceptions import HTTPException


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message, details=None, status=None, code=None):
        super().__init__(message)
        self.message = message
        self.details = details or []
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    def to_dict(self):
        body = {"status": self.status, "code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PreconditionRequired(ApiError):
    status = 428
    code = "precondition_required"


class ValidationFailed(ApiError):
    status = 422
    code = "validation_failed"


class ServiceUnavailable(ApiError):
    status = 503
    code = "database_unavailable"


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def from_exception(exc):
    """Translate any exception raised while serving a request to an ApiError."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        return ApiError(
            exc.description or exc.name,
            status=status,
            code=_HTTP_CODES.get(status, "http_error"),
        )
    if isinstance(exc, pg_errors.UniqueViolation):
        return Conflict(
            "a resource with the same unique value already exists",
            details=_constraint_detail(exc),
            code="duplicate",
        )
    if isinstance(exc, pg_errors.ForeignKeyViolation):
        return NotFound(
            "a referenced resource does not exist", details=_constraint_detail(exc)
        )
    if isinstance(exc, (pg_errors.CheckViolation, pg_errors.NotNullViolation)):
        return ValidationFailed(
            "the database rejected the value", details=_constraint_detail(exc)
        )
    if isinstance(exc, (PoolTimeout, OperationalError)):
        return ServiceUnavailable("the database is unavailable")
    return ApiError("internal server error")


def _constraint_detail(exc):
    diag = getattr(exc, "diag", None)
    name = getattr(diag, "constraint_name", None) if diag is not None else None
    return [{"constraint": name}] if name else []
