"""DynamoDB: a table as many streams (parallel Scan segments, Query fan-out).

Parallel scan
=============

A DynamoDB ``Scan`` with ``Segment=i, TotalSegments=n`` reads only the items
whose partition key hashes into the i-th of n slices of the key space; the n
segments together read every item exactly once, and each is paged on its
own with ``LastEvaluatedKey``. So a scan splits into n independent
:class:`Stream` s (service ``dynamodb``, operation ``Scan``), and the engine
runs as many of them at once as it has request slots.

How many segments
-----------------

``segments=n`` uses exactly n (1 to 1,000,000, DynamoDB's own bounds).
Otherwise :func:`choose_segments` picks n from ``DescribeTable``
(``TableSizeBytes`` and ``ItemCount``, or the index's figures with
``IndexName``):

* ``pages``: how many pages a single sequential scan would take: one per
  :data:`PAGE_BYTES` (a Scan page stops at 1 MB read), or one per
  ``page_size`` items when a page size is set, whichever is more.
* A table that fits in one page gets **1** segment: splitting it only adds
  requests (and each request costs at least 0.5 read units).
* Otherwise **max(one per** :data:`SEGMENT_BYTES` **(1 GiB), min(concurrency,
  pages))**: enough segments to keep every request slot busy while the
  table lasts, never more than there are pages to fetch, and for big tables
  one per GiB. A run ends when its slowest segment does: with a few huge
  segments the other slots sit idle through a long tail, with many small
  ones an idle slot picks up the next segment. AWS's own guidance is one
  segment per 2 GB; the finer grain costs nothing here, since segments
  beyond the concurrency just wait their turn in the engine's round robin.
* Capped at 1,000,000.
* DynamoDB refreshes those figures only about every six hours, so a freshly
  loaded table may report ``ItemCount == 0`` and ``TableSizeBytes == 0``.
  "Unknown" is not "small": then ``concurrency`` segments are used. Scanning a
  truly empty table that way costs ``concurrency`` cheap requests; scanning a
  large fresh table with one segment would cost hours.

moto answers ``TableSizeBytes = 0`` for every table, and puts no item in a
segment above 255; the tests use page sizes and fewer segments accordingly.

Parameters
----------

Every Scan parameter passes through to every segment: ``FilterExpression``,
``ProjectionExpression``, ``ExpressionAttributeNames``/``Values``,
``IndexName``, ``ConsistentRead``, ``Select``, the legacy ones. ``Limit`` is
the page size (it is moved to ``Stream.page_size``, as boto3's paginator
treats it). ``TableName``, ``Segment``, ``TotalSegments`` and
``ExclusiveStartKey`` are the planner's to set: a parallel scan resumes from
the engine's checkpointed streams, not from one start key.

Query fan-out
=============

:func:`plan_query` makes one ``Query`` stream per partition key value. The
key condition is built with placeholders (``#pk = :pk``) so that a key
attribute named like a reserved word (``name``, ``year``, ``status``) is
safe; or the caller gives its own ``key_condition`` that uses ``:pk`` for the
key value (``"#u = :pk AND begins_with(#s, :prefix)"``) and the planner fills
``:pk`` per stream. ``IndexName`` queries an index (the key attribute is then
the index's partition key).

Capacity budget
===============

``max_read_units`` is a ceiling on consumed read capacity per second. The
plan returns it as a cost-aware :class:`RateLimit` (unit
:data:`READ_UNITS`) scoped to ``service="dynamodb"`` and the table's
region; the engine charges each page's ``ConsumedCapacity`` to it, and the
next request waits until the debt is paid back. Pass ``plan.rate_limits`` to
the :class:`Fetcher`.

The cost of a page is known only when it comes back, so the ceiling holds
on average, not in every instant: the bucket starts full (one second's
worth of units), and up to ``concurrency`` requests may be in flight before
their costs land. Over a run, consumed units stay within ``ceiling * seconds
+ ceiling + concurrency * (cost of one page)``; one 1 MB page costs up to 128
units (256 with ``ConsistentRead``). For a tight ceiling on a provisioned
table, keep ``concurrency`` near ``max_read_units / cost of a page``, or set
a small ``page_size``.

Pacer scopes are service, region and operation, not tables. So two tables
in one region run by one Fetcher **share** one budget: their reads together
stay within the ceiling (two plans with the same ceiling give equal limits,
and each request is charged to both, which is the same as one). For a
ceiling per table, run each table with its own Fetcher. The limit has no
operation, so Scan and Query reads of the region count together.

The streams always ask for ``ReturnConsumedCapacity="TOTAL"`` (a few bytes
more per answer), budget or not: the stream's checkpoint key then does not
depend on whether a budget was set, so a run resumed with a different
``--max-read-units`` still finds its checkpoint.

Items
=====

Pages hold items in DynamoDB JSON (``{"pk": {"S": "a"}}``), as returned.
Conversion to plain values belongs to :mod:`asyncpager.convert`;
:func:`iter_items` takes a ``convert`` callable for it, so a caller picks the
form with one argument::

    for item in iter_items(page, convert=dynamodb_to_plain if plain else None):
        ...
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from asyncpager.errors import ConfigurationError
from asyncpager.pacing import RateLimit
from asyncpager.plan.regions import _call, _PlanningClients, default_region
from asyncpager.streams import Stream

if TYPE_CHECKING:
    from asyncpager.engine import Fetcher

__all__ = [
    "KEY_NAME_PLACEHOLDER",
    "KEY_VALUE_PLACEHOLDER",
    "MAX_SEGMENTS",
    "PAGE_BYTES",
    "READ_UNITS",
    "SEGMENT_BYTES",
    "ScanPlan",
    "ItemConverter",
    "TableInfo",
    "check_segments",
    "choose_segments",
    "describe_table",
    "iter_items",
    "key_value",
    "plan_query",
    "plan_scan",
    "query_streams",
    "read_limit",
    "scan_streams",
]

#: DynamoDB's bound on ``TotalSegments``.
MAX_SEGMENTS = 1_000_000
#: A Scan or Query page stops after reading this much data.
PAGE_BYTES = 1 << 20
#: Data per segment for big tables (see the module docstring).
SEGMENT_BYTES = 1 << 30
#: The unit of the capacity budget's :class:`RateLimit`.
READ_UNITS = "read_units"

#: The placeholders of the key condition the planner builds.
KEY_NAME_PLACEHOLDER = "#pk"
KEY_VALUE_PLACEHOLDER = ":pk"

Page = Mapping[str, Any]
ItemConverter = Callable[[Mapping[str, Any]], Any]

# Set by the planner, never passed through from ``params``.
_SCAN_OWNED = {
    "TableName": "pass the table as the first argument",
    "Segment": "use segments=",
    "TotalSegments": "use segments=",
    "ExclusiveStartKey": "each segment starts itself; resume from the checkpointed streams",
}
_QUERY_OWNED = {
    "TableName": "pass the table as the first argument",
    "KeyConditionExpression": "use key_condition=",
    "KeyConditions": "use key_condition=",
    "ExclusiveStartKey": "each key starts itself; resume from the checkpointed streams",
}


@dataclass(frozen=True)
class TableInfo:
    """What ``DescribeTable`` says about a table (or one of its indexes)."""

    table: str
    size_bytes: int
    item_count: int
    #: The partition key attribute of the table, or of ``index`` when set.
    partition_key: str | None
    index: str | None = None


@dataclass(frozen=True)
class ScanPlan:
    """A table as streams: what :func:`plan_scan` and :func:`plan_query` return.

    ``streams`` go to :meth:`Fetcher.pages` or :meth:`Fetcher.run`,
    ``rate_limits`` to the Fetcher (empty without ``max_read_units``).
    ``item_count`` and ``size_bytes`` are DynamoDB's (six-hourly) figures for
    a progress estimate, ``None`` when the table was not described.
    ``segments`` is the scan's ``TotalSegments`` (``None`` for a Query plan).
    """

    table: str
    region: str
    streams: list[Stream]
    rate_limits: list[RateLimit] = field(default_factory=list)
    item_count: int | None = None
    size_bytes: int | None = None
    segments: int | None = None


# -- pure parts --------------------------------------------------------------


def check_segments(segments: object) -> int:
    """``segments`` as an int, or a one-line :class:`ConfigurationError`."""
    if (
        not isinstance(segments, int)
        or isinstance(segments, bool)
        or not 1 <= segments <= MAX_SEGMENTS
    ):
        raise ConfigurationError(
            f"segments must be an integer from 1 to {MAX_SEGMENTS}, got {segments!r}"
        )
    return segments


def choose_segments(
    size_bytes: int,
    item_count: int,
    *,
    concurrency: int = 64,
    page_size: int | None = None,
) -> int:
    """How many scan segments a table of this size should get.

    The rule and its reasons are in the module docstring.
    """
    if concurrency < 1:
        raise ConfigurationError(f"concurrency must be at least 1, got {concurrency!r}")
    if size_bytes <= 0 and item_count <= 0:
        return min(concurrency, MAX_SEGMENTS)
    pages = math.ceil(max(0, size_bytes) / PAGE_BYTES)
    if page_size is not None and page_size > 0:
        pages = max(pages, math.ceil(max(0, item_count) / page_size))
    if pages <= 1:
        return 1
    by_size = math.ceil(size_bytes / SEGMENT_BYTES)
    return max(1, min(MAX_SEGMENTS, max(by_size, min(concurrency, pages))))


def read_limit(max_read_units: float, region: str) -> RateLimit:
    """The capacity budget of one region's DynamoDB reads, as a cost limit."""
    if (
        isinstance(max_read_units, bool)
        or not isinstance(max_read_units, int | float)
        or not math.isfinite(max_read_units)
        or max_read_units <= 0
    ):
        raise ConfigurationError(f"max_read_units must be a number > 0, got {max_read_units!r}")
    return RateLimit(float(max_read_units), service="dynamodb", region=region, unit=READ_UNITS)


def _base_params(
    params: Mapping[str, Any] | None,
    page_size: int | None,
    owned: Mapping[str, str],
    *,
    budget: bool,
) -> tuple[dict[str, Any], int | None]:
    if params is not None and not isinstance(params, Mapping):
        raise ConfigurationError(f"params must be a mapping, got {type(params).__name__}")
    out = dict(params or {})
    for name, hint in owned.items():
        if name in out:
            raise ConfigurationError(f"{name} is set by the planner: {hint}")
    if "Limit" in out:
        if page_size is not None:
            raise ConfigurationError("give the page size once: Limit in params or page_size")
        page_size = out.pop("Limit")
    if page_size is not None and (
        not isinstance(page_size, int) or isinstance(page_size, bool) or page_size < 1
    ):
        raise ConfigurationError(f"page_size must be an integer >= 1, got {page_size!r}")
    capacity = out.setdefault("ReturnConsumedCapacity", "TOTAL")
    if budget and capacity == "NONE":
        raise ConfigurationError(
            "max_read_units needs the consumed capacity: drop ReturnConsumedCapacity='NONE'"
        )
    return out, page_size


def scan_streams(
    table: str,
    segments: int,
    *,
    region: str | None = None,
    profile: str | None = None,
    endpoint_url: str | None = None,
    params: Mapping[str, Any] | None = None,
    page_size: int | None = None,
    budget: bool = False,
) -> list[Stream]:
    """The ``segments`` Scan streams of ``table``; no calls.

    ``budget`` only makes the parameter checks demand consumed capacity.
    Each stream is labelled with ``table`` and ``segment``.
    """
    _check_table(table)
    total = check_segments(segments)
    base, page_size = _base_params(params, page_size, _SCAN_OWNED, budget=budget)
    return [
        Stream(
            "dynamodb",
            "Scan",
            {"TableName": table, **base, "Segment": segment, "TotalSegments": total},
            region=region,
            profile=profile,
            endpoint_url=endpoint_url,
            page_size=page_size,
            labels={"table": table, "segment": segment},
        )
        for segment in range(total)
    ]


def key_value(value: Any) -> dict[str, Any]:
    """A partition key value as a DynamoDB AttributeValue.

    An AttributeValue (``{"S": "a"}``, ``{"N": "1"}``, ``{"B": b"x"}``) is
    taken as it is; ``str`` becomes S, ``int``/``float``/``Decimal`` N, and
    ``bytes`` B, the only types a key can have.
    """
    if isinstance(value, Mapping):
        if len(value) == 1 and next(iter(value)) in ("S", "N", "B"):
            return dict(value)
        raise ConfigurationError(f"a key value must be an S, N or B AttributeValue, got {value!r}")
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bool):
        raise ConfigurationError(f"a key value cannot be a boolean, got {value!r}")
    if isinstance(value, int | Decimal):
        return {"N": str(value)}
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigurationError(f"a key value must be finite, got {value!r}")
        return {"N": repr(value)}
    if isinstance(value, bytes | bytearray):
        return {"B": bytes(value)}
    raise ConfigurationError(f"a key value must be str, number or bytes, got {value!r}")


def query_streams(
    table: str,
    keys: Iterable[Any],
    *,
    key_name: str | None = None,
    key_condition: str | None = None,
    index_name: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    endpoint_url: str | None = None,
    params: Mapping[str, Any] | None = None,
    page_size: int | None = None,
    budget: bool = False,
) -> list[Stream]:
    """One Query stream per partition key value; no calls.

    Give ``key_name`` (the partition key attribute; the planner writes
    ``#pk = :pk``) or ``key_condition`` (an expression of your own that uses
    ``:pk`` for the key value, with your own names and values in
    ``params``). Repeated keys are queried once. Each stream is labelled
    with ``table`` and ``key`` (the AttributeValue).
    """
    _check_table(table)
    if (key_name is None) == (key_condition is None):
        raise ConfigurationError("give exactly one of key_name and key_condition")
    base, page_size = _base_params(params, page_size, _QUERY_OWNED, budget=budget)
    if index_name is not None:
        if base.get("IndexName", index_name) != index_name:
            raise ConfigurationError("IndexName given twice with different values")
        base["IndexName"] = index_name
    names = dict(base.pop("ExpressionAttributeNames", None) or {})
    values = dict(base.pop("ExpressionAttributeValues", None) or {})
    if KEY_VALUE_PLACEHOLDER in values:
        raise ConfigurationError(
            f"ExpressionAttributeValues must not define {KEY_VALUE_PLACEHOLDER}: "
            "the planner sets it to each key"
        )
    if key_condition is not None:
        if not re.search(re.escape(KEY_VALUE_PLACEHOLDER) + r"(?![A-Za-z0-9_])", key_condition):
            raise ConfigurationError(
                f"key_condition must use {KEY_VALUE_PLACEHOLDER} for the partition key value"
            )
        condition = key_condition
    else:
        if not key_name:
            raise ConfigurationError("key_name must be a non-empty attribute name")
        if names.get(KEY_NAME_PLACEHOLDER, key_name) != key_name:
            raise ConfigurationError(
                f"ExpressionAttributeNames already uses {KEY_NAME_PLACEHOLDER}; "
                "rename yours or pass key_condition"
            )
        names[KEY_NAME_PLACEHOLDER] = key_name
        condition = f"{KEY_NAME_PLACEHOLDER} = {KEY_VALUE_PLACEHOLDER}"
    unique: dict[str, dict[str, Any]] = {}
    for key in keys:
        value = key_value(key)
        unique.setdefault(json.dumps(value, sort_keys=True, default=repr), value)
    if not unique:
        raise ConfigurationError("keys must name at least one partition key value")
    streams = []
    for value in unique.values():
        stream_params: dict[str, Any] = {"TableName": table, **base}
        stream_params["KeyConditionExpression"] = condition
        if names:
            stream_params["ExpressionAttributeNames"] = names
        stream_params["ExpressionAttributeValues"] = {**values, KEY_VALUE_PLACEHOLDER: value}
        streams.append(
            Stream(
                "dynamodb",
                "Query",
                stream_params,
                region=region,
                profile=profile,
                endpoint_url=endpoint_url,
                page_size=page_size,
                labels={"table": table, "key": value},
            )
        )
    return streams


def iter_items(page: Page, convert: ItemConverter | None = None) -> Iterator[Any]:
    """The items of a Scan or Query page, each through ``convert`` if given.

    ``convert`` is the hook for the plain form (``dynamodb_to_plain``); without
    it items stay DynamoDB JSON. A ``Select="COUNT"`` page has no items: its
    ``Count`` is the figure to add up.
    """
    for item in page.get("Items") or ():
        yield convert(item) if convert is not None else item


def _check_table(table: object) -> None:
    if not isinstance(table, str) or not table:
        raise ConfigurationError(f"table must be a non-empty name, got {table!r}")


# -- planning (calls) --------------------------------------------------------


async def describe_table(
    table: str,
    *,
    index_name: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    endpoint_url: str | None = None,
    client: Any = None,
    fetcher: Fetcher | None = None,
) -> TableInfo:
    """Size, item count and partition key of a table or one of its indexes.

    Raises :class:`NotFoundError` for a missing table and
    :class:`ConfigurationError` for a missing index.
    """
    _check_table(table)
    if client is not None:
        answer = await _call(client, "describe_table", TableName=table)
    else:
        async with _PlanningClients(fetcher, endpoint_url) as clients:
            dynamodb = await clients.get("dynamodb", region, profile)
            answer = await _call(dynamodb, "describe_table", TableName=table)
    description: Mapping[str, Any] = answer.get("Table", {})
    source = description
    if index_name is not None:
        indexes = [
            *description.get("GlobalSecondaryIndexes", ()),
            *description.get("LocalSecondaryIndexes", ()),
        ]
        matches = [i for i in indexes if i.get("IndexName") == index_name]
        if not matches:
            raise ConfigurationError(f"table {table!r} has no index {index_name!r}")
        source = matches[0]
    hash_keys = [k["AttributeName"] for k in source.get("KeySchema", ()) if k["KeyType"] == "HASH"]
    size_key = "IndexSizeBytes" if index_name is not None else "TableSizeBytes"
    return TableInfo(
        table=table,
        size_bytes=int(source.get(size_key, 0) or 0),
        item_count=int(source.get("ItemCount", 0) or 0),
        partition_key=hash_keys[0] if hash_keys else None,
        index=index_name,
    )


def _resolve_region(region: str | None, profile: str | None, client: Any) -> str:
    """The region the streams run in: the pacer's budget is scoped to it."""
    if region is None and client is not None:
        region = getattr(getattr(client, "meta", None), "region_name", None)
    if region is None:
        region = default_region(profile)
    if region is None:
        raise ConfigurationError(
            "no region: pass region=, or configure one for the profile (AWS_DEFAULT_REGION)"
        )
    return region


async def plan_scan(
    table: str,
    *,
    region: str | None = None,
    segments: int | None = None,
    concurrency: int = 64,
    params: Mapping[str, Any] | None = None,
    page_size: int | None = None,
    max_read_units: float | None = None,
    describe: bool = True,
    profile: str | None = None,
    endpoint_url: str | None = None,
    client: Any = None,
    fetcher: Fetcher | None = None,
) -> ScanPlan:
    """A parallel scan of ``table`` as a :class:`ScanPlan`.

    ::

        plan = await plan_scan("orders", region="eu-west-1", max_read_units=500)
        async with Fetcher(concurrency=64, rate_limits=plan.rate_limits) as f:
            async for stream, page in f.pages(plan.streams):
                for item in iter_items(page):
                    ...

    ``segments`` fixes ``TotalSegments``; ``None`` chooses it from the
    table's size (:func:`choose_segments`, for ``concurrency`` request
    slots). The one ``DescribeTable`` call that needs (and that fills
    ``item_count`` for a progress estimate, and fails early on a missing
    table) uses ``client`` (an aiobotocore DynamoDB client) if given, else
    the ``fetcher``'s client, else a short-lived client of its own.
    ``describe=False`` skips it (credentials without ``DescribeTable``);
    ``segments`` is then required.

    Planning comes before the Fetcher in the usual order, because the
    Fetcher takes the plan's rate limits when it is made; pass ``fetcher``
    only when it already has them (or no budget is wanted).
    """
    _check_table(table)
    if segments is not None:
        check_segments(segments)
    elif not describe:
        raise ConfigurationError("describe=False needs segments=: nothing to size the scan by")
    resolved = _resolve_region(region, profile, client)
    budget = max_read_units is not None
    limits = [read_limit(max_read_units, resolved)] if max_read_units is not None else []
    # Check the parameters before any call: a typo should not cost a request.
    scan_streams(table, 1, params=params, page_size=page_size, budget=budget)
    info: TableInfo | None = None
    if describe:
        index = (params or {}).get("IndexName")
        info = await describe_table(
            table,
            index_name=index if isinstance(index, str) else None,
            region=resolved,
            profile=profile,
            endpoint_url=endpoint_url,
            client=client,
            fetcher=fetcher,
        )
    if segments is None:
        assert info is not None
        effective = page_size if page_size is not None else (params or {}).get("Limit")
        segments = choose_segments(
            info.size_bytes,
            info.item_count,
            concurrency=concurrency,
            page_size=effective if isinstance(effective, int) else None,
        )
    streams = scan_streams(
        table,
        segments,
        region=resolved,
        profile=profile,
        endpoint_url=endpoint_url,
        params=params,
        page_size=page_size,
        budget=budget,
    )
    return ScanPlan(
        table=table,
        region=resolved,
        streams=streams,
        rate_limits=limits,
        item_count=info.item_count if info is not None else None,
        size_bytes=info.size_bytes if info is not None else None,
        segments=segments,
    )


async def plan_query(
    table: str,
    keys: Iterable[Any],
    *,
    key_name: str | None = None,
    key_condition: str | None = None,
    index_name: str | None = None,
    region: str | None = None,
    params: Mapping[str, Any] | None = None,
    page_size: int | None = None,
    max_read_units: float | None = None,
    profile: str | None = None,
    endpoint_url: str | None = None,
    client: Any = None,
    fetcher: Fetcher | None = None,
) -> ScanPlan:
    """A Query per partition key value of ``table`` (or of ``index_name``).

    ::

        plan = await plan_query("orders", ["cust-1", "cust-2"], max_read_units=100)

    Without ``key_name`` and ``key_condition`` the partition key attribute
    is read from ``DescribeTable`` (the index's key with ``index_name``),
    through ``client``, ``fetcher`` or a short-lived client as in
    :func:`plan_scan`; with either, no call is made.
    """
    _check_table(table)
    keys = list(keys)
    resolved = _resolve_region(region, profile, client)
    budget = max_read_units is not None
    limits = [read_limit(max_read_units, resolved)] if max_read_units is not None else []
    info: TableInfo | None = None
    if key_name is None and key_condition is None:
        # Check the parameters before the call, with a stand-in key name.
        query_streams(table, keys, key_name="-", params=params, page_size=page_size, budget=budget)
        info = await describe_table(
            table,
            index_name=index_name,
            region=resolved,
            profile=profile,
            endpoint_url=endpoint_url,
            client=client,
            fetcher=fetcher,
        )
        key_name = info.partition_key
        if key_name is None:
            raise ConfigurationError(f"DescribeTable gave no partition key for {table!r}")
    streams = query_streams(
        table,
        keys,
        key_name=key_name,
        key_condition=key_condition,
        index_name=index_name,
        region=resolved,
        profile=profile,
        endpoint_url=endpoint_url,
        params=params,
        page_size=page_size,
        budget=budget,
    )
    return ScanPlan(
        table=table,
        region=resolved,
        streams=streams,
        rate_limits=limits,
        item_count=info.item_count if info is not None else None,
        size_bytes=info.size_bytes if info is not None else None,
    )
