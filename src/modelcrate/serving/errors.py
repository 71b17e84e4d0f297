"""Client-facing errors: each carries an HTTP status and a short message that leaks no internals.

User code in ``inference.py`` may raise these too (``from modelcrate.serving.errors import BadRequest``).
"""

from __future__ import annotations

from modelcrate.errors import StartupError


class HttpError(Exception):
    status = 500

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class RequestTimeout(BaseException):
    """Raised by SIGALRM inside a request that ran past SAGEMAKER_MODEL_SERVER_TIMEOUT (or put in the place of a
    batch's predict that did). A BaseException, so that user code catching Exception does not swallow it."""


class BadRequest(HttpError):
    status = 400


class NotFound(HttpError):
    status = 404


class NotAcceptable(HttpError):
    status = 406


class Conflict(HttpError):
    status = 409


class PayloadTooLarge(HttpError):
    status = 413


class UnsupportedMediaType(HttpError):
    status = 415


class InsufficientStorage(HttpError):
    """A multi-model endpoint has no room for another model: SageMaker unloads unused ones and retries."""

    status = 507


class ConfigError(StartupError):
    """The container's environment or user code is wrong: the server refuses to start, saying why."""
