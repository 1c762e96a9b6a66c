"""A local AWS endpoint that behaves like AWS under load.

moto is correct but slow (a few S3 list pages per second, slower as buckets
grow) and models no latency or throttling. This endpoint serves *generated*
data sets instead: keys and items are computed from their index and a seed, so
a 100-million-key bucket costs no memory and no set-up, and a 1000-key page
costs the server a fraction of a millisecond. What it adds on top:

* a latency model per request (:class:`LatencyModel`),
* server-side throttling with AWS's real error bodies (:class:`Throttle`):
  S3 ``SlowDown``, DynamoDB ``ProvisionedThroughputExceededException`` /
  ``ThrottlingException``, EC2 ``RequestLimitExceeded``, IAM ``Throttling``,
* injected faults (:class:`Fault`): 500s, connection resets, slow and cut
  bodies, and repeated continuation tokens,
* counters a test can read (:class:`EndpointStats`).

Served operations: S3 ``ListObjectsV2``, ``ListObjects``, ``ListBuckets``,
``HeadBucket``, ``GetBucketLocation``, and ``CreateSession`` for a bucket
named as a directory bucket (``name--use1-az4--x-s3``), which lists its keys
in no order and refuses ``StartAfter``, as AWS documents. A bucket asked for
by a request signed for another region answers ``301 PermanentRedirect``
with its region in ``x-amz-bucket-region``, as S3 does (botocore follows);
a requester-pays bucket (``Bucket(requester_pays=True)``) refuses requests
without ``RequestPayer``.
DynamoDB ``Scan``, ``Query``
(partition-key equality), ``GetItem``, ``DescribeTable``, ``ListTables``;
EC2 ``DescribeRegions``, ``DescribeInstances``; IAM ``ListUsers``. Clients are
plain boto3/aiobotocore clients with ``endpoint_url``; signatures are not
checked. Use :class:`LocalEndpoint` in tests (a background thread), and
:func:`spawn_endpoint` or ``python -m asyncpager.testing`` for benchmarks and
other tools (a separate process)::

    from asyncpager.testing import Bucket, LocalEndpoint, Throttle

    with LocalEndpoint(
        buckets=[Bucket("logs", 1_000_000, "deep")],
        throttles=[Throttle("s3", "ListObjectsV2", first=2)],
    ) as ep:
        s3 = boto3.client("s3", endpoint_url=ep.url, region_name="us-east-1")
        ...
        ep.stats().throttled_count("s3")  # -> 2
"""

from __future__ import annotations

from asyncpager.testing._endpoint import LocalEndpoint, SpawnedEndpoint, spawn_endpoint
from asyncpager.testing._policy import EndpointStats
from asyncpager.testing._specs import (
    Bucket,
    Ec2Fleet,
    EndpointConfig,
    Fault,
    FaultKind,
    IamUsers,
    ItemShape,
    KeyShape,
    LatencyModel,
    Table,
    Throttle,
)

__all__ = [
    "Bucket",
    "Ec2Fleet",
    "EndpointConfig",
    "EndpointStats",
    "Fault",
    "FaultKind",
    "IamUsers",
    "ItemShape",
    "KeyShape",
    "LatencyModel",
    "LocalEndpoint",
    "SpawnedEndpoint",
    "Table",
    "Throttle",
    "spawn_endpoint",
]
