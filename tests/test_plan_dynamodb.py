"""The DynamoDB planner against moto: segments, Query fan-out, capacity budget."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

import asyncpager
from asyncpager.engine import Fetcher
from asyncpager.errors import ConfigurationError, NotFoundError
from asyncpager.plan.dynamodb import (
    MAX_SEGMENTS,
    PAGE_BYTES,
    READ_UNITS,
    SEGMENT_BYTES,
    ScanPlan,
    choose_segments,
    iter_items,
    key_value,
    plan_query,
    plan_scan,
    query_streams,
    scan_streams,
)
from asyncpager.streams import Stream

pytestmark = pytest.mark.anyio

REGION = "us-east-1"
PARTITIONS = 20
ITEMS = 200


def item_for(i: int) -> dict[str, Any]:
    """An item of varied attribute types; the key attribute is a reserved word."""
    item: dict[str, Any] = {
        "name": {"S": f"p{i % PARTITIONS:02d}"},
        "n": {"N": str(i)},
        "text": {"S": f"value {i} ü ✓ %+ {'x' * (i % 13)}"},
        "price": {"N": str(Decimal(i) / 7)[:12]},
        "flag": {"BOOL": i % 2 == 0},
        "blob": {"B": bytes([i % 256]) * (i % 5 + 1)},
    }
    if i % 3 == 0:
        item["tags"] = {"SS": [f"t{i % 4}", f"u{i % 5}"]}
        item["nums"] = {"NS": [str(i), str(i + 1)]}
    if i % 4 == 0:
        item["nested"] = {"M": {"a": {"L": [{"N": "1"}, {"S": "b"}, {"NULL": True}]}}}
    if i % 2 == 1:
        item["grp"] = {"S": f"g{i % 3}"}
    return item


@pytest.fixture(scope="module")
def table(moto_server: str) -> str:
    """A 200-item table: 20 partitions of 10 sorted items, and a sparse GSI."""
    import boto3

    ddb = boto3.client("dynamodb", region_name=REGION, endpoint_url=moto_server)
    name = f"plan-ddb-{uuid.uuid4().hex[:8]}"
    ddb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "name", "KeyType": "HASH"},
            {"AttributeName": "n", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "name", "AttributeType": "S"},
            {"AttributeName": "n", "AttributeType": "N"},
            {"AttributeName": "grp", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-grp",
                "KeySchema": [{"AttributeName": "grp", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    for start in range(0, ITEMS, 25):
        ddb.batch_write_item(
            RequestItems={
                name: [{"PutRequest": {"Item": item_for(i)}} for i in range(start, start + 25)]
            }
        )
    return name


def canon(item: dict[str, Any]) -> str:
    """An item as a comparable string (bytes and sets made stable)."""

    def norm(value: Any) -> Any:
        if isinstance(value, bytes | bytearray):
            return {"__bytes__": bytes(value).hex()}
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        if isinstance(value, list):
            return [norm(v) for v in value]
        return value

    return json.dumps(norm(item), sort_keys=True)


def boto3_pages(moto_server: str, operation: str, **params: Any) -> list[dict[str, Any]]:
    import boto3

    ddb = boto3.client("dynamodb", region_name=REGION, endpoint_url=moto_server)
    return list(ddb.get_paginator(operation).paginate(**params))


def boto3_items(moto_server: str, operation: str, **params: Any) -> list[str]:
    return [canon(i) for p in boto3_pages(moto_server, operation, **params) for i in p["Items"]]


async def run_items(streams: list[Stream], concurrency: int = 8) -> list[str]:
    seen: list[str] = []
    async with Fetcher(concurrency=concurrency) as fetcher:
        async for _stream, page in fetcher.pages(streams):
            seen += [canon(i) for i in iter_items(page)]
    return seen


# -- parallel scan -----------------------------------------------------------


@pytest.mark.parametrize("segments", [1, 3, 16, 100])
async def test_segments_together_equal_one_full_scan(
    moto_server: str, table: str, segments: int
) -> None:
    plan = await plan_scan(
        table, segments=segments, region=REGION, endpoint_url=moto_server, page_size=7
    )
    assert isinstance(plan, ScanPlan)
    assert plan.segments == segments
    assert plan.item_count == ITEMS
    assert [s.params["Segment"] for s in plan.streams] == list(range(segments))
    assert {s.params["TotalSegments"] for s in plan.streams} == {segments}
    assert all(s.operation == "Scan" and s.page_size == 7 for s in plan.streams)
    seen = await run_items(plan.streams, concurrency=16)
    assert len(seen) == len(set(seen)) == ITEMS, "an item missing or twice"
    assert set(seen) == set(boto3_items(moto_server, "scan", TableName=table))


async def test_scan_parameters_pass_through(moto_server: str, table: str) -> None:
    params: dict[str, Any] = {
        "FilterExpression": "(#f = :yes AND n > :low) OR attribute_exists(tags)",
        "ProjectionExpression": "#k, n, #f, tags, nested.a",
        "ExpressionAttributeNames": {"#f": "flag", "#k": "name"},
        "ExpressionAttributeValues": {":yes": {"BOOL": True}, ":low": {"N": "120"}},
        "ConsistentRead": True,
    }
    plan = await plan_scan(
        table, segments=5, region=REGION, endpoint_url=moto_server, params=params, page_size=9
    )
    for stream in plan.streams:
        assert {k: stream.params[k] for k in params} == params
    seen = await run_items(plan.streams)
    expected = boto3_items(moto_server, "scan", TableName=table, **params)
    assert 0 < len(expected) < ITEMS, "the filter should keep some items, not all"
    assert sorted(seen) == sorted(expected)


async def test_select_count_and_index_pass_through(moto_server: str, table: str) -> None:
    counted = await plan_scan(
        table,
        segments=4,
        region=REGION,
        endpoint_url=moto_server,
        params={"Select": "COUNT", "FilterExpression": "attribute_exists(tags)"},
    )
    total = 0
    async with Fetcher(concurrency=4) as fetcher:
        async for _stream, page in fetcher.pages(counted.streams):
            assert list(iter_items(page)) == []
            total += page["Count"]
    expected = boto3_pages(
        moto_server, "scan", TableName=table, FilterExpression="attribute_exists(tags)"
    )
    assert total == sum(p["Count"] for p in expected) == len(range(0, ITEMS, 3))

    index = await plan_scan(
        table,
        segments=6,
        region=REGION,
        endpoint_url=moto_server,
        params={"IndexName": "by-grp", "Limit": 4},
    )
    assert all(s.page_size == 4 and "Limit" not in s.params for s in index.streams)
    seen = await run_items(index.streams)
    assert len(seen) == len(set(seen)) == ITEMS // 2
    assert set(seen) == set(boto3_items(moto_server, "scan", TableName=table, IndexName="by-grp"))


async def test_automatic_segments_from_describe_table(moto_server: str, table: str) -> None:
    # moto reports TableSizeBytes=0, so the page size is what sizes the scan:
    # 200 items / 10 per page = 20 pages, more than 8 slots: 8 segments.
    plan = await plan_scan(
        table, concurrency=8, page_size=10, region=REGION, endpoint_url=moto_server
    )
    assert plan.item_count == ITEMS
    assert plan.segments == len(plan.streams) == 8
    seen = await run_items(plan.streams)
    assert len(seen) == len(set(seen)) == ITEMS
    # Without a page size a 0-byte table fits one page: one segment.
    small = await plan_scan(table, concurrency=8, region=REGION, endpoint_url=moto_server)
    assert small.segments == 1


def test_choose_segments_rule() -> None:
    gib = SEGMENT_BYTES
    assert choose_segments(0, 0, concurrency=32) == 32  # stats not yet known
    assert choose_segments(500, 3) == 1  # one page
    assert choose_segments(PAGE_BYTES, 1000) == 1
    assert choose_segments(10 * PAGE_BYTES, 10_000, concurrency=64) == 10  # pages cap it
    assert choose_segments(100 * PAGE_BYTES, 10**5, concurrency=64) == 64  # keep slots busy
    assert choose_segments(100 * gib, 10**9, concurrency=64) == 100  # one per GiB
    assert choose_segments(3 * gib, 10**7, concurrency=64) == 64
    assert choose_segments(2 * MAX_SEGMENTS * gib, 10**12) == MAX_SEGMENTS
    # A small page size makes a small table worth splitting.
    assert choose_segments(50_000, 200, concurrency=8, page_size=10) == 8
    assert choose_segments(50_000, 200, concurrency=64, page_size=10) == 20
    with pytest.raises(ConfigurationError):
        choose_segments(1, 1, concurrency=0)


@pytest.mark.parametrize("bad", [0, -1, MAX_SEGMENTS + 1, 2.5, True, "3", None])
async def test_bad_segments_are_a_configuration_error(bad: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        scan_streams("t", bad, region=REGION)
    assert str(info.value) == f"segments must be an integer from 1 to 1000000, got {bad!r}"
    if bad is not None:
        # Checked before any call: the table does not exist, no endpoint answers.
        with pytest.raises(ConfigurationError, match="segments must be an integer"):
            await plan_scan(
                "no-such-table", segments=bad, region=REGION, endpoint_url="http://127.0.0.1:9"
            )


@pytest.mark.parametrize(
    ("params", "page_size", "budget", "message"),
    [
        ({"Segment": 1}, None, None, "Segment is set by the planner"),
        ({"TotalSegments": 4}, None, None, "TotalSegments is set by the planner"),
        ({"ExclusiveStartKey": {"name": {"S": "a"}}}, None, None, "ExclusiveStartKey"),
        ({"TableName": "other"}, None, None, "TableName is set by the planner"),
        ({"Limit": 5}, 5, None, "give the page size once"),
        ({}, 0, None, "page_size must be an integer"),
        ({"ReturnConsumedCapacity": "NONE"}, None, 10.0, "max_read_units needs"),
        ({}, None, 0, "max_read_units must be a number > 0"),
    ],
)
async def test_bad_scan_parameters(
    params: dict[str, Any], page_size: int | None, budget: float | None, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        await plan_scan(
            "no-such-table",
            segments=2,
            region=REGION,
            params=params,
            page_size=page_size,
            max_read_units=budget,
            endpoint_url="http://127.0.0.1:9",
        )


async def test_missing_table_and_describe_off(moto_server: str) -> None:
    with pytest.raises(NotFoundError):
        await plan_scan("no-such-table", region=REGION, endpoint_url=moto_server)
    with pytest.raises(ConfigurationError, match="needs segments="):
        await plan_scan("no-such-table", region=REGION, describe=False)
    plan = await plan_scan("no-such-table", segments=3, region=REGION, describe=False)
    assert plan.item_count is None
    assert len(plan.streams) == 3


async def test_describe_through_a_client_or_a_fetcher(
    moto_server: str, table: str, aio_client: Any
) -> None:
    client = await aio_client("dynamodb", REGION)
    by_client = await plan_scan(table, client=client, segments=2)
    assert by_client.region == REGION  # taken from the client
    assert by_client.item_count == ITEMS
    async with Fetcher(concurrency=4) as fetcher:
        plan = await plan_scan(
            table, fetcher=fetcher, region=REGION, endpoint_url=moto_server, segments=3
        )
        assert plan.item_count == ITEMS
        seen = [canon(i) async for _s, p in fetcher.pages(plan.streams) for i in iter_items(p)]
    assert len(seen) == len(set(seen)) == ITEMS


# -- query fan-out -----------------------------------------------------------


async def test_query_fan_out_equals_per_key_queries(moto_server: str, table: str) -> None:
    keys = ["p00", "p03", "p07", "p19", "p03", "p-none"]
    plan = await plan_query(table, keys, region=REGION, endpoint_url=moto_server, page_size=3)
    assert len(plan.streams) == 5  # the repeated key is queried once
    for stream in plan.streams:
        # The key attribute is named "name", a reserved word: only placeholders work.
        assert stream.params["KeyConditionExpression"] == "#pk = :pk"
        assert stream.params["ExpressionAttributeNames"] == {"#pk": "name"}
    by_key: dict[str, list[str]] = {}
    async with Fetcher(concurrency=4) as fetcher:
        async for stream, page in fetcher.pages(plan.streams):
            key = stream.labels["key"]["S"]
            by_key.setdefault(key, []).extend(canon(i) for i in iter_items(page))
    for key in dict.fromkeys(keys):
        expected = boto3_items(
            moto_server,
            "query",
            TableName=table,
            KeyConditionExpression="#k = :v",
            ExpressionAttributeNames={"#k": "name"},
            ExpressionAttributeValues={":v": {"S": key}},
        )
        # Each key's pages arrive in order: a Query stream is sequential.
        assert by_key.get(key, []) == expected
    assert sum(len(v) for v in by_key.values()) == 4 * (ITEMS // PARTITIONS)


async def test_query_with_own_key_condition_and_index(moto_server: str, table: str) -> None:
    params: dict[str, Any] = {
        "ExpressionAttributeNames": {"#k": "name", "#b": "blob"},
        "ExpressionAttributeValues": {":lo": {"N": "40"}, ":hi": {"N": "150"}, ":two": {"N": "2"}},
        "FilterExpression": "size(#b) > :two",
    }
    plan = await plan_query(
        table,
        ["p01", "p02"],
        key_condition="#k = :pk AND n BETWEEN :lo AND :hi",
        region=REGION,
        endpoint_url=moto_server,
        params=params,
        page_size=2,
    )
    seen = await run_items(plan.streams)
    expected: list[str] = []
    for key in ["p01", "p02"]:
        expected += boto3_items(
            moto_server,
            "query",
            TableName=table,
            KeyConditionExpression="#k = :pk AND n BETWEEN :lo AND :hi",
            ExpressionAttributeNames=params["ExpressionAttributeNames"],
            ExpressionAttributeValues={**params["ExpressionAttributeValues"], ":pk": {"S": key}},
            FilterExpression=params["FilterExpression"],
        )
    # n in 40..150 is 6 items per partition; the filter keeps some of them.
    assert 0 < len(expected) < 2 * 6
    assert sorted(seen) == sorted(expected)

    # On an index the partition key comes from the index's key schema.
    grouped = await plan_query(
        table, ["g0", "g2"], index_name="by-grp", region=REGION, endpoint_url=moto_server
    )
    assert grouped.streams[0].params["ExpressionAttributeNames"] == {"#pk": "grp"}
    seen = await run_items(grouped.streams)
    expected = [
        i
        for key in ["g0", "g2"]
        for i in boto3_items(
            moto_server,
            "query",
            TableName=table,
            IndexName="by-grp",
            KeyConditionExpression="grp = :v",
            ExpressionAttributeValues={":v": {"S": key}},
        )
    ]
    assert len(seen) == len(set(seen)) == len(expected) > 0
    assert set(seen) == set(expected)


def test_query_streams_checks_its_input() -> None:
    assert key_value("a") == {"S": "a"}
    assert key_value(7) == {"N": "7"}
    assert key_value(Decimal("1.50")) == {"N": "1.50"}
    assert key_value(b"\x00") == {"B": b"\x00"}
    assert key_value({"N": "3"}) == {"N": "3"}
    for bad in [True, None, float("nan"), {"BOOL": True}, ["a"]]:
        with pytest.raises(ConfigurationError):
            key_value(bad)
    with pytest.raises(ConfigurationError, match="exactly one of"):
        query_streams("t", ["a"], region=REGION)
    with pytest.raises(ConfigurationError, match="must use :pk"):
        query_streams("t", ["a"], key_condition="#k = :key", region=REGION)
    with pytest.raises(ConfigurationError, match="must not define :pk"):
        query_streams(
            "t", ["a"], key_name="k", params={"ExpressionAttributeValues": {":pk": {"S": "x"}}}
        )
    with pytest.raises(ConfigurationError, match="already uses #pk"):
        query_streams("t", ["a"], key_name="k", params={"ExpressionAttributeNames": {"#pk": "x"}})
    with pytest.raises(ConfigurationError, match="at least one"):
        query_streams("t", [], key_name="k")
    with pytest.raises(ConfigurationError, match="KeyConditionExpression is set by the planner"):
        query_streams("t", ["a"], key_name="k", params={"KeyConditionExpression": "x"})


# -- capacity budget ---------------------------------------------------------


async def test_read_budget_holds_on_a_fake_clock(moto_server: str, table: str) -> None:
    ceiling = 4.0
    plan = await plan_scan(
        table,
        segments=4,
        region=REGION,
        endpoint_url=moto_server,
        page_size=5,
        max_read_units=ceiling,
    )
    [limit] = plan.rate_limits
    assert (limit.unit, limit.service, limit.region, limit.rate) == (
        READ_UNITS,
        "dynamodb",
        REGION,
        ceiling,
    )
    assert all(s.params["ReturnConsumedCapacity"] == "TOTAL" for s in plan.streams)
    clock = asyncpager.FakeClock()
    concurrency = 2
    consumed = 0.0
    largest = 0.0
    items = 0
    async with Fetcher(concurrency=concurrency, rate_limits=plan.rate_limits, clock=clock) as f:
        async for _stream, page in f.pages(plan.streams):
            units = float(page["ConsumedCapacity"]["CapacityUnits"])
            consumed += units
            largest = max(largest, units)
            items += len(page["Items"])
        assert f.pacer is not None
        [bucket] = f.pacer.stats()
    elapsed = clock.now()
    assert items == ITEMS
    assert bucket.charged == pytest.approx(consumed)  # every page was charged
    burst = float(limit.burst or ceiling)
    slack = burst + concurrency * largest
    assert consumed > 2 * slack, "the run must be long enough for the budget to matter"
    # The ceiling holds over the run: units consumed per virtual second.
    assert consumed <= ceiling * elapsed + slack


async def test_two_tables_in_one_region_share_one_budget(moto_server: str, table: str) -> None:
    first = await plan_scan(table, segments=2, region=REGION, max_read_units=50, describe=False)
    second = await plan_scan("other", segments=2, region=REGION, max_read_units=50, describe=False)
    assert first.rate_limits == second.rate_limits
    elsewhere = await plan_scan(
        "other", segments=2, region="eu-west-1", max_read_units=50, describe=False
    )
    assert elsewhere.rate_limits != first.rate_limits


def test_iter_items_takes_a_converter() -> None:
    page = {"Items": [item_for(1), item_for(2)], "Count": 2}
    assert list(iter_items(page)) == page["Items"]
    assert list(iter_items(page, convert=lambda item: item["n"]["N"])) == ["1", "2"]
    assert list(iter_items({"Count": 3})) == []
