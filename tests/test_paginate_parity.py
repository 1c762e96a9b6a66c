"""asyncpager.paginate against boto3's paginator, on the same moto server.

Same pages, same items in the same order, same resume tokens; tokens cross
between the two both ways.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import asyncpager
from asyncpager.pages import paginate
from tests.conftest import put_s3_keys

pytestmark = pytest.mark.anyio

AWKWARD_KEYS = [
    "plain.txt",
    "with space.txt",
    "plus+sign",
    "percent%20literal",
    "100%",
    "new\nline",
    "tab\tkey",
    "unicodé/ключ/鍵.bin",
    "emoji/🙂.png",
    "a" * 1024,
    "deep/a/b/c/d/e",
    "deep/a/b/z",
    "Zebra",
    "zebra",
    "~tilde",
    "quote'\"",
    "amp&lt;",
    "<xml>",
    "semi;colon",
    "back\\slash",
    *[f"many/{i:03d}" for i in range(23)],
]


def diff(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str:
    if len(a) != len(b):
        return f"{len(a)} pages against {len(b)}"
    for x, y in zip(a, b, strict=True):
        keys = {k for k in x.keys() | y.keys() if x.get(k) != y.get(k)}
        if keys:
            return f"{ {k: x.get(k) for k in keys} } against { {k: y.get(k) for k in keys} }"
    return "equal"


def drop_none(page: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in page.items() if v is not None}


def strip(page: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in page.items() if k != "ResponseMetadata"}


async def both(
    sync_client: Any, aio_client: Any, method: str, params: dict[str, Any], config: dict[str, Any]
) -> tuple[list[dict[str, Any]], Any, list[dict[str, Any]], Any]:
    iterator = sync_client.get_paginator(method).paginate(**params, PaginationConfig=dict(config))
    theirs = [strip(p) for p in iterator]
    stream = paginate(aio_client, method, PaginationConfig=dict(config), **params)
    ours = [strip(p) async for p in stream]
    return theirs, iterator.resume_token, ours, stream.resume_token


async def check_parity(
    sync_client: Any, aio_client: Any, method: str, params: dict[str, Any], config: dict[str, Any]
) -> list[dict[str, Any]]:
    theirs, their_token, ours, our_token = await both(
        sync_client, aio_client, method, params, config
    )
    assert ours == theirs
    assert our_token == their_token
    return ours


async def check_tokens_cross(
    sync_client: Any, aio_client: Any, method: str, params: dict[str, Any], page_size: int
) -> None:
    """A per-page token from asyncpager resumes boto3, and boto3's resumes ours."""
    config = {"PageSize": page_size}
    stream = paginate(aio_client, method, PaginationConfig=config, **params)
    pages: list[dict[str, Any]] = []
    tokens: list[str | None] = []
    async for page in stream:
        pages.append(strip(page))
        tokens.append(stream.resume_token)
    assert len(pages) >= 3, "the data set must span several pages"
    assert tokens[-1] is None
    for i, token in enumerate(tokens[:-1]):
        rest = sync_client.get_paginator(method).paginate(
            **params, PaginationConfig={"PageSize": page_size, "StartingToken": token}
        )
        # A resumed first page carries the secondary result keys botocore
        # blanks (``CommonPrefixes: None``); the uninterrupted page lacks them.
        got = [drop_none(strip(p)) for p in rest]
        want = [drop_none(p) for p in pages[i + 1 :]]
        assert got == want, diff(got, want)
    # boto3 -> asyncpager, from a cut inside a page (boto_truncate_amount).
    cut = sync_client.get_paginator(method).paginate(
        **params, PaginationConfig={"PageSize": page_size, "MaxItems": page_size + 2}
    )
    list(cut)
    assert cut.resume_token is not None
    their_rest = [
        strip(p)
        for p in sync_client.get_paginator(method).paginate(
            **params, PaginationConfig={"PageSize": page_size, "StartingToken": cut.resume_token}
        )
    ]
    our_rest = [
        strip(p)
        async for p in paginate(
            aio_client,
            method,
            PaginationConfig={"PageSize": page_size, "StartingToken": cut.resume_token},
            **params,
        )
    ]
    assert our_rest == their_rest


CONFIGS = [
    {},
    {"PageSize": 7},
    {"PageSize": 7, "MaxItems": 7},
    {"PageSize": 7, "MaxItems": 10},
    {"PageSize": 5, "MaxItems": 1},
    {"PageSize": 5, "MaxItems": 0},
    {"MaxItems": 12},
]


@pytest.fixture(scope="module")
def awkward_bucket(moto_server: str) -> str:
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_server)
    name = f"parity-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    put_s3_keys(s3, name, AWKWARD_KEYS)
    return name


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("encoding", [None, "url"])
async def test_s3_list_objects_v2_parity(
    boto3_client: Any, aio_client: Any, awkward_bucket: str, config: dict[str, Any], encoding: Any
) -> None:
    params: dict[str, Any] = {"Bucket": awkward_bucket}
    if encoding:
        params["EncodingType"] = encoding
    pages = await check_parity(
        boto3_client("s3"), await aio_client("s3"), "list_objects_v2", params, config
    )
    keys = [obj["Key"] for page in pages for obj in page.get("Contents", [])]
    if not config.get("MaxItems") and config.get("MaxItems") != 0 and encoding is None:
        assert sorted(keys, key=lambda k: k.encode()) == sorted(
            AWKWARD_KEYS, key=lambda k: k.encode()
        )


async def test_s3_tokens_cross(boto3_client: Any, aio_client: Any, awkward_bucket: str) -> None:
    await check_tokens_cross(
        boto3_client("s3"), await aio_client("s3"), "list_objects_v2", {"Bucket": awkward_bucket}, 8
    )


async def test_s3_delimiter_parity(boto3_client: Any, aio_client: Any, awkward_bucket: str) -> None:
    params = {"Bucket": awkward_bucket, "Delimiter": "/"}
    pages = await check_parity(
        boto3_client("s3"), await aio_client("s3"), "list_objects_v2", params, {"PageSize": 3}
    )
    prefixes = [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]
    assert "many/" in prefixes
    assert "deep/" in prefixes


@pytest.fixture(scope="module")
def dynamodb_table(moto_server: str) -> str:
    import boto3

    ddb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=moto_server)
    name = f"parity-{uuid.uuid4().hex[:12]}"
    ddb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for i in range(36):
        ddb.put_item(
            TableName=name,
            Item={
                "pk": {"S": f"user#{i % 3}"},
                "sk": {"N": str(i)},
                "n": {"N": "12345678901234567890.123456789"},
                "b": {"B": bytes([i, 0, 255])},
                "ss": {"SS": ["x", f"y{i}"]},
                "m": {"M": {"nested": {"L": [{"S": "é"}, {"NULL": True}, {"BOOL": True}]}}},
            },
        )
    return name


@pytest.mark.parametrize("config", CONFIGS)
async def test_dynamodb_scan_parity(
    boto3_client: Any, aio_client: Any, dynamodb_table: str, config: dict[str, Any]
) -> None:
    await check_parity(
        boto3_client("dynamodb"),
        await aio_client("dynamodb"),
        "scan",
        {"TableName": dynamodb_table},
        config,
    )


@pytest.mark.parametrize("config", CONFIGS)
async def test_dynamodb_query_parity(
    boto3_client: Any, aio_client: Any, dynamodb_table: str, config: dict[str, Any]
) -> None:
    params = {
        "TableName": dynamodb_table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": "user#1"}},
    }
    pages = await check_parity(
        boto3_client("dynamodb"), await aio_client("dynamodb"), "query", params, config
    )
    if not config:
        assert sum(p["Count"] for p in pages) == 12


async def test_dynamodb_tokens_cross(
    boto3_client: Any, aio_client: Any, dynamodb_table: str
) -> None:
    await check_tokens_cross(
        boto3_client("dynamodb"),
        await aio_client("dynamodb"),
        "scan",
        {"TableName": dynamodb_table},
        7,
    )


@pytest.fixture(scope="module")
def ec2_region(moto_server: str) -> str:
    import boto3

    region = "eu-west-3"
    ec2 = boto3.client("ec2", region_name=region, endpoint_url=moto_server)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    for count in (1, 2, 3, 1, 2, 1, 3, 2, 1, 1, 2, 1):
        ec2.run_instances(ImageId=image, MinCount=count, MaxCount=count)
    return region


@pytest.mark.parametrize(
    "config",
    [{}, {"PageSize": 5}, {"PageSize": 5, "MaxItems": 7}, {"PageSize": 5, "MaxItems": 5}],
)
async def test_ec2_describe_instances_parity(
    boto3_client: Any, aio_client: Any, ec2_region: str, config: dict[str, Any]
) -> None:
    await check_parity(
        boto3_client("ec2", ec2_region),
        await aio_client("ec2", ec2_region),
        "describe_instances",
        {},
        config,
    )


async def test_ec2_tokens_cross(boto3_client: Any, aio_client: Any, ec2_region: str) -> None:
    await check_tokens_cross(
        boto3_client("ec2", ec2_region),
        await aio_client("ec2", ec2_region),
        "describe_instances",
        {},
        5,
    )


@pytest.fixture(scope="module")
def log_groups(moto_server: str) -> str:
    import boto3

    logs = boto3.client("logs", region_name="us-east-1", endpoint_url=moto_server)
    prefix = f"/parity/{uuid.uuid4().hex[:8]}/"
    for i in range(23):
        logs.create_log_group(logGroupName=f"{prefix}{i:02d}")
    return prefix


@pytest.mark.parametrize("config", CONFIGS)
async def test_logs_describe_log_groups_parity(
    boto3_client: Any, aio_client: Any, log_groups: str, config: dict[str, Any]
) -> None:
    await check_parity(
        boto3_client("logs"),
        await aio_client("logs"),
        "describe_log_groups",
        {"logGroupNamePrefix": log_groups},
        config,
    )


async def test_logs_tokens_cross(boto3_client: Any, aio_client: Any, log_groups: str) -> None:
    await check_tokens_cross(
        boto3_client("logs"),
        await aio_client("logs"),
        "describe_log_groups",
        {"logGroupNamePrefix": log_groups},
        6,
    )


async def test_build_full_result_and_search_parity(
    boto3_client: Any, aio_client: Any, dynamodb_table: str
) -> None:
    sync = boto3_client("dynamodb")
    aio = await aio_client("dynamodb")
    for config in ({"PageSize": 7}, {"PageSize": 7, "MaxItems": 9}):
        theirs = sync.get_paginator("scan").paginate(
            TableName=dynamodb_table, PaginationConfig=dict(config)
        )
        ours = paginate(aio, "scan", TableName=dynamodb_table, PaginationConfig=dict(config))
        full_theirs = theirs.build_full_result()
        full_ours = await ours.build_full_result()
        assert full_ours == full_theirs
    expression = "Items[].sk.N"
    theirs_search = list(
        sync.get_paginator("scan")
        .paginate(TableName=dynamodb_table, PaginationConfig={"PageSize": 5})
        .search(expression)
    )
    ours_search = [
        x
        async for x in paginate(
            aio, "scan", TableName=dynamodb_table, PaginationConfig={"PageSize": 5}
        ).search(expression)
    ]
    assert ours_search == theirs_search
    assert len(ours_search) == 36
    # A non-list result is yielded as it is, once per page (boto3 does the same).
    counts = [
        x
        async for x in paginate(
            aio, "scan", TableName=dynamodb_table, PaginationConfig={"PageSize": 10}
        ).search("Count")
    ]
    assert counts == [10, 10, 10, 6]


async def test_items_flatten_primary_result_key(
    aio_client: Any, boto3_client: Any, awkward_bucket: str
) -> None:
    aio = await aio_client("s3")
    keys = [
        obj["Key"]
        async for obj in paginate(
            aio, "ListObjectsV2", Bucket=awkward_bucket, PaginationConfig={"PageSize": 9}
        ).items()
    ]
    theirs = [
        obj["Key"]
        for page in boto3_client("s3")
        .get_paginator("list_objects_v2")
        .paginate(Bucket=awkward_bucket)
        for obj in page["Contents"]
    ]
    assert keys == theirs


async def test_bad_input_is_configuration_error(aio_client: Any) -> None:
    s3 = await aio_client("s3")
    with pytest.raises(asyncpager.ConfigurationError, match="not pageable"):
        paginate(s3, "get_object", Bucket="b")
    with pytest.raises(asyncpager.ConfigurationError, match="no operation"):
        paginate(s3, "list_everything", Bucket="b")
    with pytest.raises(asyncpager.ConfigurationError, match="PaginationConfig"):
        paginate(s3, "list_objects_v2", Bucket="b", PaginationConfig={"Size": 3})
    with pytest.raises(asyncpager.ConfigurationError, match="StartingToken"):
        paginate(
            s3,
            "list_objects_v2",
            Bucket="b",
            PaginationConfig={"StartingToken": "eyJNYXJrZXIiOiAieCJ9"},  # {"Marker": "x"}
        )
    with pytest.raises(asyncpager.ConfigurationError, match="JMESPath"):
        paginate(s3, "list_objects_v2", Bucket="b").search("Contents[")


async def test_not_found_maps_to_our_tree(aio_client: Any) -> None:
    s3 = await aio_client("s3")
    stream = paginate(s3, "list_objects_v2", Bucket=f"missing-{uuid.uuid4().hex[:8]}")
    with pytest.raises(asyncpager.NotFoundError) as info:
        await stream.__anext__()
    assert info.value.operation == "ListObjectsV2"
    assert info.value.code == "NoSuchBucket"
    assert "ListObjectsV2" in str(info.value)
