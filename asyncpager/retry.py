"""What is worth retrying, how long to wait, and how botocore errors map to ours.

A page fetch is retried *inside* its stream: a listing never ends early
because one request failed. Waits use full jitter (a uniform draw between 0
and an exponentially growing cap), which spreads synchronised retries of many
streams best (the AWS Architecture Blog's comparison, and botocore's standard
mode). Both the clock and the random source are injected so tests neither
sleep nor flake.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from enum import Enum

import botocore.exceptions as bex

from asyncpager.errors import (
    AccessDeniedError,
    AsyncPagerError,
    ConfigurationError,
    CredentialsError,
    InvalidRequestError,
    NotFoundError,
    ServiceError,
    ThrottledError,
    TransportError,
)

__all__ = ["Failure", "RetryPolicy", "classify", "translate"]

try:  # aiobotocore's transport; its errors mostly arrive translated by botocore.
    import aiohttp

    _AIOHTTP_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError,)
except ImportError:  # pragma: no cover - aiobotocore always brings aiohttp
    _AIOHTTP_ERRORS = ()


# The codes botocore's standard retry mode treats as throttling, plus the ones
# services send that it misses (S3's SlowDown arrives as 503 but says so).
THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "RequestTimeTooSkewed",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "IDPCommunicationError",
    }
)
NOT_FOUND_CODES = frozenset(
    {
        "NoSuchBucket",
        "NoSuchKey",
        "NoSuchEntity",
        "ResourceNotFoundException",
        "NotFoundException",
        "NotFound",
        "404",
    }
)
ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "AuthFailure",
        "403",
    }
)
_RETRYABLE_TRANSPORT: tuple[type[BaseException], ...] = (
    bex.EndpointConnectionError,
    bex.ConnectionClosedError,
    bex.ReadTimeoutError,
    bex.ConnectTimeoutError,
    bex.ResponseStreamingError,
    bex.IncompleteReadError,
    bex.ConnectionError,
    bex.HTTPClientError,
    asyncio.TimeoutError,
    ConnectionError,
    *_AIOHTTP_ERRORS,
)


class Failure(Enum):
    """How one failed request is handled."""

    THROTTLED = "throttled"  # retry, and tell the pacer to slow down
    TRANSIENT = "transient"  # retry: 5xx, reset, timeout
    FATAL = "fatal"  # no retry can help


def _code_status(exc: bex.ClientError) -> tuple[str, int]:
    error = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
    meta = exc.response.get("ResponseMetadata", {}) if isinstance(exc.response, dict) else {}
    return str(error.get("Code", "")), int(meta.get("HTTPStatusCode", 0) or 0)


def classify(exc: BaseException) -> Failure:
    """Tell whether a failed request is worth another try, and why."""
    if isinstance(exc, bex.ClientError):
        code, status = _code_status(exc)
        if code in THROTTLE_CODES or status == 429:
            return Failure.THROTTLED
        if code in TRANSIENT_CODES or status >= 500:
            return Failure.TRANSIENT
        return Failure.FATAL
    if isinstance(exc, _RETRYABLE_TRANSPORT):
        return Failure.TRANSIENT
    return Failure.FATAL


def translate(
    exc: BaseException, *, operation: str | None, last_token: str | None
) -> AsyncPagerError | None:
    """Turn a botocore (or transport) exception into ours; ``None`` if foreign."""
    if isinstance(exc, AsyncPagerError):
        return exc
    if isinstance(exc, bex.ClientError):
        code, status = _code_status(exc)
        message = exc.response.get("Error", {}).get("Message") or str(exc)
        cls: type[ServiceError]
        if code in THROTTLE_CODES or status == 429:
            cls = ThrottledError
        elif code in NOT_FOUND_CODES or code.endswith(".NotFound") or code.endswith("NotFound"):
            cls = NotFoundError
        elif code in ACCESS_DENIED_CODES:
            cls = AccessDeniedError
        elif status == 400 or code.startswith("Invalid") or code.startswith("Validation"):
            cls = InvalidRequestError
        else:
            cls = ServiceError
        return cls(
            f"{code or status}: {message}",
            code=code or None,
            status=status or None,
            operation=operation,
            last_token=last_token,
        )
    if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
        return CredentialsError(
            "no AWS credentials found (set a profile, environment variables or an instance role)",
            operation=operation,
            last_token=last_token,
        )
    if isinstance(exc, bex.ParamValidationError):
        return ConfigurationError(
            " ".join(str(exc).split()), operation=operation, last_token=last_token
        )
    if isinstance(exc, _RETRYABLE_TRANSPORT):
        return TransportError(
            f"{type(exc).__name__}: {exc}", operation=operation, last_token=last_token
        )
    return None


@dataclass
class RetryPolicy:
    """Full-jitter exponential backoff with a bounded number of attempts.

    ``max_attempts`` counts every try including the first. The wait before try
    ``n + 1`` is uniform in ``[0, min(cap, base * 2**n))``. Throttles get their
    own, larger budget: a throttled request is not broken, only early, and the
    pacer slows the stream down while it retries.
    """

    max_attempts: int = 8
    throttle_attempts: int = 20
    base: float = 0.1
    cap: float = 20.0
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.throttle_attempts < 1:
            raise ConfigurationError("retry attempts must be at least 1")
        if self.base <= 0 or self.cap <= 0:
            raise ConfigurationError("retry base and cap must be positive")

    def attempts_for(self, failure: Failure) -> int:
        return self.throttle_attempts if failure is Failure.THROTTLED else self.max_attempts

    def backoff(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (0 for the first retry)."""
        ceiling = min(self.cap, self.base * (2 ** min(retry_number, 62)))
        return self.rng.uniform(0.0, ceiling)
