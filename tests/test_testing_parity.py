"""The local endpoint answers like moto for the same data, through boto3 paginators."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from asyncpager.testing import Bucket, Ec2Fleet, IamUsers, LocalEndpoint, Table

# A newline is left out: moto's server cannot route a key holding %0A (the
# endpoint tests cover that key on our side).
KEYS = [
    "a",
    "a/",
    "a/b",
    "a/b/c",
    "a b/c d",
    "a+b/c",
    "a%2Fb",
    "100%.csv",
    "plus+sign",
    "space here",
    "tab\there",
    "cr\rreturn",
    "&<>\"'",
    "\u00e9t\u00e9/\u00e0",
    "\u00e9t\u00e9/b",
    "\uff71/x",
    "\U0001f600/y",
    "\U0001f600",
    "\u4e2d\u6587/\u6587\u4ef6",
    "z" * 1022 + "\u00e9",
    "foo+1/bar",
    "foo/bar/xyzzy",
    "quux ab/thud",
    "asdf+b",
    "x/y/z/1",
    "x/y/z/2",
    "x/y2",
]


def client(url: str, service: str, region: str = "us-east-1") -> Any:
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=url,
        config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}),
    )


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    return {"bucket": f"parity-{suffix}", "table": f"parity-{suffix}", "events": f"events-{suffix}"}


@pytest.fixture(scope="module")
def ours(names: dict[str, str]) -> Iterator[LocalEndpoint]:
    with LocalEndpoint(
        buckets=[Bucket.of_keys(names["bucket"], KEYS)],
        tables=[
            Table(names["table"], 120, seed=5),
            Table(
                names["events"],
                60,
                sort_key="sk",
                items_per_partition=12,
                partition_prefix="user#",
            ),
        ],
        ec2=Ec2Fleet(regions=("us-west-2",), per_region=7, per_reservation=1),
        iam=IamUsers(4),
    ) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def moto_bucket(moto_server: str, names: dict[str, str]) -> str:
    s3 = client(moto_server, "s3")
    s3.create_bucket(Bucket=names["bucket"])
    for key in KEYS:
        s3.put_object(Bucket=names["bucket"], Key=key, Body=b"x")
    return names["bucket"]


def pages(url: str, operation: str, **params: Any) -> list[tuple[list[str], list[str]]]:
    paginator = client(url, "s3").get_paginator(operation)
    return [
        (
            [o["Key"] for o in page.get("Contents", [])],
            [p["Prefix"] for p in page.get("CommonPrefixes", [])],
        )
        for page in paginator.paginate(**params)
    ]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"PaginationConfig": {"PageSize": 4}},
        {"Delimiter": "/"},
        {"Delimiter": "/", "PaginationConfig": {"PageSize": 3}},
        {"Prefix": "a", "Delimiter": "/"},
        {"Prefix": "x/", "Delimiter": "/", "PaginationConfig": {"PageSize": 1}},
        {"Prefix": "\u00e9t\u00e9/"},
        {"Delimiter": "+", "PaginationConfig": {"PageSize": 2}},
        {"Delimiter": " "},
        {"StartAfter": "a/b", "PaginationConfig": {"PageSize": 5}},
        {"StartAfter": "\uff71"},
        {"StartAfter": "a/b", "Delimiter": "/"},
        {"StartAfter": "b", "Delimiter": "/", "PaginationConfig": {"PageSize": 2}},
    ],
    ids=repr,
)
def test_list_objects_v2_matches_moto(
    ours: LocalEndpoint, moto_server: str, moto_bucket: str, params: dict[str, Any]
) -> None:
    expected = pages(moto_server, "list_objects_v2", Bucket=moto_bucket, **params)
    got = pages(ours.url, "list_objects_v2", Bucket=moto_bucket, **params)
    assert got == expected
    assert any(keys or prefixes for keys, prefixes in got)


@pytest.mark.parametrize(
    "params",
    [{}, {"Delimiter": "/"}, {"Prefix": "x/", "Delimiter": "/"}],
    ids=repr,
)
def test_list_objects_v1_matches_moto(
    ours: LocalEndpoint, moto_server: str, moto_bucket: str, params: dict[str, Any]
) -> None:
    def flat(url: str, operation: str) -> list[str]:
        listed = pages(url, operation, Bucket=moto_bucket, **params)
        return sorted(e for keys, prefixes in listed for e in keys + prefixes)

    # moto's ListObjects (v1) does not url-encode CommonPrefixes, so botocore
    # decodes "a+b/" into "a b/"; its v2 answer is the right reference.
    assert flat(ours.url, "list_objects") == flat(moto_server, "list_objects_v2")
    if "Delimiter" not in params:
        assert flat(ours.url, "list_objects") == flat(moto_server, "list_objects")


def test_object_fields_have_moto_types(
    ours: LocalEndpoint, moto_server: str, moto_bucket: str
) -> None:
    mine = client(ours.url, "s3").list_objects_v2(Bucket=moto_bucket, MaxKeys=3)
    theirs = client(moto_server, "s3").list_objects_v2(Bucket=moto_bucket, MaxKeys=3)
    assert set(theirs) - {"ResponseMetadata"} <= set(mine)
    ours_obj, moto_obj = mine["Contents"][0], theirs["Contents"][0]
    for field in ("Key", "LastModified", "ETag", "Size", "StorageClass"):
        assert type(ours_obj[field]) is type(moto_obj[field])
    assert (mine["KeyCount"], mine["IsTruncated"]) == (theirs["KeyCount"], theirs["IsTruncated"])


def item_id(item: dict[str, Any]) -> str:
    return json.dumps(item, sort_keys=True, default=lambda b: base64.b64encode(b).decode())


def scan(url: str, **params: Any) -> list[dict[str, Any]]:
    paginator = client(url, "dynamodb").get_paginator("scan")
    return [i for page in paginator.paginate(**params) for i in page["Items"]]


@pytest.fixture(scope="module")
def moto_tables(ours: LocalEndpoint, moto_server: str, names: dict[str, str]) -> dict[str, Any]:
    """moto tables holding exactly the items the local endpoint generates."""
    ddb = client(moto_server, "dynamodb")
    for name, sort_key in ((names["table"], None), (names["events"], "sk")):
        schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
        attributes = [{"AttributeName": "pk", "AttributeType": "S"}]
        if sort_key:
            schema.append({"AttributeName": sort_key, "KeyType": "RANGE"})
            attributes.append({"AttributeName": sort_key, "AttributeType": "S"})
        ddb.create_table(
            TableName=name,
            KeySchema=schema,
            AttributeDefinitions=attributes,
            BillingMode="PAY_PER_REQUEST",
        )
        items = scan(ours.url, TableName=name)
        for start in range(0, len(items), 25):
            batch = [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]
            ddb.batch_write_item(RequestItems={name: batch})
    return {"ddb": ddb}


@pytest.mark.usefixtures("moto_tables")
@pytest.mark.parametrize(
    "params",
    [{}, {"Limit": 7}, {"Segment": 1, "TotalSegments": 3}, {"Segment": 2, "TotalSegments": 3}],
    ids=repr,
)
def test_scan_matches_moto_as_a_set(
    ours: LocalEndpoint, moto_server: str, names: dict[str, str], params: dict[str, Any]
) -> None:
    mine = scan(ours.url, TableName=names["table"], **params)
    theirs = scan(moto_server, TableName=names["table"], **params)
    if "Segment" in params:
        # Both split the table into disjoint segments, by different hashes: the
        # union over every segment is what must agree.
        everything = {item_id(i) for i in scan(moto_server, TableName=names["table"])}
        assert {item_id(i) for i in mine} <= everything
        assert {item_id(i) for i in theirs} <= everything
        return
    assert len(mine) == 120
    assert {item_id(i) for i in mine} == {item_id(i) for i in theirs}


def test_segment_unions_match_moto(
    ours: LocalEndpoint, moto_server: str, names: dict[str, str], moto_tables: dict[str, Any]
) -> None:
    def union(url: str) -> list[str]:
        return [
            item_id(i)
            for s in range(4)
            for i in scan(url, TableName=names["table"], Segment=s, TotalSegments=4)
        ]

    mine, theirs = union(ours.url), union(moto_server)
    assert len(mine) == len(set(mine)) == len(theirs) == 120
    assert set(mine) == set(theirs)


@pytest.mark.usefixtures("moto_tables")
def test_query_matches_moto(ours: LocalEndpoint, moto_server: str, names: dict[str, str]) -> None:
    def query(url: str) -> list[dict[str, Any]]:
        paginator = client(url, "dynamodb").get_paginator("query")
        return [
            i
            for page in paginator.paginate(
                TableName=names["events"],
                KeyConditionExpression="#k = :v",
                ExpressionAttributeNames={"#k": "pk"},
                ExpressionAttributeValues={":v": {"S": "user#00000002"}},
                Limit=5,
            )
            for i in page["Items"]
        ]

    mine, theirs = query(ours.url), query(moto_server)
    assert len(mine) == 12
    assert mine == theirs  # one partition comes back in sort key order from both


@pytest.mark.usefixtures("moto_tables")
def test_describe_table_shape_matches_moto(
    ours: LocalEndpoint, moto_server: str, names: dict[str, str]
) -> None:
    mine = client(ours.url, "dynamodb").describe_table(TableName=names["events"])["Table"]
    theirs = client(moto_server, "dynamodb").describe_table(TableName=names["events"])["Table"]
    for field in ("TableName", "KeySchema", "TableStatus", "ItemCount"):
        assert mine[field] == theirs[field]
    assert {d["AttributeName"] for d in mine["AttributeDefinitions"]} == {
        d["AttributeName"] for d in theirs["AttributeDefinitions"]
    }


def shape(value: Any) -> Any:
    """The types of a botocore answer, keys kept, leaves replaced by their type name."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def same_types(mine: dict[str, Any], theirs: dict[str, Any], fields: list[str]) -> None:
    for field in fields:
        assert field in mine, field
        assert field in theirs, field
        if isinstance(mine[field], dict):
            same_types(mine[field], theirs[field], sorted(set(mine[field]) & set(theirs[field])))
        elif isinstance(mine[field], list) and not (mine[field] and theirs[field]):
            continue  # an empty list on either side tells nothing about types
        else:
            assert shape(mine[field]) == shape(theirs[field]), field


def test_ec2_instances_look_like_moto(ours: LocalEndpoint, moto_server: str) -> None:
    region = "us-west-2"
    moto_ec2 = client(moto_server, "ec2", region)
    image = "ami-12c6146b"  # moto does not check images; listing them is slow
    moto_ec2.run_instances(
        ImageId=image,
        MinCount=7,
        MaxCount=7,
        InstanceType="t3.micro",
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "parity"}]}
        ],
    )

    def walk(url: str) -> list[dict[str, Any]]:
        paginator = client(url, "ec2", region).get_paginator("describe_instances")
        return [
            r
            for page in paginator.paginate(PaginationConfig={"PageSize": 5})
            for r in page["Reservations"]
        ]

    mine, theirs = walk(ours.url), walk(moto_server)
    assert len(mine) == 7
    assert sum(len(r["Instances"]) for r in theirs) >= 7
    same_types(mine[0], theirs[0], ["ReservationId", "OwnerId"])
    same_types(
        mine[0]["Instances"][0],
        theirs[0]["Instances"][0],
        [
            "InstanceId",
            "ImageId",
            "State",
            "InstanceType",
            "LaunchTime",
            "Placement",
            "PrivateIpAddress",
            "PrivateDnsName",
            "SubnetId",
            "VpcId",
            "Tags",
            "Architecture",
            "SecurityGroups",
        ],
    )
    regions = client(ours.url, "ec2", region).describe_regions()["Regions"]
    moto_regions = client(moto_server, "ec2", region).describe_regions()["Regions"]
    assert set(regions[0]) <= set(moto_regions[0]) | {"OptInStatus"}


def test_iam_users_look_like_moto(ours: LocalEndpoint, moto_server: str) -> None:
    moto_iam = client(moto_server, "iam")
    moto_iam.create_user(UserName=f"parity-{uuid.uuid4().hex[:8]}")
    mine = client(ours.url, "iam").list_users()
    theirs = moto_iam.list_users()
    assert len(mine["Users"]) == 4
    assert mine["IsTruncated"] is False
    assert theirs["IsTruncated"] is False
    fields = ["UserName", "UserId", "Arn", "Path", "CreateDate"]
    same_types(mine["Users"][0], theirs["Users"][0], fields)
    assert set(mine["Users"][0]) <= set(theirs["Users"][0]) | {"PasswordLastUsed"}
