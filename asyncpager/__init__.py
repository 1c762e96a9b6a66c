"""asyncpager: fetch everything behind a paginated AWS API, fast.

One stream: :func:`paginate`. Many streams, paced and bounded:
:class:`Fetcher` running :class:`Stream` s, which the planners make
(:func:`plan_s3`, and ``asyncpager.plan`` for DynamoDB and regions).
"""

from __future__ import annotations

from asyncpager._clock import Clock, FakeClock, SystemClock
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
from asyncpager.paginate import PageStream, paginate
from asyncpager.plan.s3 import parse_s3_url, plan_s3
from asyncpager.retry import RetryPolicy
from asyncpager.streams import Stream
from asyncpager.tokens import decode_token, encode_token

__version__ = "0.1.0"

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
]
