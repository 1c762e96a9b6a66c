"""asyncpager's exceptions: one tree, rooted at :class:`AsyncPagerError`.

::

    AsyncPagerError
    ├── ConfigurationError          bad input from the caller (also a ValueError)
    ├── ServiceError                the service answered with an error
    │   ├── ThrottledError          ... still throttled after every retry
    │   ├── NotFoundError           NoSuchBucket, ResourceNotFoundException, ...
    │   ├── AccessDeniedError       AccessDenied, UnauthorizedOperation, ...
    │   └── InvalidRequestError     ValidationException, InvalidParameterValue, ...
    ├── TransportError              connection reset, timeout, unreachable
    │   │                           endpoint: still failing after every retry
    │   └── CredentialsError        no credentials found
    ├── PaginationError             the listing itself is inconsistent
    │   └── RepeatedTokenError      the server sent a token seen before
    └── StreamFailedError           the engine's report of a failed stream

Every error raised while paging names the operation and the last token that
was fully delivered (``last_token``): pass that to ``StartingToken`` to resume
without losing or repeating a page. botocore's exceptions are translated where
they enter (:func:`translate`); the original is kept as ``__cause__``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AccessDeniedError",
    "AsyncPagerError",
    "ConfigurationError",
    "CredentialsError",
    "InvalidRequestError",
    "NotFoundError",
    "PaginationError",
    "RepeatedTokenError",
    "ServiceError",
    "StreamFailedError",
    "ThrottledError",
    "TransportError",
]


class AsyncPagerError(Exception):
    """Root of every exception asyncpager raises on purpose.

    ``operation`` is the botocore operation name (``ListObjectsV2``) when the
    error came from paging, ``last_token`` the resume token after the last page
    that was delivered (``None`` when no page was).
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        last_token: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.operation = operation
        self.last_token = last_token

    def __str__(self) -> str:
        parts = [self.message]
        if self.operation is not None:
            parts.append(f"operation={self.operation}")
        if self.last_token is not None:
            parts.append(f"last_token={self.last_token}")
        return "; ".join(parts)


class ConfigurationError(AsyncPagerError, ValueError):
    """The caller asked for something that cannot work (bad parameter)."""


class ServiceError(AsyncPagerError):
    """The service answered with an error; ``code`` and ``status`` say which."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        operation: str | None = None,
        last_token: str | None = None,
    ) -> None:
        super().__init__(message, operation=operation, last_token=last_token)
        self.code = code
        self.status = status


class ThrottledError(ServiceError):
    """Still throttled after the last retry."""


class NotFoundError(ServiceError):
    """The bucket, table or resource does not exist."""


class AccessDeniedError(ServiceError):
    """The credentials may not do this."""


class InvalidRequestError(ServiceError):
    """The service refused the parameters."""


class TransportError(AsyncPagerError):
    """The connection failed (reset, timeout, unreachable) after every retry."""


class CredentialsError(TransportError):
    """No credentials could be found."""


class PaginationError(AsyncPagerError):
    """The pages do not form a consistent listing."""


class RepeatedTokenError(PaginationError):
    """The server answered with a pagination token it had already sent."""


class StreamFailedError(AsyncPagerError):
    """A stream of an engine run failed; ``stream`` names it.

    ``last_token`` is the stream's last *committed* token: the token after
    the last page its consumer acknowledged.
    """

    def __init__(
        self,
        message: str,
        *,
        stream: Any = None,
        operation: str | None = None,
        last_token: str | None = None,
    ) -> None:
        super().__init__(message, operation=operation, last_token=last_token)
        self.stream = stream
