"""The error table shared by pyhvd's API and its client: which expected error gets which HTTP
status and stable ``code``, and back. Free of FastAPI, so the ``pyhv`` command loads quickly.
"""

from __future__ import annotations

from pyhv import errors

# Most specific first: the first class the error is an instance of wins.
ERRORS: tuple[tuple[type[errors.PyhvError], int, str], ...] = (
    (errors.AuthenticationError, 401, "unauthenticated"),
    (errors.PermissionDenied, 403, "forbidden"),
    (errors.ApiError, 500, "api-error"),
    (errors.UsageError, 400, "bad-request"),
    (errors.ConfigError, 422, "invalid-config"),
    (errors.NotFoundError, 404, "not-found"),
    (errors.ConflictError, 409, "conflict"),
    (errors.StateError, 409, "invalid-state"),
    (errors.InvalidFormat, 422, "invalid-format"),
    (errors.CorruptImage, 422, "corrupt-image"),
    (errors.UnsupportedFeature, 422, "unsupported-feature"),
    (errors.OutOfBounds, 400, "out-of-bounds"),
    (errors.ParentError, 422, "parent-error"),
    (errors.StorageError, 422, "storage-error"),
    (errors.QmpError, 502, "qmp-error"),
    (errors.NbdError, 502, "nbd-error"),
    (errors.PyhvError, 500, "error"),
)

# Codes for failures that are not PyhvErrors: request shape, unknown route, bugs.
INVALID_REQUEST = "invalid-request"
HTTP_CODES = {404: "not-found", 405: "method-not-allowed"}
INTERNAL = "internal"


def status_and_code(error: errors.PyhvError) -> tuple[int, str]:
    for cls, status, code in ERRORS:
        if isinstance(error, cls):
            return status, code
    raise AssertionError("PyhvError is the last row of ERRORS")


def error_class(code: str) -> type[errors.PyhvError]:
    """The class a client raises for ``code``; unknown codes (a newer pyhvd) become ApiError."""
    for cls, _, known in ERRORS:
        if known == code:
            return cls
    if code == INVALID_REQUEST:
        return errors.UsageError
    if code in HTTP_CODES.values():
        return errors.NotFoundError if code == "not-found" else errors.UsageError
    return errors.ApiError
