"""What the suite lists: scenarios, their sizes at each scale, and the peers.

A :class:`Workload` is everything a peer needs to know to list one scenario
(and nothing about how to measure it), as plain JSON, because every peer runs
in a subprocess of its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

__all__ = [
    "PEERS",
    "REGIONS",
    "SCALES",
    "Peer",
    "Scale",
    "Scenario",
    "Workload",
    "scenarios_for",
]

Kind = Literal["s3", "dynamodb", "ec2"]

#: The 17 regions every AWS account has enabled by default.
REGIONS: tuple[str, ...] = (
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "sa-east-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
)

HOME_REGION = "us-east-1"
ONE_BUCKET = "bench-one"
MANY_BUCKETS = tuple(f"bench-many-{i:02d}" for i in range(20))
TABLE = "bench-table"
MEMORY_BUCKETS = ("bench-mem-a", "bench-mem-b")
#: An S3 Express One Zone directory bucket, by its name: keys in no order.
DIRECTORY_BUCKET = "bench-dir--use1-az4--x-s3"


@dataclasses.dataclass(frozen=True)
class Scale:
    """The sizes of one scale.

    ``full`` is the issue's. ``small`` lists 1/50 of it (1/10 for the memory
    runs): on a 2-core machine with botocore parsing at 10 to 15 pages per
    second, 1/20 took over half an hour for all peers at two latencies.
    """

    name: str
    one_bucket_keys: int
    many_bucket_keys: int  # per bucket, 20 buckets
    table_items: int
    instances_per_region: int
    ec2_page_size: int
    memory_keys: tuple[int, int]
    timeout: float  # seconds per peer run


SCALES = {
    "full": Scale(
        name="full",
        one_bucket_keys=1_000_000,
        many_bucket_keys=50_000,
        table_items=1_000_000,
        instances_per_region=2_000,
        ec2_page_size=20,
        memory_keys=(1_000_000, 10_000_000),
        timeout=3600.0,
    ),
    "small": Scale(
        name="small",
        one_bucket_keys=20_000,
        many_bucket_keys=1_000,
        table_items=20_000,
        instances_per_region=100,
        ec2_page_size=20,
        memory_keys=(100_000, 1_000_000),
        timeout=300.0,
    ),
    # A smoke test of every peer and of the report: seconds, not figures.
    "tiny": Scale(
        name="tiny",
        one_bucket_keys=2_000,
        many_bucket_keys=100,
        table_items=2_000,
        instances_per_region=20,
        ec2_page_size=10,
        memory_keys=(2_000, 20_000),
        timeout=120.0,
    ),
}


@dataclasses.dataclass(frozen=True)
class Workload:
    """One listing, as a peer sees it. ``expected`` is the exact item count."""

    kind: Kind
    url: str = ""
    buckets: tuple[str, ...] = ()
    table: str | None = None
    segments: int | None = None
    regions: tuple[str, ...] = ()
    page_size: int | None = None
    expected: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Workload:
        data = dict(data)
        data["buckets"] = tuple(data.get("buckets") or ())
        data["regions"] = tuple(data.get("regions") or ())
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A named workload plus how the endpoint treats it."""

    id: str
    title: str
    workload: Workload
    throttle_probability: float = 0.0

    @property
    def kind(self) -> Kind:
        return self.workload.kind


def scenarios_for(scale: Scale) -> list[Scenario]:
    ec2 = Workload(
        "ec2",
        regions=REGIONS,
        page_size=scale.ec2_page_size,
        expected=scale.instances_per_region * len(REGIONS),
    )
    return [
        Scenario(
            "s3-one",
            f"S3: one bucket, {scale.one_bucket_keys:,} keys",
            Workload("s3", buckets=(ONE_BUCKET,), expected=scale.one_bucket_keys),
        ),
        Scenario(
            "s3-many",
            f"S3: {len(MANY_BUCKETS)} buckets, {scale.many_bucket_keys * len(MANY_BUCKETS):,} keys",
            Workload(
                "s3",
                buckets=MANY_BUCKETS,
                expected=scale.many_bucket_keys * len(MANY_BUCKETS),
            ),
        ),
        Scenario(
            "s3-directory",
            f"S3 Express: one directory bucket, {scale.one_bucket_keys:,} keys",
            Workload("s3", buckets=(DIRECTORY_BUCKET,), expected=scale.one_bucket_keys),
        ),
        Scenario(
            "dynamodb",
            f"DynamoDB: parallel scan, {scale.table_items:,} items",
            Workload("dynamodb", table=TABLE, expected=scale.table_items),
        ),
        Scenario(
            "ec2",
            f"EC2 DescribeInstances: {len(REGIONS)} regions, "
            f"{ec2.expected:,} instances, {scale.ec2_page_size} per page",
            ec2,
        ),
        Scenario(
            "ec2-throttled",
            f"EC2 DescribeInstances: {len(REGIONS)} regions, 10% of requests throttled",
            ec2,
            throttle_probability=0.1,
        ),
    ]


@dataclasses.dataclass(frozen=True)
class Peer:
    """A way to list: run in-process by ``benchmarks._child`` or as a command."""

    id: str
    label: str
    kinds: tuple[Kind, ...]
    external: bool = False  # a command line tool: wall and CPU include its start-up
    # Whose response parser the client uses: "botocore", "fast" (compiled),
    # "rclone" (its own), or "asyncpager" (whatever the Fetcher installs).
    parser: str = "botocore"


ALL_KINDS: tuple[Kind, ...] = ("s3", "dynamodb", "ec2")

PEERS: Sequence[Peer] = (
    Peer("boto3", "boto3 paginator (sync, baseline)", ALL_KINDS),
    Peer("boto3-threads", "boto3 paginators in threads", ALL_KINDS),
    Peer("aiobotocore", "aiobotocore paginator, one stream at a time", ALL_KINDS),
    Peer("aiobotocore-gather", "aiobotocore paginators, asyncio.gather", ALL_KINDS),
    Peer("parallel-scan", "aws-dynamodb-parallel-scan", ("dynamodb",)),
    Peer("asyncpager", "asyncpager Fetcher", ALL_KINDS, parser="asyncpager"),
    Peer("asyncpager-botocore", "asyncpager Fetcher, botocore's parser", ALL_KINDS),
    Peer("asyncpager-cli", "asyncpager CLI → JSONL", ALL_KINDS, external=True, parser="asyncpager"),
    Peer("aws-cli", "AWS CLI", ALL_KINDS, external=True),
    Peer("rclone", "rclone lsf", ("s3",), external=True, parser="rclone"),
)
