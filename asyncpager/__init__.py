"""asyncpager: fetch everything behind a paginated AWS API, fast."""

from __future__ import annotations

from asyncpager._clock import Clock, FakeClock, SystemClock
from asyncpager.errors import (
    AccessDeniedError,
    AsyncPagerError,
    ConfigurationError,
    CredentialsError,
    InvalidRequestError,
    NotFoundError,
    PaginationError,
    RepeatedTokenError,
    ServiceError,
    StreamFailedError,
    ThrottledError,
    TransportError,
)

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "AsyncPagerError",
    "Clock",
    "ConfigurationError",
    "CredentialsError",
    "FakeClock",
    "InvalidRequestError",
    "NotFoundError",
    "PaginationError",
    "RepeatedTokenError",
    "ServiceError",
    "StreamFailedError",
    "SystemClock",
    "ThrottledError",
    "TransportError",
    "__version__",
]
