"""Service errors and the one table that maps every error to an HTTP status and CONTRACT.md error code."""

from __future__ import annotations

from dataclasses import dataclass

from .classifiers import InvalidInputError


class ServiceError(Exception):
    """An expected failure of a request, outside the classifier core."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class UnknownModelError(ServiceError):
    """The request names a model (or version) that is not served."""


class ModelUnavailableError(ServiceError):
    """The model is configured but failed to load."""


class PayloadTooLargeError(ServiceError):
    """The request body is over the configured limit."""


class UnknownPredictionError(ServiceError):
    """The request names a prediction id the service never issued or no longer keeps."""


class DependencyUnavailableError(ServiceError):
    """A dependency the route needs is down (the prediction log's database)."""


class UnauthorizedError(ServiceError):
    """API keys are configured and the request sends none, or one that is not a key of the service."""


class ForbiddenError(ServiceError):
    """The route is off, or the caller's key lacks the route's scope, or the caller may not use it from where it is
    (an admin route called by a web page, or from another machine without keys)."""


class UnsupportedMediaTypeError(ServiceError):
    """An admin route's body is not declared `application/json`."""


class ConflictError(ServiceError):
    """The request asks for a change the service's state does not allow as asked (a candidate nobody compared or
    shadowed, promoted without `force`)."""


@dataclass(frozen=True)
class ErrorKind:
    status: int
    code: str


ERROR_TABLE: dict[type[Exception], ErrorKind] = {
    InvalidInputError: ErrorKind(400, "invalid_input"),
    UnknownModelError: ErrorKind(404, "unknown_model"),
    PayloadTooLargeError: ErrorKind(413, "payload_too_large"),
    ModelUnavailableError: ErrorKind(503, "model_unavailable"),
    UnknownPredictionError: ErrorKind(404, "unknown_prediction"),
    DependencyUnavailableError: ErrorKind(503, "unavailable"),
    UnauthorizedError: ErrorKind(401, "unauthorized"),
    ForbiddenError: ErrorKind(403, "forbidden"),
    UnsupportedMediaTypeError: ErrorKind(415, "unsupported_media_type"),
    ConflictError: ErrorKind(409, "conflict"),
}
INTERNAL = ErrorKind(500, "internal")
TIMEOUT = "timeout"  # the code of a request answered 504 by the traffic timeout (`bentoml_fixes`)

# Codes for error responses that BentoML or Starlette produce before our handlers run.
CODE_BY_STATUS: dict[int, str] = {
    400: "invalid_input",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    503: "unavailable",
}


def classify(exc: Exception) -> ErrorKind:
    """The status and code of an exception: its most specific entry in `ERROR_TABLE`, else `internal`."""
    for cls in type(exc).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    return INTERNAL


def error_body(code: str, message: str, field: str | None = None) -> dict[str, dict[str, str]]:
    """The JSON error object of CONTRACT.md."""
    error = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def v2_error_body(code: str, message: str, field: str | None = None) -> dict[str, str]:
    """The Open Inference Protocol's error object: one string, CONTRACT.md's code first, then the field at fault."""
    where = f" ({field})" if field is not None else ""
    return {"error": f"{code}: {message}{where}"}
