"""What the local endpoint serves and how it misbehaves: plain, frozen specs.

Every spec is a small frozen dataclass of JSON-friendly fields, so the same
configuration can be handed to an in-process :class:`LocalEndpoint` or sent to
a subprocess (:func:`spawn_endpoint`) and rebuilt there exactly.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

__all__ = [
    "Bucket",
    "Ec2Fleet",
    "EndpointConfig",
    "Fault",
    "FaultKind",
    "IamUsers",
    "ItemShape",
    "KeyShape",
    "LatencyModel",
    "Table",
    "Throttle",
]

KeyShape = Literal["flat", "deep", "hot", "unicode", "hive"]
"""How a generated bucket's keys look.

``flat``
    random-looking fixed-width hex names (``0a3f9c2b71de.json``), no ``/``.
``deep``
    a tree: ``kq/bd/ra/0042.json`` with 16 names per level and up to 1000
    objects per leaf folder, so a delimiter listing sees common prefixes.
``hot``
    one prefix (``hot/``) holds 90% of the keys, eight small prefixes around
    it hold the rest: a planner that only splits on prefixes ends up with one
    huge shard.
``unicode``
    keys made of awkward pieces: space, ``%41``, ``+``, ``&<>``, quotes, ``~``,
    accented letters, CJK, halfwidth katakana (U+FF71) and an emoji (U+1F600),
    which sort differently in UTF-8 and UTF-16.
``hive``
    a data lake's table partitioned by day and hour in Hive's ``name=value``
    folders (``events/dt=2023-01-01/hour=07/part-00042-5f3a9c1e.c000.snappy.parquet``),
    10 to 100 files an hour: listed URL-encoded, as botocore asks, every key
    holds ``%3D``.
"""

ItemShape = Literal["small", "mixed", "large"]
"""How a generated table's items look.

``small``
    the key, ``seq`` (N), a name (S) and a flag (BOOL): about 60 bytes.
``mixed``
    about a dozen attributes covering S, N, B, BOOL, NULL, L, M, SS, NS and BS,
    so type converters are exercised: about 400 bytes.
``large``
    ``mixed`` plus a 3-4 KB string, so the 1 MB page cut comes before any
    sensible ``Limit``.
"""

FaultKind = Literal["internal_error", "reset", "slow_body", "cut_body", "repeat_token"]
"""What an injected fault does to one answer.

``internal_error``
    the service's own 500 error body (S3 ``InternalError``, DynamoDB
    ``InternalServerError``, EC2 ``InternalError``, IAM ``ServiceFailure``).
``reset``
    the connection is reset (TCP RST) without any answer.
``slow_body``
    the right answer, dribbled out over :attr:`Fault.seconds`.
``cut_body``
    the headers promise the whole body, half of it is sent, then the
    connection is closed.
``repeat_token``
    the right page, but its next token is the one the request carried: the
    server bug that makes a naive paginator loop forever. Only requests that
    carry a token count for this rule.
"""

SERVICES = ("s3", "dynamodb", "ec2", "iam")

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")


def _check_selector(service: str | None) -> None:
    if service is not None and service not in SERVICES:
        raise ValueError(f"unknown service {service!r}; expected one of {SERVICES}")


def _check_trigger(first: int, every: int, probability: float) -> None:
    if first < 0 or every < 0:
        raise ValueError("first and every must be >= 0")
    if not 0.0 <= probability <= 1.0:
        raise ValueError("probability must be within [0, 1]")


@dataclasses.dataclass(frozen=True)
class Bucket:
    """An S3 bucket whose keys are generated on demand.

    ``count`` keys of the given ``shape`` exist, derived from ``seed``; none is
    stored, so a bucket of 100 million keys costs nothing to set up. Pass
    ``keys`` instead (:meth:`of_keys`) to serve an explicit, small list of
    awkward keys exactly, for parity tests against moto.
    """

    name: str
    count: int = 0
    shape: KeyShape = "flat"
    seed: int = 0
    keys: tuple[str, ...] | None = None
    region: str = "us-east-1"
    #: Requester pays: a request without ``x-amz-request-payer: requester``
    #: is refused (403 ``AccessDenied``), as S3 refuses anyone but the owner.
    requester_pays: bool = False
    #: The share of objects (0 to 1) listed with the checksum S3 has added
    #: to every object written since 2025 (``ChecksumAlgorithm`` CRC64NVME,
    #: ``ChecksumType`` FULL_OBJECT; a few with another algorithm): a bucket
    #: written this year lists it on every object, an older one on its
    #: newer objects only. 0 lists none, as before.
    checksums: float = 0.0

    def __post_init__(self) -> None:
        if not _BUCKET_NAME.match(self.name) or ".." in self.name:
            raise ValueError(f"invalid S3 bucket name {self.name!r}")
        if self.shape not in get_args(KeyShape):
            raise ValueError(f"unknown key shape {self.shape!r}")
        if self.count < 0:
            raise ValueError("count must be >= 0")
        if not 0.0 <= self.checksums <= 1.0:
            raise ValueError(f"checksums is a share of the objects, 0 to 1: {self.checksums}")
        if self.keys is not None:
            keys = tuple(self.keys)
            for key in keys:
                if not key or len(key.encode("utf-8", "strict")) > 1024:
                    raise ValueError(f"S3 keys are 1 to 1024 UTF-8 bytes: {key[:40]!r}")
            object.__setattr__(self, "keys", keys)
            object.__setattr__(self, "count", len(set(keys)))
        if not _REGION.match(self.region):
            raise ValueError(f"invalid region {self.region!r}")

    @classmethod
    def of_keys(cls, name: str, keys: Sequence[str], *, seed: int = 0) -> Bucket:
        """A bucket holding exactly ``keys`` (sorted and deduplicated by the server)."""
        return cls(name=name, seed=seed, keys=tuple(keys))


@dataclasses.dataclass(frozen=True)
class Table:
    """A DynamoDB table of ``count`` generated items.

    Item ``i`` has partition key ``pk = f"{partition_prefix}{i // items_per_partition}"``
    (zero padded) and, when ``sort_key`` is set, a sort key numbering it within
    its partition. Parallel-scan segment ``s`` of ``T`` covers the contiguous
    index range ``[s*count//T, (s+1)*count//T)``, so segments never overlap.
    """

    name: str
    count: int = 0
    seed: int = 0
    item_shape: ItemShape = "mixed"
    partition_key: str = "pk"
    sort_key: str | None = None
    items_per_partition: int = 1
    partition_prefix: str = "item#"

    def __post_init__(self) -> None:
        if not _TABLE_NAME.match(self.name):
            raise ValueError(f"invalid DynamoDB table name {self.name!r}")
        if self.count < 0:
            raise ValueError("count must be >= 0")
        if self.item_shape not in get_args(ItemShape):
            raise ValueError(f"unknown item shape {self.item_shape!r}")
        if self.items_per_partition < 1:
            raise ValueError("items_per_partition must be >= 1")
        if self.items_per_partition > 1 and self.sort_key is None:
            raise ValueError("several items per partition need a sort_key")
        if not self.partition_key or self.partition_key == self.sort_key:
            raise ValueError("partition_key must be set and differ from sort_key")


@dataclasses.dataclass(frozen=True)
class Ec2Fleet:
    """``per_region`` EC2 instances in each of ``regions``.

    Reservations hold ``per_reservation`` instances each (the last may hold
    fewer); a page never splits a reservation. The region of a request is the
    one in its SigV4 credential scope, as with real EC2 endpoints.
    """

    regions: tuple[str, ...] = ("us-east-1", "eu-west-1")
    per_region: int = 0
    seed: int = 0
    per_reservation: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "regions", tuple(self.regions))
        if not self.regions:
            raise ValueError("an EC2 fleet needs at least one region")
        for region in self.regions:
            if not _REGION.match(region):
                raise ValueError(f"invalid region {region!r}")
        if self.per_region < 0 or self.per_reservation < 1:
            raise ValueError("per_region must be >= 0 and per_reservation >= 1")


@dataclasses.dataclass(frozen=True)
class IamUsers:
    """``count`` IAM users named ``user000000...`` in name order, all under ``path``."""

    count: int = 0
    seed: int = 0
    path: str = "/"

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("count must be >= 0")
        if not (self.path.startswith("/") and self.path.endswith("/")):
            raise ValueError("an IAM path starts and ends with '/'")


@dataclasses.dataclass(frozen=True)
class LatencyModel:
    """Time added before an answer is sent: ``fixed + U(0, jitter) + per_mb * MB``.

    Drawn from a random generator seeded by the endpoint's ``seed``, so a run
    is repeatable. ``service``/``operation`` restrict the model; the first
    matching model in the endpoint's list applies.
    """

    fixed: float = 0.0
    jitter: float = 0.0
    per_mb: float = 0.0
    service: str | None = None
    operation: str | None = None

    def __post_init__(self) -> None:
        _check_selector(self.service)
        if min(self.fixed, self.jitter, self.per_mb) < 0:
            raise ValueError("latency terms must be >= 0")


@dataclasses.dataclass(frozen=True)
class Throttle:
    """Answer matching requests with the service's real throttling error.

    A request is throttled when any trigger fires:

    * ``rate``/``burst``: a token bucket per (service, operation), refilled at
      ``rate`` requests per second, holding at most ``burst`` (default
      ``max(1, rate)``), started full;
    * ``first``: the first N requests matching this rule;
    * ``every``: every k-th matching request (the k-th, 2k-th, ...);
    * ``probability``: each matching request with this chance (seeded).

    ``code`` picks the error; by default S3 answers ``SlowDown`` (503),
    DynamoDB ``ProvisionedThroughputExceededException`` (400), EC2
    ``RequestLimitExceeded`` (503) and IAM ``Throttling`` (400). DynamoDB also
    knows ``ThrottlingException``, S3 also ``ServiceUnavailable``.
    """

    service: str | None = None
    operation: str | None = None
    rate: float | None = None
    burst: float | None = None
    first: int = 0
    every: int = 0
    probability: float = 0.0
    code: str | None = None

    def __post_init__(self) -> None:
        _check_selector(self.service)
        _check_trigger(self.first, self.every, self.probability)
        if self.rate is not None and (self.rate < 0 or math.isnan(self.rate)):
            raise ValueError("rate must be >= 0")
        if self.burst is not None and self.burst < 1:
            raise ValueError("burst must be >= 1")


@dataclasses.dataclass(frozen=True)
class Fault:
    """Break matching answers on purpose (see :data:`FaultKind`).

    Triggers work as for :class:`Throttle`: ``first``, ``every`` and
    ``probability``. A throttled request is not also faulted; when several
    fault rules fire, the first in the list wins.
    """

    kind: FaultKind
    service: str | None = None
    operation: str | None = None
    first: int = 0
    every: int = 0
    probability: float = 0.0
    seconds: float = 0.2

    def __post_init__(self) -> None:
        if self.kind not in get_args(FaultKind):
            raise ValueError(f"unknown fault kind {self.kind!r}")
        _check_selector(self.service)
        _check_trigger(self.first, self.every, self.probability)
        if self.seconds < 0:
            raise ValueError("seconds must be >= 0")


@dataclasses.dataclass(frozen=True)
class EndpointConfig:
    """Everything one endpoint serves, as one JSON-serialisable value."""

    buckets: tuple[Bucket, ...] = ()
    tables: tuple[Table, ...] = ()
    ec2: Ec2Fleet | None = None
    iam: IamUsers | None = None
    latency: tuple[LatencyModel, ...] = ()
    throttles: tuple[Throttle, ...] = ()
    faults: tuple[Fault, ...] = ()
    seed: int = 0
    cache_bytes: int = 64 << 20
    #: Answer with ``Transfer-Encoding: chunked`` (in 16 KiB chunks), as S3
    #: sends its listings, instead of ``Content-Length``.
    chunked: bool = False

    def __post_init__(self) -> None:
        for name in ("buckets", "tables", "latency", "throttles", "faults"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        names = [b.name for b in self.buckets]
        if len(set(names)) != len(names):
            raise ValueError("bucket names must be unique")
        tables = [t.name for t in self.tables]
        if len(set(tables)) != len(tables):
            raise ValueError("table names must be unique")
        if self.cache_bytes < 0:
            raise ValueError("cache_bytes must be >= 0")

    def to_json(self) -> dict[str, Any]:
        """A plain dict for ``json.dumps``; :meth:`from_json` rebuilds it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EndpointConfig:
        def many(kind: type[Any], key: str) -> tuple[Any, ...]:
            return tuple(kind(**_tuples(item)) for item in data.get(key) or ())

        ec2 = data.get("ec2")
        iam = data.get("iam")
        return cls(
            buckets=many(Bucket, "buckets"),
            tables=many(Table, "tables"),
            ec2=Ec2Fleet(**_tuples(ec2)) if ec2 else None,
            iam=IamUsers(**iam) if iam else None,
            latency=many(LatencyModel, "latency"),
            throttles=many(Throttle, "throttles"),
            faults=many(Fault, "faults"),
            seed=int(data.get("seed", 0)),
            cache_bytes=int(data.get("cache_bytes", 64 << 20)),
            chunked=bool(data.get("chunked", False)),
        )


def _tuples(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in item.items()}
