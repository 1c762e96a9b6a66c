"""asyncpager: fetch everything behind a paginated AWS API, fast.

One stream: :func:`paginate`. Many streams, paced and bounded:
:class:`Fetcher` running :class:`Stream` s, which the planners make
(:func:`plan_s3`, and ``asyncpager.plan`` for DynamoDB and regions).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asyncpager._clock import Clock, FakeClock, SystemClock
    from asyncpager._http import LeanHTTPSession
    from asyncpager.engine import Fetcher, PageFlow, RunReport, Stats, StreamStats
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
    from asyncpager.pacing import Aimd, BucketStats, Cubic, Pacer, RateLimit
    from asyncpager.pages import PageStream, paginate
    from asyncpager.plan.s3 import KeySample, parse_s3_url, plan_s3, sample_urls
    from asyncpager.retry import RetryPolicy
    from asyncpager.streams import Stream
    from asyncpager.tokens import decode_token, encode_token

__version__ = "0.1.0"

# Names are loaded on first use: the command line starts (and answers Ctrl-C)
# without importing aiobotocore for a usage error.
_LAZY: dict[str, str] = {
    "AccessDeniedError": "asyncpager.errors",
    "Aimd": "asyncpager.pacing",
    "AsyncPagerError": "asyncpager.errors",
    "BucketStats": "asyncpager.pacing",
    "Clock": "asyncpager._clock",
    "ConfigurationError": "asyncpager.errors",
    "CredentialsError": "asyncpager.errors",
    "Cubic": "asyncpager.pacing",
    "FakeClock": "asyncpager._clock",
    "Fetcher": "asyncpager.engine",
    "InvalidRequestError": "asyncpager.errors",
    "KeySample": "asyncpager.plan.s3",
    "LeanHTTPSession": "asyncpager._http",
    "NotFoundError": "asyncpager.errors",
    "Pacer": "asyncpager.pacing",
    "PageFlow": "asyncpager.engine",
    "PageStream": "asyncpager.pages",
    "PaginationError": "asyncpager.errors",
    "RateLimit": "asyncpager.pacing",
    "RepeatedTokenError": "asyncpager.errors",
    "RetryPolicy": "asyncpager.retry",
    "RunReport": "asyncpager.engine",
    "ServiceError": "asyncpager.errors",
    "Stats": "asyncpager.engine",
    "Stream": "asyncpager.streams",
    "StreamFailedError": "asyncpager.errors",
    "StreamStats": "asyncpager.engine",
    "SystemClock": "asyncpager._clock",
    "ThrottledError": "asyncpager.errors",
    "TransportError": "asyncpager.errors",
    "decode_token": "asyncpager.tokens",
    "encode_token": "asyncpager.tokens",
    "paginate": "asyncpager.pages",
    "parse_s3_url": "asyncpager.plan.s3",
    "plan_s3": "asyncpager.plan.s3",
    "sample_urls": "asyncpager.plan.s3",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'asyncpager' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AccessDeniedError",
    "Aimd",
    "AsyncPagerError",
    "BucketStats",
    "Clock",
    "ConfigurationError",
    "CredentialsError",
    "Cubic",
    "FakeClock",
    "Fetcher",
    "InvalidRequestError",
    "KeySample",
    "LeanHTTPSession",
    "NotFoundError",
    "Pacer",
    "PageFlow",
    "PageStream",
    "PaginationError",
    "RateLimit",
    "RepeatedTokenError",
    "RetryPolicy",
    "RunReport",
    "ServiceError",
    "Stats",
    "Stream",
    "StreamFailedError",
    "StreamStats",
    "SystemClock",
    "ThrottledError",
    "TransportError",
    "__version__",
    "decode_token",
    "encode_token",
    "paginate",
    "parse_s3_url",
    "plan_s3",
    "sample_urls",
]
