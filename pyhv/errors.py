"""The one root of every error pyhv raises on purpose.

``str(error)`` is always one line a user can act on; the CLI prints it and exits with
``error.exit_code`` (2 for bad input, 1 for failures), never with a traceback.

    PyhvError
    ├── UsageError                 bad arguments (exit 2)
    ├── ConfigError                invalid VM configuration or limit exceeded (exit 2)
    ├── StateError                 operation illegal in the VM's current state
    ├── NotFoundError              no such VM, disk, file
    ├── ConflictError              name exists, disk in use, attached twice
    ├── StorageError               anything about a disk image
    │   ├── InvalidFormat          not an image of the expected format
    │   ├── CorruptImage           structure is damaged (checksum, bounds, overlap)
    │   ├── UnsupportedFeature     valid but not implemented
    │   ├── OutOfBounds            I/O past the virtual size
    │   └── ParentError            parent missing, loop, identity mismatch
    ├── QmpError                   QEMU's monitor refused or died
    ├── NbdError                   storage provider protocol errors
    └── ApiError                   errors returned by pyhvd
        ├── AuthenticationError    no or unknown credentials (HTTP 401)
        └── PermissionDenied       a role or path the caller may not use (HTTP 403)
"""

from __future__ import annotations


class PyhvError(Exception):
    """Base of all expected errors; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(PyhvError):
    exit_code = 2


class ConfigError(PyhvError):
    exit_code = 2


class StateError(PyhvError):
    pass


class NotFoundError(PyhvError):
    exit_code = 2


class ConflictError(PyhvError):
    exit_code = 2


class StorageError(PyhvError):
    pass


class InvalidFormat(StorageError):
    pass


class CorruptImage(StorageError):
    pass


class UnsupportedFeature(StorageError):
    pass


class OutOfBounds(StorageError):
    exit_code = 2


class ParentError(StorageError):
    pass


class QmpError(PyhvError):
    pass


class NbdError(PyhvError):
    pass


class ApiError(PyhvError):
    pass


class AuthenticationError(ApiError):
    pass


class PermissionDenied(ApiError):
    pass
