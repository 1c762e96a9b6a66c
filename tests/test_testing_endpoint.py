"""The local AWS endpoint (asyncpager.testing) against real boto3 clients."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import math
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

import asyncpager.testing as testing
from asyncpager.testing import (
    Bucket,
    Ec2Fleet,
    EndpointConfig,
    Fault,
    IamUsers,
    LatencyModel,
    LocalEndpoint,
    Table,
    Throttle,
    spawn_endpoint,
)
from asyncpager.testing.__main__ import build_config, parse_args

NO_RETRY = {"total_max_attempts": 1}


def make_client(url: str, service: str, region: str = "us-east-1", **config: Any) -> Any:
    config.setdefault("retries", NO_RETRY)
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(**config),
    )


def utf8(key: str) -> bytes:
    return key.encode("utf-8")


AWKWARD = [
    "a",
    "a/",
    "a/b",
    "a b/c d",
    "a+b/c",
    "a%2Fb",
    "100%.csv",
    "tab\there",
    "new\nline",
    "cr\rreturn",
    "&<>\"'",
    "\u00e9t\u00e9/\u00e0",
    "\uff71/x",
    "\U0001f600/y",
    "\u4e2d\u6587/\u6587\u4ef6",
    "z" * 1022 + "\u00e9",
    "foo+1/bar",
    "foo/bar/xyzzy",
    "quux ab/thud",
    "asdf+b",
]


@pytest.fixture(scope="module")
def ep() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(
        buckets=[
            Bucket("flat", 2500, "flat", seed=1),
            Bucket("deep", 3000, "deep", seed=2),
            Bucket("hot", 1000, "hot"),
            Bucket("uni", 1200, "unicode"),
            Bucket("hive", 2600, "hive", seed=4),
            Bucket("huge", 100_000_000, "flat"),
            Bucket("hugedeep", 100_000_000, "deep"),
            Bucket.of_keys("awkward", AWKWARD),
            Bucket("eu-bucket", 10, region="eu-west-1"),
        ],
        tables=[
            Table("mixed", 2000, seed=3),
            Table("large", 1000, item_shape="large"),
            Table("small", 300, item_shape="small"),
            Table("events", 1000, sort_key="sk", items_per_partition=40, partition_prefix="user#"),
        ],
        ec2=Ec2Fleet(regions=("us-east-1", "eu-west-1"), per_region=37, per_reservation=3),
        iam=IamUsers(250),
    ) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def listed(ep: LocalEndpoint) -> Callable[[str], list[str]]:
    """Every key of a bucket, listed once per module (botocore parses slowly)."""
    cache: dict[str, list[str]] = {}

    def get(bucket: str) -> list[str]:
        if bucket not in cache:
            keys, _ = list_all(make_client(ep.url, "s3"), Bucket=bucket)
            cache[bucket] = [k for page in keys for k in page]
        return cache[bucket]

    return get


def list_all(s3: Any, **params: Any) -> tuple[list[list[str]], list[list[str]]]:
    """Keys and common prefixes, page by page, through the boto3 paginator."""
    keys, prefixes = [], []
    for page in s3.get_paginator("list_objects_v2").paginate(**params):
        keys.append([o["Key"] for o in page.get("Contents", [])])
        prefixes.append([p["Prefix"] for p in page.get("CommonPrefixes", [])])
    return keys, prefixes


def reference(keys: list[str], prefix: str = "", delimiter: str = "", after: str = "") -> list[str]:
    """What S3 lists, keys and common prefixes merged in order (a plain model)."""
    out: list[str] = []
    for key in sorted(set(keys), key=utf8):
        if not key.startswith(prefix) or utf8(key) <= utf8(after):
            continue
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        entry = key if cut < 0 else key[: cut + len(delimiter)]
        if cut >= 0 and utf8(entry) <= utf8(after):
            continue
        if not out or out[-1] != entry:
            out.append(entry)
    return out


def merged(keys: list[list[str]], prefixes: list[list[str]]) -> list[str]:
    return sorted(
        [k for page in keys for k in page] + [p for page in prefixes for p in page], key=utf8
    )


# -- S3 ----------------------------------------------------------------------


def test_pages_follow_max_keys_and_keys_are_in_byte_order(ep: LocalEndpoint) -> None:
    s3 = make_client(ep.url, "s3", s3={"addressing_style": "path"})
    ep.reset_stats()
    keys, _ = list_all(s3, Bucket="flat", PaginationConfig={"PageSize": 1000})
    assert [len(page) for page in keys] == [1000, 1000, 500]
    flat = [k for page in keys for k in page]
    assert len(set(flat)) == 2500
    assert flat == sorted(flat, key=utf8)
    assert ep.stats().count("s3", "ListObjectsV2") == 3


@pytest.mark.parametrize(
    ("bucket", "count"),
    [("flat", 2500), ("deep", 3000), ("hot", 1000), ("uni", 1200), ("hive", 2600)],
)
def test_every_shape_is_sorted_unique_and_deterministic(
    ep: LocalEndpoint, listed: Callable[[str], list[str]], bucket: str, count: int
) -> None:
    flat = listed(bucket)
    assert len(flat) == count
    assert flat == sorted(set(flat), key=utf8)
    s3 = make_client(ep.url, "s3")
    again, _ = list_all(s3, Bucket=bucket, PaginationConfig={"PageSize": 777})
    assert [k for page in again for k in page] == flat


def test_unicode_shape_orders_by_utf8_not_utf16(listed: Callable[[str], list[str]]) -> None:
    flat = listed("uni")
    assert any(c in k for k in flat for c in " %+&<>\u00e9\u4e2d")
    utf16 = sorted(flat, key=lambda k: k.encode("utf-16-be"))
    assert utf16 != flat, "the shape must tell UTF-8 order from UTF-16 order"


def test_hive_shape_is_a_table_partitioned_by_day_and_hour(
    ep: LocalEndpoint, listed: Callable[[str], list[str]]
) -> None:
    keys = listed("hive")
    folders = sorted({k.rsplit("/", 1)[0] for k in keys})
    # 2,600 keys: 10 files an hour, 260 hours from the first day on.
    assert len(folders) == 260
    table = folders[0].split("/")[0]
    assert folders[0] == f"{table}/dt=2023-01-01/hour=00"
    assert folders[-1] == f"{table}/dt=2023-01-11/hour=19"
    assert all(k.endswith(".c000.snappy.parquet") for k in keys)
    # Asked to URL-encode, S3 writes each "=" as %3D; botocore decodes it.
    s3 = make_client(ep.url, "s3")
    raw = s3.list_objects_v2(Bucket="hive", EncodingType="url", MaxKeys=3)
    assert [o["Key"] for o in raw["Contents"]] == [quote(k, safe="/") for k in keys[:3]]
    assert all("%3D" in o["Key"] for o in raw["Contents"])


def test_seed_changes_flat_keys() -> None:
    with LocalEndpoint(buckets=[Bucket("one", 50, seed=1), Bucket("two", 50, seed=2)]) as ep:
        s3 = make_client(ep.url, "s3")
        one = s3.list_objects_v2(Bucket="one")["Contents"]
        two = s3.list_objects_v2(Bucket="two")["Contents"]
    assert [o["Key"] for o in one] != [o["Key"] for o in two]


@pytest.mark.parametrize("bucket", ["flat", "deep", "hot", "uni", "hive", "awkward"])
def test_start_after_starts_right_after(
    ep: LocalEndpoint, listed: Callable[[str], list[str]], bucket: str
) -> None:
    s3 = make_client(ep.url, "s3")
    flat = listed(bucket)
    rng = random.Random(bucket)
    for index in rng.sample(range(len(flat) - 1), 5):
        page = s3.list_objects_v2(Bucket=bucket, StartAfter=flat[index], MaxKeys=3)
        assert [o["Key"] for o in page["Contents"]] == flat[index + 1 : index + 4]
        # Between two keys: the next key is still the first one listed.
        between = flat[index] + "\x00"
        page = s3.list_objects_v2(Bucket=bucket, StartAfter=between, MaxKeys=1)
        assert page["Contents"][0]["Key"] == flat[index + 1]
        assert page["StartAfter"] == between
    last = s3.list_objects_v2(Bucket=bucket, StartAfter=flat[-1])
    assert last["KeyCount"] == 0
    assert not last["IsTruncated"]


@pytest.mark.parametrize(
    ("bucket", "prefix", "delimiter", "page_size"),
    [
        ("deep", "", "/", 3),
        ("deep", "", "/", 1000),
        ("hot", "", "/", 2),
        ("hot", "hot/", "/", 500),
        ("uni", "", "/", 5),
        ("uni", " /", "/", 7),
        ("uni", "", "a b", 50),
        ("hive", "", "/", 1000),
        ("hive", "", "=", 3),
        ("hive", "events/dt=2023-01-02/", "/", 7),
        ("flat", "", "/", 1000),
        ("flat", "0", "", 100),
        ("awkward", "", "/", 2),
        ("awkward", "a", "/", 1),
        ("awkward", "", "+", 3),
        ("awkward", "foo", "/", 1),
    ],
)
def test_prefix_and_delimiter_match_a_plain_model(
    ep: LocalEndpoint,
    listed: Callable[[str], list[str]],
    bucket: str,
    prefix: str,
    delimiter: str,
    page_size: int,
) -> None:
    s3 = make_client(ep.url, "s3")
    all_keys = listed(bucket)
    params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if delimiter:
        params["Delimiter"] = delimiter
    keys, prefixes = list_all(s3, PaginationConfig={"PageSize": page_size}, **params)
    assert merged(keys, prefixes) == reference(all_keys, prefix, delimiter)
    assert all(len(k) + len(p) <= page_size for k, p in zip(keys, prefixes, strict=True))
    if delimiter:
        for page in prefixes:
            assert all(p.startswith(prefix) and p.endswith(delimiter) for p in page)


def test_walking_a_tree_by_delimiter_finds_every_key(ep: LocalEndpoint) -> None:
    s3 = make_client(ep.url, "s3")
    found: list[str] = []
    todo = [""]
    while todo:
        prefix = todo.pop()
        keys, prefixes = list_all(s3, Bucket="deep", Prefix=prefix, Delimiter="/")
        found += [k for page in keys for k in page]
        todo += [p for page in prefixes for p in page]
    assert len(found) == len(set(found)) == 3000


def test_common_prefixes_carry_over_pages_without_repeats(ep: LocalEndpoint) -> None:
    s3 = make_client(ep.url, "s3")
    # 10**8 keys, 1000 per leaf: five levels, of which the top one is 2 wide.
    _, top = list_all(s3, Bucket="hugedeep", Delimiter="/")
    assert len(top[0]) == 2
    keys, prefixes = list_all(
        s3, Bucket="hugedeep", Prefix=top[0][0], Delimiter="/", PaginationConfig={"PageSize": 5}
    )
    second = [p for page in prefixes for p in page]
    assert len(second) == len(set(second)) == 16
    assert all(p.startswith(top[0][0]) for p in second)
    assert [len(page) for page in prefixes] == [5, 5, 5, 1]
    assert not any(keys)


def test_start_after_inside_a_common_prefix(ep: LocalEndpoint) -> None:
    # S3 and moto both skip a rolled-up prefix that sorts at or before StartAfter.
    s3 = make_client(ep.url, "s3")
    page = s3.list_objects_v2(Bucket="awkward", Delimiter="/", StartAfter="a/b")
    entries = [o["Key"] for o in page.get("Contents", [])]
    entries += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    assert sorted(entries, key=utf8) == reference(AWKWARD, "", "/", "a/b")
    assert "a/" not in entries


def test_encoding_type_url_encodes_as_s3_does(ep: LocalEndpoint) -> None:
    s3 = make_client(ep.url, "s3")
    # Asked for explicitly, botocore leaves the values encoded: the raw answer.
    page = s3.list_objects_v2(Bucket="awkward", Delimiter="/", EncodingType="url", Prefix="")
    assert page["EncodingType"] == "url"
    keys = [o["Key"] for o in page["Contents"]]
    prefixes = [p["Prefix"] for p in page["CommonPrefixes"]]
    raw = [k for k in AWKWARD if "/" not in k]
    assert keys == [quote(k, safe="/") for k in sorted(raw, key=utf8)]
    # The expectations ceph's s3-tests hold real S3 to.
    assert "asdf%2Bb" in keys
    assert "100%25.csv" in keys
    assert "new%0Aline" in keys
    assert {"foo%2B1/", "foo/", "quux%20ab/", "%C3%A9t%C3%A9/"} <= set(prefixes)
    for after in ("a", "a+"):
        page = s3.list_objects_v2(
            Bucket="awkward", Prefix="a", Delimiter=" ", StartAfter=after, EncodingType="url"
        )
        assert (page["Prefix"], page["Delimiter"]) == ("a", "%20")
        assert page["StartAfter"] == quote(after, safe="/")
        entries = [o["Key"] for o in page.get("Contents", [])]
        entries += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        expected = [quote(e, safe="/") for e in reference(AWKWARD, "a", " ", after)]
        assert sorted(entries) == sorted(expected)
        assert ("a%20" in entries) == (after == "a")
    # Left to botocore (its default), the same keys come back decoded.
    plain = s3.list_objects_v2(Bucket="awkward", Delimiter="/")
    assert [o["Key"] for o in plain["Contents"]] == sorted(raw, key=utf8)


def test_answers_without_encoding_escape_xml(ep: LocalEndpoint) -> None:
    port = int(ep.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/awkward?list-type=2&prefix=%26")
    body = conn.getresponse().read().decode()
    conn.close()
    assert "<Key>&amp;&lt;&gt;\"'</Key>" in body
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/awkward?list-type=2&prefix=cr")
    body = conn.getresponse().read().decode()
    conn.close()
    assert "<Key>cr&#13;return</Key>" in body


def test_metadata_fields(ep: LocalEndpoint) -> None:
    s3 = make_client(ep.url, "s3")
    page = s3.list_objects_v2(Bucket="flat", MaxKeys=50)
    for obj in page["Contents"]:
        assert obj["ETag"].startswith('"')
        assert len(obj["ETag"]) == 34
        assert obj["Size"] >= 0
        assert obj["StorageClass"] in {
            "STANDARD",
            "STANDARD_IA",
            "GLACIER",
            "INTELLIGENT_TIERING",
        }
        assert obj["LastModified"].year >= 2024
        assert obj["LastModified"].utcoffset().total_seconds() == 0
        # S3 keeps whole seconds and sends them as ".000Z".
        assert obj["LastModified"].microsecond == 0
        assert "Owner" not in obj
    assert len({obj["LastModified"] for obj in page["Contents"]}) > 40
    owned = s3.list_objects_v2(Bucket="flat", MaxKeys=2, FetchOwner=True)
    assert owned["Contents"][0]["Owner"]["DisplayName"] == "asyncpager"
    again = s3.list_objects_v2(Bucket="flat", MaxKeys=50)
    assert again["Contents"] == page["Contents"]


def test_max_keys_is_capped_at_1000_and_zero_lists_nothing(ep: LocalEndpoint) -> None:
    s3 = make_client(ep.url, "s3")
    page = s3.list_objects_v2(Bucket="flat", MaxKeys=5000)
    assert (page["KeyCount"], page["MaxKeys"], page["IsTruncated"]) == (1000, 1000, True)
    empty = s3.list_objects_v2(Bucket="flat", MaxKeys=0)
    assert empty["KeyCount"] == 0
    assert not empty["IsTruncated"]
    assert "Contents" not in empty
    with pytest.raises(botocore.exceptions.ClientError) as info:
        s3.list_objects_v2(Bucket="flat", MaxKeys=-1)
    assert info.value.response["Error"]["Code"] == "InvalidArgument"


def test_huge_bucket_starts_anywhere_at_once(ep: LocalEndpoint) -> None:
    s3 = make_client(ep.url, "s3")
    started = time.perf_counter()
    first = s3.list_objects_v2(Bucket="huge", MaxKeys=2)["Contents"]
    tail = s3.list_objects_v2(Bucket="huge", StartAfter="ffe", MaxKeys=1000)
    middle = s3.list_objects_v2(Bucket="huge", StartAfter="8", MaxKeys=3)["Contents"]
    beyond = s3.list_objects_v2(Bucket="huge", StartAfter="g")
    assert time.perf_counter() - started < 5
    assert tail["KeyCount"] == 1000
    assert tail["IsTruncated"]
    tail_keys = [o["Key"] for o in tail["Contents"]]
    assert tail_keys == sorted(tail_keys)
    assert tail_keys[0] > "ffe"
    assert first[0]["Key"] < first[1]["Key"] < "8" < middle[0]["Key"] < tail_keys[0]
    assert beyond["KeyCount"] == 0
    assert not beyond["IsTruncated"]


def test_continuation_token_resumes_and_foreign_tokens_fail(ep: LocalEndpoint) -> None:
    s3 = make_client(ep.url, "s3")
    first = s3.list_objects_v2(Bucket="flat", MaxKeys=10)
    token = first["NextContinuationToken"]
    second = s3.list_objects_v2(Bucket="flat", MaxKeys=10, ContinuationToken=token)
    assert second["ContinuationToken"] == token
    assert second["Contents"][0]["Key"] > first["Contents"][-1]["Key"]
    for bad in (token[:-4] + "AAA=", "not a token", ""):
        other_bucket = s3.list_objects_v2(Bucket="deep", MaxKeys=1)["NextContinuationToken"]
        for value in (bad, other_bucket):
            with pytest.raises(botocore.exceptions.ClientError) as info:
                s3.list_objects_v2(Bucket="flat", ContinuationToken=value or "x")
            assert info.value.response["Error"]["Code"] == "InvalidArgument"


def test_list_objects_v1_pages_with_markers(ep: LocalEndpoint) -> None:
    s3 = make_client(ep.url, "s3")
    v1 = []
    for page in s3.get_paginator("list_objects").paginate(
        Bucket="awkward", Delimiter="/", PaginationConfig={"PageSize": 2}
    ):
        v1 += [o["Key"] for o in page.get("Contents", [])]
        v1 += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    assert sorted(v1, key=utf8) == reference(AWKWARD, "", "/")
    assert len(v1) == len(set(v1))
    plain = [
        o["Key"]
        for page in s3.get_paginator("list_objects").paginate(
            Bucket="flat", PaginationConfig={"PageSize": 700}
        )
        for o in page["Contents"]
    ]
    assert plain == [k for page in list_all(s3, Bucket="flat")[0] for k in page]


def test_list_buckets_head_bucket_and_no_such_bucket(ep: LocalEndpoint) -> None:
    s3 = make_client(ep.url, "s3")
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert names == sorted(names)
    assert {"flat", "awkward", "huge"} <= set(names)
    paged = [
        b["Name"]
        for page in s3.get_paginator("list_buckets").paginate(PaginationConfig={"PageSize": 3})
        for b in page["Buckets"]
    ]
    assert paged == names
    head = s3.head_bucket(Bucket="eu-bucket")
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "eu-west-1"
    assert s3.get_bucket_location(Bucket="eu-bucket")["LocationConstraint"] == "eu-west-1"
    # boto3 in us-east-1 followed the bucket to eu-west-1 (below).
    assert s3.list_objects_v2(Bucket="eu-bucket")["KeyCount"] == 10
    with pytest.raises(botocore.exceptions.ClientError) as info:
        s3.head_bucket(Bucket="missing-bucket")
    assert info.value.response["Error"]["Code"] == "404"
    with pytest.raises(botocore.exceptions.ClientError) as info:
        s3.list_objects_v2(Bucket="missing-bucket")
    error = info.value.response
    assert error["Error"]["Code"] == "NoSuchBucket"
    assert error["Error"]["BucketName"] == "missing-bucket"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(botocore.exceptions.ClientError) as info:
        s3.get_object(Bucket="flat", Key="anything")
    assert info.value.response["Error"]["Code"] == "NotImplemented"


def test_virtual_host_and_default_addressing(ep: LocalEndpoint) -> None:
    port = int(ep.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/?list-type=2&max-keys=2", headers={"Host": f"flat.localhost:{port}"})
    answer = conn.getresponse()
    body = answer.read().decode()
    conn.close()
    assert answer.status == 200
    assert "<Name>flat</Name>" in body
    assert body.count("<Key>") == 2
    default = make_client(ep.url, "s3")  # no addressing style: botocore picks path style here
    assert default.list_objects_v2(Bucket="flat", MaxKeys=2)["KeyCount"] == 2


# -- DynamoDB ----------------------------------------------------------------


def attribute_size(value: dict[str, Any]) -> int:
    """DynamoDB's documented item size rules, written out independently."""
    (kind, inner), *_ = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        digits = str(Decimal(inner)).lstrip("-").replace(".", "").strip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in inner)
    if kind == "NS":
        return sum(attribute_size({"N": n}) for n in inner)
    if kind == "BS":
        return sum(len(b) for b in inner)
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in inner)
    return 3 + sum(len(k.encode()) + attribute_size(v) + 1 for k, v in inner.items())


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + attribute_size(v) for name, v in item.items())


def scan_all(ddb: Any, **params: Any) -> list[dict[str, Any]]:
    return [i for page in ddb.get_paginator("scan").paginate(**params) for i in page["Items"]]


def item_id(item: dict[str, Any]) -> str:
    return json.dumps(item, sort_keys=True, default=lambda b: base64.b64encode(b).decode())


def test_segments_cover_the_table_exactly(ep: LocalEndpoint) -> None:
    ddb = make_client(ep.url, "dynamodb")
    full = scan_all(ddb, TableName="mixed")
    assert len(full) == 2000
    segments = [scan_all(ddb, TableName="mixed", Segment=s, TotalSegments=7) for s in range(7)]
    union = [item_id(i) for seg in segments for i in seg]
    assert len(union) == len(set(union)) == 2000
    assert set(union) == {item_id(i) for i in full}
    sizes = [len(seg) for seg in segments]
    assert max(sizes) - min(sizes) <= 1
    seqs = [int(i["seq"]["N"]) for i in segments[3]]
    assert seqs == list(range(3 * 2000 // 7, 4 * 2000 // 7))


def test_items_have_every_attribute_type(ep: LocalEndpoint) -> None:
    ddb = make_client(ep.url, "dynamodb")
    items = ddb.scan(TableName="mixed", Limit=50)["Items"]
    kinds = {kind for item in items for value in item.values() for kind in value}
    assert {"S", "N", "B", "BOOL", "NULL", "L", "M", "SS", "NS", "BS"} <= kinds
    assert all(10 <= len(item) <= 14 for item in items)


def test_limit_pages_and_last_evaluated_key(ep: LocalEndpoint) -> None:
    ddb = make_client(ep.url, "dynamodb")
    pages = list(ddb.get_paginator("scan").paginate(TableName="small", Limit=100))
    assert [p["Count"] for p in pages] == [100, 100, 100, 0]
    assert all(p["ScannedCount"] == p["Count"] for p in pages)
    assert pages[0]["LastEvaluatedKey"] == {"pk": pages[0]["Items"][-1]["pk"]}
    # A page cut by Limit carries a key even at the very end, as DynamoDB does.
    assert "LastEvaluatedKey" in pages[2]
    assert "LastEvaluatedKey" not in pages[3]


def test_one_megabyte_page_cut(ep: LocalEndpoint) -> None:
    ddb = make_client(ep.url, "dynamodb")
    pages = list(ddb.get_paginator("scan").paginate(TableName="large"))
    counts = [p["Count"] for p in pages]
    assert sum(counts) == 1000
    assert len(pages) > 1
    for page in pages[:-1]:
        sizes = [item_size(i) for i in page["Items"]]
        assert sum(sizes[:-1]) < 1 << 20 <= sum(sizes)
        assert "LastEvaluatedKey" in page
    assert "LastEvaluatedKey" not in pages[-1]


@pytest.mark.parametrize(("consistent", "factor"), [(False, 0.5), (True, 1.0)])
def test_consumed_capacity(ep: LocalEndpoint, consistent: bool, factor: float) -> None:
    ddb = make_client(ep.url, "dynamodb")
    page = ddb.scan(
        TableName="mixed", Limit=200, ReturnConsumedCapacity="TOTAL", ConsistentRead=consistent
    )
    expected = math.ceil(sum(item_size(i) for i in page["Items"]) / 4096) * factor
    assert page["ConsumedCapacity"] == {"TableName": "mixed", "CapacityUnits": expected}
    indexes = ddb.scan(TableName="mixed", Limit=200, ReturnConsumedCapacity="INDEXES")
    assert indexes["ConsumedCapacity"]["Table"]["CapacityUnits"] > 0
    assert "ConsumedCapacity" not in ddb.scan(TableName="mixed", Limit=1)


def test_describe_table_matches_the_data(ep: LocalEndpoint) -> None:
    ddb = make_client(ep.url, "dynamodb")
    for name in ("mixed", "events"):
        table = ddb.describe_table(TableName=name)["Table"]
        items = scan_all(ddb, TableName=name)
        assert table["ItemCount"] == len(items)
        assert table["TableSizeBytes"] == sum(item_size(i) for i in items)
        assert table["TableStatus"] == "ACTIVE"
    schema = ddb.describe_table(TableName="events")["Table"]["KeySchema"]
    assert schema == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    with pytest.raises(ddb.exceptions.ResourceNotFoundException):
        ddb.describe_table(TableName="missing")
    with pytest.raises(ddb.exceptions.ResourceNotFoundException):
        ddb.scan(TableName="missing")


def test_query_by_partition_key(ep: LocalEndpoint) -> None:
    ddb = make_client(ep.url, "dynamodb")
    pages = list(
        ddb.get_paginator("query").paginate(
            TableName="events",
            KeyConditionExpression="#p = :v",
            ExpressionAttributeNames={"#p": "pk"},
            ExpressionAttributeValues={":v": {"S": "user#00000007"}},
            Limit=15,
        )
    )
    items = [i for p in pages for i in p["Items"]]
    assert [p["Count"] for p in pages] == [15, 15, 10]
    assert {i["pk"]["S"] for i in items} == {"user#00000007"}
    assert [i["sk"]["S"] for i in items] == [f"{k:04d}" for k in range(40)]
    backwards = ddb.query(
        TableName="events",
        KeyConditionExpression="pk = :v",
        ExpressionAttributeValues={":v": {"S": "user#00000007"}},
        ScanIndexForward=False,
    )
    assert backwards["Items"] == items[::-1]
    nothing = ddb.query(
        TableName="events",
        KeyConditionExpression="pk = :v",
        ExpressionAttributeValues={":v": {"S": "nobody"}},
    )
    assert nothing["Count"] == 0
    assert nothing["Items"] == []


def test_projection_select_count_and_get_item(ep: LocalEndpoint) -> None:
    ddb = make_client(ep.url, "dynamodb")
    page = ddb.scan(
        TableName="mixed",
        Limit=5,
        ProjectionExpression="#n, seq",
        ExpressionAttributeNames={"#n": "name"},
    )
    assert all(set(i) == {"name", "seq"} for i in page["Items"])
    counted = ddb.scan(TableName="mixed", Limit=70, Select="COUNT")
    assert counted["Count"] == 70
    assert "Items" not in counted
    full = ddb.scan(TableName="mixed", Limit=3)["Items"][2]
    assert ddb.get_item(TableName="mixed", Key={"pk": full["pk"]})["Item"] == full
    assert "Item" not in ddb.get_item(TableName="mixed", Key={"pk": {"S": "item#99999999"}})


def test_unsupported_expressions_are_validation_errors(ep: LocalEndpoint) -> None:
    ddb = make_client(ep.url, "dynamodb")
    with pytest.raises(botocore.exceptions.ClientError) as info:
        ddb.scan(
            TableName="mixed",
            FilterExpression="seq > :n",
            ExpressionAttributeValues={":n": {"N": "1"}},
        )
    assert info.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(botocore.exceptions.ClientError) as info:
        ddb.query(
            TableName="events",
            KeyConditionExpression="pk = :v AND sk > :s",
            ExpressionAttributeValues={":v": {"S": "user#00000001"}, ":s": {"S": "0001"}},
        )
    assert info.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(botocore.exceptions.ClientError) as info:
        ddb.scan(TableName="mixed", Segment=3, TotalSegments=3)
    assert info.value.response["Error"]["Code"] == "ValidationException"


def test_list_tables_pages(ep: LocalEndpoint) -> None:
    ddb = make_client(ep.url, "dynamodb")
    names = [
        n
        for page in ddb.get_paginator("list_tables").paginate(PaginationConfig={"PageSize": 1})
        for n in page["TableNames"]
    ]
    assert names == ["events", "large", "mixed", "small"]


# -- EC2 and IAM -------------------------------------------------------------


def test_ec2_pages_per_region(ep: LocalEndpoint) -> None:
    regions = make_client(ep.url, "ec2").describe_regions()["Regions"]
    assert [r["RegionName"] for r in regions] == ["us-east-1", "eu-west-1"]
    seen: dict[str, list[str]] = {}
    for region in ("us-east-1", "eu-west-1", "ap-south-1"):
        ec2 = make_client(ep.url, "ec2", region)
        pages = list(
            ec2.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 6})
        )
        ids = [i["InstanceId"] for p in pages for r in p["Reservations"] for i in r["Instances"]]
        seen[region] = ids
        for page in pages:
            assert len(page["Reservations"]) <= 2
            for reservation in page["Reservations"]:
                assert reservation["ReservationId"].startswith("r-")
                assert 1 <= len(reservation["Instances"]) <= 3
    assert len(seen["us-east-1"]) == len(set(seen["us-east-1"])) == 37
    assert len(seen["eu-west-1"]) == 37
    assert not set(seen["us-east-1"]) & set(seen["eu-west-1"])
    assert seen["ap-south-1"] == []
    instance = make_client(ep.url, "ec2", "eu-west-1").describe_instances(MaxResults=5)
    first = instance["Reservations"][0]["Instances"][0]
    assert first["Placement"]["AvailabilityZone"].startswith("eu-west-1")
    assert first["State"]["Name"] in {"running", "stopped", "pending"}
    assert {"Key": "Name", "Value": "node-0"} in first["Tags"]
    assert first["LaunchTime"].microsecond == 0  # EC2 keeps whole seconds too
    whole = make_client(ep.url, "ec2").describe_instances()
    assert sum(len(r["Instances"]) for r in whole["Reservations"]) == 37
    assert "NextToken" not in whole


def test_ec2_rejects_bad_max_results_and_filters(ep: LocalEndpoint) -> None:
    ec2 = make_client(ep.url, "ec2")
    with pytest.raises(botocore.exceptions.ClientError) as info:
        ec2.describe_instances(MaxResults=4)
    assert info.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(botocore.exceptions.ClientError) as info:
        ec2.describe_instances(Filters=[{"Name": "instance-type", "Values": ["t3.micro"]}])
    assert info.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_iam_list_users_pages(ep: LocalEndpoint) -> None:
    iam = make_client(ep.url, "iam")
    pages = list(iam.get_paginator("list_users").paginate(PaginationConfig={"PageSize": 100}))
    assert [len(p["Users"]) for p in pages] == [100, 100, 50]
    assert [p["IsTruncated"] for p in pages] == [True, True, False]
    names = [u["UserName"] for p in pages for u in p["Users"]]
    assert names == sorted(set(names))
    assert len(names) == 250
    user = pages[0]["Users"][0]
    assert user["Arn"] == f"arn:aws:iam::123456789012:user/{user['UserName']}"
    assert user["UserId"].startswith("AIDA")
    assert user["Path"] == "/"
    assert iam.list_users(PathPrefix="/engineering/")["Users"] == []


# -- throttling, faults, latency, counters ------------------------------------


THROTTLES = [
    ("s3", "SlowDown", 503, lambda c: c.list_objects_v2(Bucket="bkt")),
    ("dynamodb", "ProvisionedThroughputExceededException", 400, lambda c: c.scan(TableName="tbl")),
    ("ec2", "RequestLimitExceeded", 503, lambda c: c.describe_instances()),
    ("iam", "Throttling", 400, lambda c: c.list_users()),
]


@pytest.mark.parametrize(("service", "code", "status", "call"), THROTTLES)
def test_throttles_answer_with_real_error_bodies(
    service: str, code: str, status: int, call: Any
) -> None:
    with LocalEndpoint(
        buckets=[Bucket("bkt", 10)],
        tables=[Table("tbl", 10)],
        ec2=Ec2Fleet(per_region=3),
        iam=IamUsers(3),
        throttles=[Throttle(service=service, first=1)],
    ) as ep:
        client = make_client(ep.url, service)
        with pytest.raises(botocore.exceptions.ClientError) as info:
            call(client)
        assert info.value.response["Error"]["Code"] == code
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
        call(client)  # only the first one was throttled
        stats = ep.stats()
        assert stats.throttled_count(service) == 1
        assert stats.count(service) == 2


def test_dynamodb_throttling_exception_code() -> None:
    with LocalEndpoint(
        tables=[Table("tbl", 10)],
        throttles=[Throttle("dynamodb", "Scan", first=1, code="ThrottlingException")],
    ) as ep:
        ddb = make_client(ep.url, "dynamodb")
        with pytest.raises(botocore.exceptions.ClientError) as info:
            ddb.scan(TableName="tbl")
        assert info.value.response["Error"]["Code"] == "ThrottlingException"
        ddb.describe_table(TableName="tbl")  # another operation: not matched


def test_every_kth_request_is_throttled() -> None:
    with LocalEndpoint(
        buckets=[Bucket("bkt", 10)], throttles=[Throttle("s3", "ListObjectsV2", every=3)]
    ) as ep:
        s3 = make_client(ep.url, "s3")
        outcome = []
        for _ in range(9):
            try:
                s3.list_objects_v2(Bucket="bkt")
                outcome.append(True)
            except botocore.exceptions.ClientError:
                outcome.append(False)
        s3.list_buckets()  # other operations pass
        assert outcome == [True, True, False] * 3
        assert ep.stats().throttled == {("s3", "ListObjectsV2"): 3}


def test_token_bucket_rate() -> None:
    with LocalEndpoint(iam=IamUsers(5), throttles=[Throttle("iam", rate=0.5, burst=3)]) as ep:
        iam = make_client(ep.url, "iam")
        codes = []
        for _ in range(5):
            try:
                iam.list_users()
                codes.append("ok")
            except botocore.exceptions.ClientError as exc:
                codes.append(exc.response["Error"]["Code"])
        assert codes == ["ok", "ok", "ok", "Throttling", "Throttling"]


def test_internal_error_fault() -> None:
    with LocalEndpoint(
        buckets=[Bucket("bkt", 10)],
        tables=[Table("tbl", 10)],
        faults=[Fault("internal_error", first=2)],
    ) as ep:
        with pytest.raises(botocore.exceptions.ClientError) as info:
            make_client(ep.url, "s3").list_objects_v2(Bucket="bkt")
        assert info.value.response["Error"]["Code"] == "InternalError"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        with pytest.raises(botocore.exceptions.ClientError) as info:
            make_client(ep.url, "dynamodb").scan(TableName="tbl")
        assert info.value.response["Error"]["Code"] == "InternalServerError"
        assert ep.stats().fault_count("internal_error") == 2


def test_reset_fault_is_a_closed_connection() -> None:
    with LocalEndpoint(buckets=[Bucket("bkt", 10)], faults=[Fault("reset", first=1)]) as ep:
        s3 = make_client(ep.url, "s3")
        with pytest.raises(botocore.exceptions.ConnectionClosedError):
            s3.list_objects_v2(Bucket="bkt")
        assert s3.list_objects_v2(Bucket="bkt")["KeyCount"] == 10
        assert ep.stats().fault_count("reset", "s3", "ListObjectsV2") == 1


def test_cut_body_fault() -> None:
    with LocalEndpoint(
        buckets=[Bucket("bkt", 3000)],
        tables=[Table("tbl", 500)],
        faults=[Fault("cut_body", first=2)],
    ) as ep:
        # botocore reads a short body without complaint; S3's answer then fails
        # to parse and becomes a 500, DynamoDB's fails its CRC32 check.
        with pytest.raises(botocore.exceptions.ClientError) as info:
            make_client(ep.url, "s3").list_objects_v2(Bucket="bkt")
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        with pytest.raises(botocore.exceptions.ChecksumError):
            make_client(ep.url, "dynamodb", retries={**NO_RETRY, "mode": "legacy"}).scan(
                TableName="tbl"
            )
        assert ep.stats().fault_count("cut_body") == 2


def test_slow_body_fault_delivers_the_whole_answer_late() -> None:
    with LocalEndpoint(
        buckets=[Bucket("bkt", 100)], faults=[Fault("slow_body", first=1, seconds=0.2)]
    ) as ep:
        s3 = make_client(ep.url, "s3")
        started = time.perf_counter()
        slow = s3.list_objects_v2(Bucket="bkt")
        elapsed = time.perf_counter() - started
        assert slow["KeyCount"] == 100
        assert elapsed >= 0.15
        fast = s3.list_objects_v2(Bucket="bkt")
        assert fast["Contents"] == slow["Contents"]


def test_repeated_token_fault_trips_the_boto3_paginator() -> None:
    with LocalEndpoint(buckets=[Bucket("bkt", 50)], faults=[Fault("repeat_token", first=1)]) as ep:
        s3 = make_client(ep.url, "s3")
        first = s3.list_objects_v2(Bucket="bkt", MaxKeys=10)
        token = first["NextContinuationToken"]
        second = s3.list_objects_v2(Bucket="bkt", MaxKeys=10, ContinuationToken=token)
        assert second["NextContinuationToken"] == token
        with LocalEndpoint(
            buckets=[Bucket("bkt", 50)], faults=[Fault("repeat_token", first=1)]
        ) as again:
            paginator = make_client(again.url, "s3").get_paginator("list_objects_v2")
            with pytest.raises(botocore.exceptions.PaginationError):
                list(paginator.paginate(Bucket="bkt", PaginationConfig={"PageSize": 10}))


@pytest.mark.parametrize(
    ("service", "call", "token_of"),
    [
        (
            "dynamodb",
            lambda c, t: c.scan(
                TableName="tbl", Limit=3, **({"ExclusiveStartKey": t} if t else {})
            ),
            lambda page: page.get("LastEvaluatedKey"),
        ),
        (
            "ec2",
            lambda c, t: c.describe_instances(MaxResults=5, **({"NextToken": t} if t else {})),
            lambda page: page.get("NextToken"),
        ),
        (
            "iam",
            lambda c, t: c.list_users(MaxItems=2, **({"Marker": t} if t else {})),
            lambda page: page.get("Marker"),
        ),
    ],
)
def test_repeated_token_fault_in_other_services(service: str, call: Any, token_of: Any) -> None:
    with LocalEndpoint(
        tables=[Table("tbl", 20)],
        ec2=Ec2Fleet(per_region=30, per_reservation=1),
        iam=IamUsers(10),
        faults=[Fault("repeat_token", service=service, first=1)],
    ) as ep:
        client = make_client(ep.url, service)
        token = token_of(call(client, None))
        assert token is not None
        assert token_of(call(client, token)) == token
        assert token_of(call(client, token)) != token


def test_random_faults_are_seeded() -> None:
    def pattern(seed: int) -> tuple[list[bool], int]:
        with LocalEndpoint(
            buckets=[Bucket("bkt", 5)],
            faults=[Fault("internal_error", probability=0.3)],
            seed=seed,
        ) as ep:
            s3 = make_client(ep.url, "s3")
            failed = []
            for _ in range(30):
                try:
                    s3.list_objects_v2(Bucket="bkt")
                    failed.append(False)
                except botocore.exceptions.ClientError:
                    failed.append(True)
            return failed, ep.stats().fault_count("internal_error")

    one, count = pattern(7)
    assert pattern(7) == (one, count)
    assert sum(one) == count
    assert 0 < count < 30
    assert pattern(8)[0] != one


def test_latency_model() -> None:
    with LocalEndpoint(
        buckets=[Bucket("bkt", 5)],
        latency=[LatencyModel(fixed=0.05, service="s3", operation="ListObjectsV2")],
    ) as ep:
        s3 = make_client(ep.url, "s3")
        s3.list_buckets()
        started = time.perf_counter()
        for _ in range(3):
            s3.list_objects_v2(Bucket="bkt")
        assert 0.15 <= time.perf_counter() - started < 0.45


def test_counters_keep_alive_and_reset(ep: LocalEndpoint) -> None:
    with LocalEndpoint(buckets=[Bucket("bkt", 5)], tables=[Table("tbl", 5)]) as own:
        s3 = make_client(own.url, "s3")
        for _ in range(10):
            s3.list_objects_v2(Bucket="bkt")
        s3.head_bucket(Bucket="bkt")
        with pytest.raises(botocore.exceptions.ClientError):
            s3.list_objects_v2(Bucket="nope")
        stats = own.stats()
        assert stats.count("s3", "ListObjectsV2") == 11
        assert stats.count("s3") == 12
        assert stats.errors == {("s3", "ListObjectsV2", 404): 1}
        assert stats.connections == 1, "botocore keeps its connection alive"
        assert stats.bytes_sent > 0
        assert stats.cpu_seconds > 0
        own.reset_stats()
        assert own.stats().count() == 0


def test_configure_swaps_policies_while_running() -> None:
    with LocalEndpoint(buckets=[Bucket("bkt", 5)]) as ep:
        s3 = make_client(ep.url, "s3")
        s3.list_objects_v2(Bucket="bkt")
        ep.configure(throttles=[Throttle("s3", first=1)])
        with pytest.raises(botocore.exceptions.ClientError):
            s3.list_objects_v2(Bucket="bkt")
        s3.list_objects_v2(Bucket="bkt")
        ep.configure(throttles=[])
        s3.list_objects_v2(Bucket="bkt")
        assert ep.stats().throttled_count() == 1


# -- running it -------------------------------------------------------------


@pytest.mark.anyio
async def test_async_context_manager_with_aiobotocore() -> None:
    from aiobotocore.session import get_session

    async with (
        LocalEndpoint(
            buckets=[Bucket("bkt", 2500)], throttles=[Throttle("s3", "ListObjectsV2", every=4)]
        ) as ep,
        get_session().create_client(
            "s3",
            region_name="us-east-1",
            endpoint_url=ep.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries=NO_RETRY),
        ) as s3,
    ):
        keys: list[str] = []
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket="bkt", PaginationConfig={"PageSize": 1000}):
            keys += [o["Key"] for o in page["Contents"]]
        assert len(keys) == 2500
        with pytest.raises(botocore.exceptions.ClientError) as info:
            await s3.list_objects_v2(Bucket="bkt")
        assert info.value.response["Error"]["Code"] == "SlowDown"


def test_spawned_endpoint_serves_counts_and_reconfigures() -> None:
    with spawn_endpoint(buckets=[Bucket("bkt", 1500, "deep")], iam=IamUsers(3)) as ep:
        s3 = make_client(ep.url, "s3")
        keys, _ = list_all(s3, Bucket="bkt")
        assert sum(map(len, keys)) == 1500
        assert ep.stats().count("s3", "ListObjectsV2") == 2
        ep.configure(
            throttles=[Throttle("iam", first=1)], faults=[Fault("reset", service="s3", first=1)]
        )
        with pytest.raises(botocore.exceptions.ClientError):
            make_client(ep.url, "iam").list_users()
        with pytest.raises(botocore.exceptions.ConnectionClosedError):
            s3.list_objects_v2(Bucket="bkt")
        stats = ep.stats()
        assert stats.throttled_count("iam") == 1
        assert stats.fault_count("reset") == 1
        ep.reset_stats()
        assert ep.stats().count() == 0
        process = ep.process
    assert process.poll() is not None


def test_command_line_prints_its_url_first() -> None:
    command = [
        sys.executable,
        "-m",
        "asyncpager.testing",
        "--port",
        "0",
        "--bucket",
        "cli-bucket:25:hot",
        "--exit-on-stdin-eof",
        "--no-uvloop",
    ]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().decode().strip()
        assert url.startswith("http://127.0.0.1:")
        page = make_client(url, "s3").list_objects_v2(Bucket="cli-bucket")
        assert page["KeyCount"] == 25
    finally:
        assert process.stdin is not None
        process.stdin.close()
        assert process.wait(timeout=10) == 0
        assert process.stdout is not None
        process.stdout.close()


def test_command_line_options_build_the_config() -> None:
    args = parse_args(
        [
            "--bucket", "logs:1000:deep:4",
            "--bucket", "new-logs:10:flat:0:0.5",
            "--table", "events:50:large",
            "--ec2", "us-east-1,eu-west-1:7",
            "--iam", "12",
            "--latency", "0.02:0.01",
            "--throttle", "s3:ListObjectsV2:100:50",
            "--throttle", "dynamodb:25",
            "--fault", "reset:0.01:s3",
        ]
    )  # fmt: skip
    config = build_config(args)
    assert config.buckets == (
        Bucket("logs", 1000, "deep", 4),
        Bucket("new-logs", 10, "flat", 0, checksums=0.5),
    )
    assert config.tables == (Table("events", 50, item_shape="large"),)
    assert config.ec2 == Ec2Fleet(("us-east-1", "eu-west-1"), 7)
    assert config.iam == IamUsers(12)
    assert config.latency == (LatencyModel(0.02, 0.01),)
    assert config.throttles == (
        Throttle("s3", "ListObjectsV2", rate=100.0, burst=50.0),
        Throttle("dynamodb", rate=25.0),
    )
    assert config.faults == (Fault("reset", service="s3", probability=0.01),)
    assert EndpointConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


@pytest.mark.parametrize(
    "make",
    [
        lambda: Bucket("Bad_Name", 1),
        lambda: Bucket("ok-name", -1),
        lambda: Bucket("ok-name", 1, "zigzag"),  # type: ignore[arg-type]
        lambda: Bucket("ok-name", 1, checksums=1.5),
        lambda: Bucket("ok-name", 1, checksums=-0.1),
        lambda: Bucket.of_keys("ok-name", ["x" * 1025]),
        lambda: Table("t", 1),
        lambda: Table("table", 10, items_per_partition=5),
        lambda: Throttle(service="sqs"),
        lambda: Fault("explode"),  # type: ignore[arg-type]
        lambda: Fault("reset", probability=2.0),
        lambda: EndpointConfig(buckets=(Bucket("same", 1), Bucket("same", 2))),
    ],
)
def test_specs_reject_bad_input(make: Any) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        make()


def test_public_names() -> None:
    assert sorted(testing.__all__) == testing.__all__
    for name in testing.__all__:
        assert getattr(testing, name) is not None


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--bucket", "b1:300"], "bucket 'b1:300': invalid S3 bucket name 'b1'"),
        (["--bucket", "bench"], "bucket 'bench': expected NAME:COUNT[:SHAPE[:SEED[:CHECKSUMS]]]"),
        (["--bucket", "bench:5:flat:0:2"], "bucket 'bench:5:flat:0:2': checksums is a share"),
        (["--bucket", "bench:many"], "bucket 'bench:many': invalid literal for int()"),
        (["--table", "t:10"], "table 't:10': invalid DynamoDB table name 't'"),
        (["--latency", "soon"], "latency 'soon': could not convert string to float"),
    ],
)
def test_bad_options_say_why_in_one_line(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert said in last


def test_a_bucket_asked_for_from_another_region_is_pointed_to_its_own(ep: LocalEndpoint) -> None:
    port = int(ep.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    # Unsigned: taken as us-east-1.
    conn.request("GET", "/eu-bucket?list-type=2")
    answer = conn.getresponse()
    body = answer.read().decode()
    conn.close()
    assert answer.status == 301
    assert answer.getheader("x-amz-bucket-region") == "eu-west-1"
    assert "<Code>PermanentRedirect</Code>" in body
    assert "<Endpoint>eu-bucket.s3.eu-west-1.amazonaws.com</Endpoint>" in body


def test_a_requester_pays_bucket_answers_only_those_who_pay() -> None:
    with LocalEndpoint(buckets=[Bucket("paid", 10, requester_pays=True)]) as endpoint:
        s3 = make_client(endpoint.url, "s3")
        with pytest.raises(botocore.exceptions.ClientError) as info:
            s3.list_objects_v2(Bucket="paid")
        assert info.value.response["Error"]["Code"] == "AccessDenied"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert s3.list_objects_v2(Bucket="paid", RequestPayer="requester")["KeyCount"] == 10


def test_the_commands_usage_names_the_command_it_was_run_as(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from asyncpager.cli import main as cli_main

    with pytest.raises(SystemExit) as exited:
        cli_main(["endpoint", "--table", "t:10"])
    assert exited.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("asyncpager endpoint: error: argument --table:")
    with pytest.raises(SystemExit):
        parse_args(["--table", "t:10"])
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .startswith("python -m asyncpager.testing: error:")
    )


def test_checksums_are_listed_on_the_share_of_objects_asked_for() -> None:
    # S3 lists the checksum it adds to every object written since 2025: a
    # bucket of new objects has one on each, an older bucket on some. The
    # rest of each object is the same whatever the share.
    buckets = [
        Bucket(f"share-{i}", 3_000, "deep", 7, checksums=s) for i, s in enumerate((0, 0.5, 1))
    ]
    with LocalEndpoint(buckets=buckets) as endpoint:
        s3 = make_client(endpoint.url, "s3")
        listings = [
            [
                o
                for p in s3.get_paginator("list_objects_v2").paginate(Bucket=b.name)
                for o in p["Contents"]
            ]
            for b in buckets
        ]
    none, half, every = listings
    assert not any("ChecksumAlgorithm" in o or "ChecksumType" in o for o in none)
    assert all(o["ChecksumAlgorithm"] in (["CRC64NVME"], ["CRC32C"], ["SHA256"]) for o in every)
    assert all(o["ChecksumType"] in ("FULL_OBJECT", "COMPOSITE") for o in every)
    usual = sum(o["ChecksumAlgorithm"] == ["CRC64NVME"] for o in every)
    assert 0.8 * len(every) < usual < len(every)
    with_one = sum("ChecksumAlgorithm" in o for o in half)
    assert 0.4 * len(half) < with_one < 0.6 * len(half)
    assert all(("ChecksumAlgorithm" in o) == ("ChecksumType" in o) for o in half)
    bare = [
        [{k: v for k, v in o.items() if not k.startswith("Checksum")} for o in listing]
        for listing in listings
    ]
    assert bare[0] == bare[1] == bare[2]
    assert len(bare[0]) == 3_000


def test_an_answer_for_a_client_gone_meanwhile_is_dropped_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A client that asks for several large pages at once, reads none and
    # hangs up: the server's transport is left closing with answers still
    # queued, and each later answer, sent when its latency is over, must be
    # dropped without an error (writelines raised TypeError in Python 3.12.1
    # and 3.13.0 on a closed transport, logged as "Exception in callback").
    latency = [LatencyModel(fixed=0.05, service="dynamodb", operation="Scan")]
    body = json.dumps({"TableName": "tbl"}).encode()
    request = (
        b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-amz-json-1.0\r\n"
        b"X-Amz-Target: DynamoDB_20120810.Scan\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with LocalEndpoint(tables=[Table("tbl", 20_000, item_shape="large")], latency=latency) as ep:
        host, port = ep.url.removeprefix("http://").rsplit(":", 1)
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect((host, int(port)))
        try:
            client.sendall(request * 8)
            time.sleep(0.3)  # answers pile up unread
            client.shutdown(socket.SHUT_WR)
            time.sleep(0.5)  # the rest come due on a closing transport
        finally:
            client.close()
        served = ep.stats().count("dynamodb", "Scan")
    assert served >= 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors[0].getMessage()
