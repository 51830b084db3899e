"""One exception tree for every sessiond process.

Callers catch by category: ``ServiceError`` subclasses travel over the wire as a typed
``protocol.Error`` reply (see ``ServiceError.code``); ``ConfigError`` and ``StackError`` stay local.
"""

from __future__ import annotations


class SessiondError(Exception):
    """Base of everything sessiond raises on purpose."""


class ConfigError(SessiondError):
    """The configuration (env vars, TOML file, data dir) is unusable."""


class StackError(SessiondError):
    """The stack could not be found, started or stopped."""


class ServiceError(SessiondError):
    """An error reply from a service; ``code`` is its wire name."""

    code = "internal"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code)
        self.message = message or self.code


class BadRequest(ServiceError):
    code = "bad_request"


class NotFound(ServiceError):
    code = "not_found"


class Unavailable(ServiceError):
    code = "unavailable"


class Unreachable(Unavailable):
    """No hub accepted the request at all: the stack is not running (never retried)."""


class ReplyLost(Unavailable):
    """The connection to the hub broke with the request in flight: its outcome is unknown, so
    only an idempotent request may be sent again."""


class Timeout(ServiceError):
    code = "timeout"


class Internal(ServiceError):
    code = "internal"


class StorageError(Internal):
    """The disk refused a write (full, read-only, failing): nothing was stored. The message
    names the file and the reason."""


ERRORS_BY_CODE: dict[str, type[ServiceError]] = {
    cls.code: cls for cls in (BadRequest, NotFound, Unavailable, Timeout, Internal)
}


def error_from_code(code: str, message: str) -> ServiceError:
    """Rebuild the exception for an error reply (unknown codes become ``Internal``)."""
    return ERRORS_BY_CODE.get(code, Internal)(message)
