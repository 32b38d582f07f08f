"""HTTP errors: server-only RavlError subclasses and the map from every error to a status code.

Every error response is JSON ``{"type": ..., "message": ...}`` (``/ask`` adds ``evidence``).
"""
from __future__ import annotations

from .. import errors as E
from ..errors import UnsupportedImageError  # noqa: F401  (raised by ravl.images, 415 here)


class UploadTooLargeError(E.InputError):
    """A request body or uploaded file is over the server's size cap."""


class AuthError(E.RavlError):
    """The request lacks the right ``Authorization: Bearer`` key."""


class WritesDisabledError(E.RavlError):
    """Write endpoints are off: no API key is configured and --allow-writes was not given."""


class NotFoundError(E.RavlError):
    """No such route or file (also the answer to any path outside the collection's image roots)."""


class BusyError(E.RavlError):
    """Every generation slot is taken: retry after ``retry_after`` seconds (429 + Retry-After)."""

    def __init__(self, message: str, retry_after: int = 5):
        super().__init__(message)
        self.retry_after = retry_after


#: most specific first; the first isinstance match wins
STATUS = (
    (UploadTooLargeError, 413),
    (E.ImageError, 415),
    (E.ItemNotFoundError, 404),
    (NotFoundError, 404),
    (AuthError, 401),
    (BusyError, 429),
    (E.NoImageGeneratorError, 503),
    (WritesDisabledError, 403),
    (E.ConfigError, 400),
    (E.InputError, 400),
    (E.EncoderMismatchError, 409),
    (E.MissingDependencyError, 503),
    (E.ModelNotAvailableError, 503),
    (E.GenerationError, 502),
    (E.RavlError, 500),
)


def status_for(exc: BaseException) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(exc: BaseException, **extra) -> dict:
    return {"type": type(exc).__name__, "message": str(exc), **extra}
