"""The ``asyncpager`` command: bulk export of anything pageable, crash-safe.

::

    asyncpager s3 s3://BUCKET[/PREFIX] ...      list objects (sharded)
    asyncpager dynamodb TABLE ...               parallel scan (segments)
    asyncpager call SERVICE OPERATION           any pageable operation
    asyncpager demo                             the main job on an embedded endpoint
    asyncpager endpoint                         serve the local test endpoint

Exit codes: 0 done, 1 a stream failed (progress saved), 2 bad usage or input,
130 interrupted (progress saved). Errors are one line on stderr, never a
traceback, and never hold credentials.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import signal
import sys
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import anyio

from asyncpager.errors import (
    AsyncPagerError,
    ConfigurationError,
    CredentialsError,
    StreamFailedError,
    TransportError,
)

if TYPE_CHECKING:
    from asyncpager.parsers import RawMode
    from asyncpager.plan.s3 import KeySample
    from asyncpager.streams import Stream

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad usage: exit 2 with a one-line message."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


#: The export's read-ahead, in bytes of pages in memory (see _run_export).
CLI_QUEUE_BYTES = 128 * 1024 * 1024


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {text}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _cluster_spec(text: str) -> int:
    """``local`` or ``local:N``: the worker processes (0: one per core)."""
    name, _, count = text.partition(":")
    if name != "local":
        raise argparse.ArgumentTypeError(
            f"--cluster takes local or local:N, not {text!r} (a remote cluster: --scheduler)"
        )
    if not count:
        return 0
    try:
        workers = int(count)
    except ValueError:
        workers = 0
    if workers < 1:
        raise argparse.ArgumentTypeError(f"--cluster local:N needs a whole N >= 1, not {count!r}")
    return workers


def _segments(text: str) -> int:
    value = _positive_int(text)
    if value > 1_000_000:
        raise argparse.ArgumentTypeError(f"segments must be between 1 and 1000000, not {text}")
    return value


def _endpoint(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"--endpoint-url must be an http(s) URL, not {text!r}")
    return text


def _common(parser: argparse.ArgumentParser) -> None:
    aws = parser.add_argument_group("AWS")
    aws.add_argument("--region", help="AWS region (default: the profile's)")
    aws.add_argument("--profile", help="named profile from the AWS config")
    aws.add_argument("--endpoint-url", type=_endpoint, help="http(s) URL of the endpoint")
    aws.add_argument("--no-verify-ssl", action="store_true", help="do not verify TLS certificates")
    paging = parser.add_argument_group("paging")
    paging.add_argument("--page-size", type=_positive_int, help="items per request")
    paging.add_argument("--max-items", type=_non_negative_int, help="stop after this many items")
    paging.add_argument("--query", help="JMESPath applied to each page, as boto3's search")
    pace = parser.add_argument_group("pacing")
    pace.add_argument("--rate", type=_positive_float, help="requests per second (all streams)")
    pace.add_argument("--burst", type=_positive_float, help="requests allowed at once")
    # The Fetcher's default. At 32, a million keys at 100 ms per request took
    # 5.7-5.9 s with the process on half its CPU (32 in flight, 320 requests
    # a second); at 64, 4.6 s. At 50 ms, where the CPU is the bound, and for
    # DynamoDB's 1 MB pages, the two are alike.
    pace.add_argument(
        "--concurrency", type=_positive_int, default=64, help="requests in flight (default: 64)"
    )
    pace.add_argument(
        "--no-fast-parse", action="store_true", help="parse answers with botocore's own parser"
    )
    pace.add_argument(
        "--no-lean-http",
        action="store_true",
        help="send requests through aiohttp, aiobotocore's HTTP client",
    )
    pace.add_argument(
        "--no-direct",
        action="store_true",
        help="build and sign every request through botocore's own events",
    )
    out = parser.add_argument_group("output")
    out.add_argument("-o", "--output", help="output file (default: stdout)")
    out.add_argument(
        "--format", choices=["jsonl", "csv", "parquet"], help="default: from the extension"
    )
    out.add_argument("--checkpoint", help="checkpoint file: resume after any interruption")
    out.add_argument(
        "--commit-interval", type=_positive_float, default=5.0, help="seconds between commits"
    )
    out.add_argument("--csv-raw-formulas", action="store_true", help="keep =,+,-,@ cells raw")
    out.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="live progress on stderr (default: when stderr is a terminal)",
    )  # fmt: skip
    out.add_argument("--stats", help="write the final figures as JSON to this file")
    out.add_argument(
        "--workers", type=_positive_int,
        help="processes, each exporting a share of the streams (default: one per core "
        "for jsonl and parquet output, else 1)",
    )  # fmt: skip
    out.add_argument(
        "--loop", choices=["uvloop", "asyncio"], help="event loop (default: uvloop if installed)"
    )
    cluster = parser.add_argument_group("cluster (the dask extra)")
    cluster.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="run the shard groups on this Dask scheduler (tcp://host:8786)",
    )  # fmt: skip
    cluster.add_argument(
        "--cluster", type=_cluster_spec, metavar="local[:N]",
        help="run the shard groups on a local Dask cluster of N processes (default: cores)",
    )  # fmt: skip
    cluster.add_argument(
        "--tasks", type=_positive_int,
        help="shard groups, one task each (default: 4 per worker thread; 1 on --cluster local)",
    )  # fmt: skip
    cluster.add_argument(
        "--shared-rate", action="store_true",
        help="one rate budget held by an actor, instead of a static share per task",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="asyncpager",
        description="Fetch everything behind a paginated AWS API, fast.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    s3 = sub.add_parser("s3", help="list objects, sharded by key range")
    s3.add_argument("urls", nargs="+", metavar="s3://BUCKET[/PREFIX]")
    s3.add_argument(
        "--shards", type=_positive_int,
        help="initial key ranges per URL (default: --concurrency shared among the "
        "URLs, cut where a sample of the keys says they are; one for a URL "
        "one page holds; large ranges split while workers are idle)",
    )  # fmt: skip
    s3.add_argument("--delimiter", help="list common prefixes (not sharded)")
    s3.add_argument("--snapshot", action="store_true", help="leave out objects modified later")
    s3.add_argument(
        "--params",
        help='extra ListObjectsV2 parameters as JSON ({"RequestPayer": "requester"}, '
        "ExpectedBucketOwner, FetchOwner...)",
    )
    _common(s3)
    ddb = sub.add_parser("dynamodb", help="scan a table in parallel segments")
    ddb.add_argument("table")
    ddb.add_argument("--segments", type=_segments, help="TotalSegments (default: from size)")
    ddb.add_argument("--max-read-units", type=_positive_float, help="read units per second")
    ddb.add_argument("--params", help="extra Scan parameters as JSON")
    ddb.add_argument("--dynamodb-json", action="store_true", help="keep DynamoDB's typed JSON")
    _common(ddb)
    call = sub.add_parser("call", help="any pageable operation")
    call.add_argument("service")
    call.add_argument("operation")
    call.add_argument("--params", help="operation parameters as JSON")
    call.add_argument("--regions", help="comma-separated regions, or 'all'")
    call.add_argument("--profiles", help="comma-separated profiles (accounts)")
    _common(call)
    demo = sub.add_parser("demo", help="export from an embedded local endpoint, against boto3")
    demo.add_argument("--keys", type=_positive_int, default=200_000, help="objects in the bucket")
    demo.add_argument("--items", type=_positive_int, default=50_000, help="items in the table")
    demo.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    demo.add_argument("--output-dir", help="where to write the exports (default: a temp dir)")
    demo.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    demo.add_argument("--loop", choices=["uvloop", "asyncio"])
    sub.add_parser(
        "endpoint", help="serve the local AWS endpoint (python -m asyncpager.testing)",
        add_help=False,
    )  # fmt: skip
    return parser


# -- validation ------------------------------------------------------------


@functools.cache
def _botocore_session() -> Any:
    import botocore.session

    return botocore.session.get_session()


def check_operation(service: str, operation: str) -> str:
    """The API name of a pageable operation, or a one-line error."""
    from botocore import xform_name

    session = _botocore_session()
    if service not in session.get_available_services():
        raise ConfigurationError(f"unknown service {service!r}")
    model = session.get_service_model(service)
    names = {xform_name(n): n for n in model.operation_names}
    api = names.get(operation) or (operation if operation in model.operation_names else None)
    if api is None:
        raise ConfigurationError(f"{service} has no operation {operation!r}")
    paginators = session.get_paginator_model(service)
    try:
        paginators.get_paginator(api)
    except ValueError:
        raise ConfigurationError(f"{service} {operation} is not pageable") from None
    return str(api)


def check_region(region: str, service: str) -> None:
    session = _botocore_session()
    known: set[str] = set()
    for partition in session.get_available_partitions():
        known.update(session.get_available_regions(service, partition_name=partition))
        known.update(session.get_available_regions("ec2", partition_name=partition))
    if known and region not in known:
        raise ConfigurationError(f"unknown region {region!r} for {service}")


def _json_arg(text: str | None, what: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigurationError(f"{what} must be a JSON object")
    return value


def _compile_query(text: str | None) -> Any:
    if text is None:
        return None
    import jmespath
    import jmespath.exceptions

    try:
        return jmespath.compile(text)
    except jmespath.exceptions.JMESPathError as exc:
        message = " ".join(str(exc).split())
        raise ConfigurationError(f"invalid --query expression: {message}") from None


# -- records ---------------------------------------------------------------


@functools.cache
def _result_key(service: str, operation: str) -> Any:
    import jmespath

    paginators = _botocore_session().get_paginator_model(service)
    config = paginators.get_paginator(operation)
    key = config.get("result_key")
    if isinstance(key, list):
        key = key[0]
    return jmespath.compile(key) if key else None


def make_records(
    *,
    query: Any,
    plain_dynamodb: bool,
    label_keys: Sequence[str],
    json_lines: bool = False,
    typed_dynamodb: bool = False,
    object_columns: bool = False,
    object_records: bool = False,
) -> Callable[[Stream, dict[str, Any]], Sequence[Mapping[str, Any]]]:
    """How a page becomes records: its result-key items (or ``--query``
    results), DynamoDB items as plain values, and where each came from.
    ``json_lines``: the records are only ever written as JSON Lines, so
    DynamoDB numbers may stay as their text (``dynamodb_to_json_ready``).
    ``typed_dynamodb``: the sink converts DynamoDB items itself (a
    :class:`~asyncpager.convert.TypedItems`), as the Parquet and CSV sinks do.
    ``object_columns``: S3 pages come parsed in raw ``"lines"`` mode for a
    Parquet sink, which reads their objects' lines itself
    (:class:`~asyncpager.item_lines.ObjectColumns`); any other record gets
    its ``LastModified`` back as a datetime. ``object_records``: S3 pages
    come parsed in raw ``"lines"`` mode for a sink that writes each record's
    values as text (CSV), which writes the lines of the usual shape itself
    (:class:`~asyncpager.item_lines.ObjectRows`); other records are read
    back with their ``LastModified`` as the text that sink would write of
    the datetime.

    The records are the page's own dicts (or the fresh ones the DynamoDB
    conversion made) whenever nothing is added to them: a page is consumed
    once and the sinks only read them, so a copy of every item would only
    cost time (and work for the cyclic collector)."""
    from asyncpager.convert import TypedItems
    from asyncpager.item_lines import (
        EncodedLines,
        LabelledLines,
        ObjectColumns,
        ObjectLines,
        ObjectRows,
        with_datetimes,
    )

    only_dicts = {dict}
    # The view a sink reads an S3 page's lines through itself, if any.
    view = ObjectColumns if object_columns else ObjectRows if object_records else None
    convert: Callable[[Any], Any] | None = None
    if plain_dynamodb:
        from asyncpager.convert import dynamodb_to_json_ready, dynamodb_to_plain

        convert = dynamodb_to_json_ready if json_lines else dynamodb_to_plain

    def records(stream: Stream, page: dict[str, Any]) -> Sequence[Mapping[str, Any]]:
        found: list[Any]
        fresh = False  # dicts made here, that labels may go into
        labels = {f"_{k}": stream.labels[k] for k in label_keys if k in stream.labels}
        if query is not None:
            # As boto3's search, page by page; but a page the expression finds
            # nothing in (an empty shard's) adds no record rather than a null.
            result = query.search(page)
            found = result if isinstance(result, list) else [] if result is None else [result]
        else:
            key = _result_key(stream.service, stream.operation)
            found = (key.search(page) if key is not None else None) or []
            prefixes = page.get("CommonPrefixes") if stream.kind == "s3-range" else None
            converted = False
            if isinstance(found, EncodedLines):
                if view is not None:
                    if not prefixes and not labels and isinstance(found, ObjectLines):
                        return view(found)
                elif not prefixes:
                    # Written as JSON Lines straight from the text that came,
                    # labels (the same for the whole stream) included.
                    return LabelledLines(found, labels) if labels else found
                found = found.records()
                fresh = converted = True
            if (
                object_columns
                and stream.service == "s3"
                and found
                and isinstance(found[0], dict)
                and type(found[0].get("LastModified")) is str
            ):
                # Parsed in raw mode: timestamps are text.
                if not fresh:
                    found = [dict(item) for item in found]
                found = with_datetimes(found)
                fresh = True
            if prefixes:
                found = [*found, *[{"Prefix": p["Prefix"]} for p in prefixes]]
            elif convert is not None and stream.service == "dynamodb" and not converted:
                if typed_dynamodb and not labels:
                    return TypedItems(found)
                found = [convert(item) for item in found]
                fresh = True
        if {*map(type, found)} == only_dicts:
            if not labels:
                return found if type(found) is list else list(found)
            if fresh:
                for record in found:
                    record.update(labels)
                return found
            return [{**item, **labels} for item in found]
        out: list[Mapping[str, Any]] = []
        for item in found:
            record = dict(item) if isinstance(item, Mapping) else {"value": item}
            if labels:
                record.update(labels)
            out.append(record)
        return out

    return records


# -- running ---------------------------------------------------------------


def _plan_fingerprint(args: argparse.Namespace) -> dict[str, Any]:
    """What decides the output: a checkpoint for anything else is refused."""
    keys = [
        *("command", "urls", "shards", "delimiter", "snapshot", "table", "segments"),
        *("params", "dynamodb_json", "service", "operation", "regions", "profiles"),
        *("region", "profile", "endpoint_url", "page_size", "max_items", "query"),
        *("format", "output"),
    ]
    return {k: getattr(args, k, None) for k in keys}


def label_keys(args: argparse.Namespace) -> list[str]:
    """Which labels the records carry (``_bucket``, ``_region``...): those
    that tell the items of one command apart. Known without any request."""
    if args.command == "s3":
        from asyncpager.plan.s3 import parse_s3_url

        return ["bucket"] if len({parse_s3_url(u)[0] for u in args.urls}) > 1 else []
    if args.command == "dynamodb":
        return []
    if args.regions:
        return ["region", "profile", "account"]
    profiles = [p for p in (args.profiles or "").split(",") if p.strip()]
    return ["profile"] if len(profiles) > 1 else []


def _on_cluster(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "scheduler", None)) or getattr(args, "cluster", None) is not None


def _worker_processes(args: argparse.Namespace) -> int:
    """How many ``--workers`` processes the plan is handed out to (1: it
    runs in this process, or on a cluster)."""
    if _on_cluster(args):
        return 1
    return int(getattr(args, "workers", None) or 1)


def _deals_once(args: argparse.Namespace) -> bool:
    """Whether the streams are dealt to processes or tasks once and for all
    (``--workers``, a cluster), where a shard cannot split across them."""
    return _on_cluster(args) or _worker_processes(args) > 1


def _resumes(args: argparse.Namespace) -> bool:
    """Whether one process goes on from its checkpoint, whose streams it
    then runs whatever the plan is now: nothing to sample for."""
    if _deals_once(args) or not args.checkpoint:
        return False
    return Path(args.checkpoint).exists()


async def _sample_urls(args: argparse.Namespace, params: dict[str, Any]) -> dict[str, KeySample]:
    """Where the keys under each S3 URL are (see ``sample_urls``), to cut
    its shards there."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession

    from asyncpager._clients import share_loader
    from asyncpager.parsers import install
    from asyncpager.plan.s3 import sample_urls

    session = AioSession(profile=args.profile)
    share_loader(session)  # botocore's S3 data, decoded before the workers were forked
    async with session.create_client(
        "s3",
        region_name=args.region,
        endpoint_url=args.endpoint_url,
        verify=not args.no_verify_ssl,
        # Every URL's two listings at once, as the listing's own requests go:
        # through botocore's 10 connections, 20 buckets took four round trips.
        # One retry: a sample that fails costs a blind cut, not the listing
        # (which retries on its own), and "max_attempts": 3 (four in all)
        # kept a command whose endpoint could not be reached waiting 5 s
        # before its first listing request.
        config=AioConfig(
            retries={"total_max_attempts": 2, "mode": "standard"},
            max_pool_connections=max(10, int(args.concurrency)),
        ),
    ) as client:
        # Up to two 1,000-key pages per URL, on the way to the first request:
        # botocore's parser took 55 ms of CPU for each.
        install(client)
        return await sample_urls(args.urls, client, params)


def _rate_limits(args: argparse.Namespace) -> list[Any]:
    """``--rate``/``--burst`` as limits (the plan may add its own)."""
    from asyncpager.pacing import RateLimit

    if args.rate is not None:
        return [RateLimit(args.rate, burst=args.burst)]
    if args.burst is not None:
        raise ConfigurationError("--burst needs --rate")
    return []


async def _plan(args: argparse.Namespace) -> tuple[list[Stream], list[str], Any, int | None]:
    """Streams, label keys, rate limits and the known total of items."""
    limits = _rate_limits(args)
    total: int | None = None
    if args.command == "s3":
        import datetime as dt

        from asyncpager.plan.s3 import check_list_params, parse_s3_url, plan_s3

        for url in args.urls:
            parse_s3_url(url)
        if args.region:
            check_region(args.region, "s3")
        # One process starts with a shard per request slot, cut where a
        # sample of the keys says they are (two listings at once: the
        # folders, and a first page of keys). From 8 shards cut blind, most
        # of them empty in a tree of folders, the streams doubled once per
        # round trip (each splits once per page), and a million keys at
        # 100 ms took 4.9-5.0 s instead of 4.1 (at 50 ms, 3.7 s instead of
        # 3.5). A URL that one page holds is one stream. Handed out to
        # --workers processes, where a shard cannot split across them, 16
        # per process even out their work.
        workers = _worker_processes(args)
        if args.shards:
            shards = args.shards
        elif workers > 1:
            shards = max(1, 16 * workers // len(args.urls))
        elif _on_cluster(args):
            shards = max(1, 8 // len(args.urls))
        else:
            shards = max(1, int(args.concurrency) // len(args.urls))
        extra = _json_arg(args.params, "--params")
        check_list_params(extra)  # before the sampling sends them
        samples = None
        # Nothing to cut where a URL starts as one shard (as many URLs as
        # request slots): each then starts on its keys from the first request.
        if not args.delimiter and shards > 1 and not _resumes(args):
            samples = await _sample_urls(args, extra)
        streams = plan_s3(
            args.urls,
            shards=shards,
            region=args.region,
            profile=args.profile,
            endpoint_url=args.endpoint_url,
            page_size=args.page_size,
            delimiter=args.delimiter,
            snapshot=dt.datetime.now(dt.UTC) if args.snapshot else None,
            samples=samples,
            params=extra,
        )
        return streams, label_keys(args), limits, total
    if args.command == "dynamodb":
        from asyncpager.plan.dynamodb import plan_scan

        if args.region:
            check_region(args.region, "dynamodb")
        extra = _json_arg(args.params, "--params")
        # Segments handed out to --workers processes: the grain of the last
        # shares is one segment, so a segment per request slot of every
        # process (as many as there are pages at most) keeps the tail short.
        # 400k items in 32 segments left one of two workers 1.35 s behind.
        slots = int(args.concurrency) * _worker_processes(args)
        plan = await plan_scan(
            args.table,
            region=args.region,
            profile=args.profile,
            endpoint_url=args.endpoint_url,
            segments=args.segments,
            concurrency=slots,
            params=extra,
            page_size=args.page_size,
            max_read_units=args.max_read_units,
        )
        limits += list(plan.rate_limits)
        return list(plan.streams), label_keys(args), limits, plan.item_count
    # call
    from asyncpager.streams import Stream

    api = check_operation(args.service, args.operation)
    params = _json_arg(args.params, "--params")
    profiles: list[str | None] = (
        [p.strip() for p in args.profiles.split(",") if p.strip()] if args.profiles else [None]
    )
    if args.profile and not args.profiles:
        profiles = [args.profile]
    if args.regions:
        from asyncpager.plan.regions import plan_regions

        regions: Any = "all" if args.regions.strip() == "all" else [
            r.strip() for r in args.regions.split(",") if r.strip()
        ]  # fmt: skip
        if regions != "all":
            for region in regions:
                check_region(region, args.service)
        streams = await plan_regions(
            args.service,
            api,
            params,
            regions=regions,
            profiles=profiles,
            # Account ids (one STS call per profile) only label a fan-out
            # across accounts; a single account's items say their region.
            resolve_accounts=bool(args.profiles),
            endpoint_url=args.endpoint_url,
            page_size=args.page_size,
        )
        return list(streams), label_keys(args), limits, total
    if args.region:
        check_region(args.region, args.service)
    streams = [
        Stream(
            args.service,
            api,
            params,
            region=args.region,
            profile=profile,
            endpoint_url=args.endpoint_url,
            page_size=args.page_size,
            labels={"profile": profile} if profile else {},
        )
        for profile in profiles
    ]
    return streams, label_keys(args), limits, total


async def _run_export(
    args: argparse.Namespace,
    interrupted: anyio.Event,
    *,
    assigned: list[Stream] | None = None,
    rate_share: float = 1.0,
    live_stats: Callable[[Any], None] | None = None,
    more: Callable[[Any], AsyncIterable[Sequence[Stream]]] | None = None,
    gives: AsyncIterable[Any] | None = None,
) -> int:
    """Plan and export. A worker of ``--workers`` passes the streams it was
    assigned, its share of every rate, where its figures go, how it is
    handed more streams (given the fetcher, whose figures say when to ask)
    and how it is asked to give some away."""
    from asyncpager._groups import until_interrupted
    from asyncpager.checkpoint import fingerprint
    from asyncpager.engine import Fetcher
    from asyncpager.export import export
    from asyncpager.progress import Progress

    query, checkpoint, sink = check_export_args(args)
    if assigned is not None and not (args.command == "dynamodb" and args.max_read_units):
        # A worker: the coordinator planned (and checked) already; only a
        # read-unit budget comes from the table, and so needs the plan.
        streams, keys, limits, total = assigned, label_keys(args), _rate_limits(args), None
    else:
        streams, keys, limits, total = await _plan(args)
        if assigned is not None:
            streams = assigned
    if rate_share != 1.0:
        from asyncpager.pacing import share_limits

        limits = share_limits(limits, rate_share)
    plain_dynamodb = args.command == "dynamodb" and not args.dynamodb_json
    from asyncpager.sinks import CsvSink, JsonlSink, ParquetSink

    json_lines = isinstance(sink, JsonlSink)
    # S3 listings to Parquet and CSV are parsed in raw "lines" mode (raw_services).
    parquet = isinstance(sink, ParquetSink) and query is None
    csv = isinstance(sink, CsvSink) and query is None
    records = make_records(
        query=query,
        plain_dynamodb=plain_dynamodb,
        label_keys=keys,
        json_lines=json_lines,
        typed_dynamodb=isinstance(sink, ParquetSink | CsvSink),
        object_columns=parquet and args.command == "s3",
        object_records=csv and args.command == "s3",
    )
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    progress = Progress(enabled=show, total_items=total)
    fetcher = Fetcher(
        concurrency=args.concurrency,
        # Pages wait for the one consumer that writes them. The budget counts
        # pages as they sit in memory: text kept for the writer (item lines)
        # about its size on the wire, parsed pages several times it (a
        # DynamoDB page of typed items, --dynamodb-json, about 12 times).
        # 128 MiB is seconds of text pages and still four parsed DynamoDB
        # pages: at 64 MiB, two of those, the typed export ran a third
        # slower; counted on the wire (32 MiB), it held 500 MiB.
        queue_bytes=CLI_QUEUE_BYTES,
        rate_limits=limits,
        on_stats=live_stats or progress.update,
        on_error="continue",
        verify_ssl=not args.no_verify_ssl,
        fast_parse=False if args.no_fast_parse else None,
        lean_http=False if args.no_lean_http else None,
        direct=False if args.no_direct else None,
        raw_services=raw_services(
            args.command, plain_dynamodb, query, json_lines, parquet, csv=csv
        ),
    )
    with progress:
        async with fetcher:
            result = await until_interrupted(
                interrupted,
                lambda: export(
                    streams,
                    sink,
                    records,
                    checkpoint=checkpoint,
                    fingerprint=fingerprint(_plan_fingerprint(args)),
                    max_items=args.max_items,
                    commit_interval=args.commit_interval,
                    fetcher=fetcher,
                    more=more(fetcher) if more is not None else None,
                    gives=gives,
                ),
            )
    if args.stats:
        _write_stats(args.stats, fetcher, result)
    if interrupted.is_set():
        saved = "; progress saved" if checkpoint is not None else ""
        print(f"asyncpager: interrupted{saved}", file=sys.stderr)
        return EXIT_INTERRUPTED
    assert result is not None
    if result.already_complete:
        progress.say(f"asyncpager: already complete ({result.items_written} items)")
        return EXIT_OK
    report = result.report
    if report is not None and report.failures:
        for line in failure_lines(failure_records(report.failures)):
            print(f"asyncpager: {line}", file=sys.stderr)
        return EXIT_FAILED
    progress.summary(fetcher.stats, result.items_written)
    return EXIT_OK


def failure_records(failures: Sequence[Any]) -> list[dict[str, str]]:
    """A run's failed streams (:attr:`RunReport.failures`) as ``--stats``
    lists them: the listing, the stream and the error."""
    return [
        {"source": f.stream.source, "stream": f.stream.name, "error": str(f.error)}
        for f in failures
    ]


#: What differs between streams that failed alike: the query string of the
#: URL a connection error names (each range's own ``start-after``), and the
#: token each had reached.
_PER_STREAM = (
    (re.compile(r"(\bhttps?://[^\s\"'?]*)\?[^\s\"']*"), r"\1"),
    (re.compile(r"; last_token=.*$"), ""),
)


def _alike(error: str) -> str:
    for pattern, replacement in _PER_STREAM:
        error = pattern.sub(replacement, error)
    return error


def failure_lines(failures: Sequence[Mapping[str, str]]) -> list[str]:
    """One line per listing and error (``failures`` as
    :func:`failure_records` gives them): the key ranges of a bucket that
    does not exist fail alike, and 32 lines that differ only in their range
    say it no better than one. Errors that differ only in what is each
    stream's own (the query of a URL that could not be reached, the last
    token) are alike; ``--stats`` keeps each whole."""
    groups: dict[tuple[str, str], list[Mapping[str, str]]] = {}
    for failed in failures:
        groups.setdefault((failed["source"], _alike(failed["error"])), []).append(failed)
    lines = []
    for (source, error), alike in groups.items():
        if len(alike) == 1:
            lines.append(f"stream {alike[0]['stream']} failed: {alike[0]['error']}")
        else:
            lines.append(f"{len(alike)} streams of {source} failed: {error}")
    return lines


def raw_services(
    command: str,
    plain_dynamodb: bool,
    query: Any,
    json_lines: bool,
    parquet: bool = False,
    *,
    csv: bool = False,
) -> dict[str, RawMode]:
    """Which pages the export can take raw, and how: only where what is
    written is the same (``--query`` reads the pages as botocore makes them).
    DynamoDB's plain values are made from its JSON as sent (a blob's base64
    text is what is written, so decoding it in the parse is wasted); S3
    listings written as JSON Lines get their timestamps as the ISO 8601 text
    that would be written (parsing each into a datetime and writing it back
    was a seventh of the export's CPU). DynamoDB's typed JSON written as JSON
    Lines is its items as sent: a blob's base64 text was decoded by the parse
    and encoded again by the writer, through a callback per blob. DynamoDB's
    plain values written as JSON Lines are the text that came with the type
    wrappers taken off (:mod:`asyncpager.item_lines`): decoding, converting
    and encoding every item again was three quarters of that export's CPU.
    S3 listings written as JSON Lines are made into those lines from the
    XML that came, objects of the usual shape at least; so are those written
    to Parquet, which reads the lines into its columns (see
    :class:`~asyncpager.item_lines.ObjectColumns`), and those written to
    CSV, which reads them back as records whose timestamps stay the ISO
    8601 text its cells hold (a datetime's ``isoformat()``, a microsecond a
    call with botocore's local time zone, was a tenth of that export)."""
    if query is not None:
        return {}
    if command == "dynamodb" and plain_dynamodb and json_lines:
        return {"dynamodb": "lines"}
    if command == "dynamodb" and (plain_dynamodb or json_lines):
        return {"dynamodb": True}
    if command == "s3" and (json_lines or parquet or csv):
        return {"s3": "lines"}
    return {}


def check_export_args(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """Everything about the output that can be wrong, found before any work:
    the query, the checkpoint, the output path. Returns the compiled query,
    the checkpoint (or None) and the sink."""
    from asyncpager.checkpoint import Checkpoint
    from asyncpager.sinks import detect_format, open_sink

    query = _compile_query(args.query)
    if args.checkpoint and not args.output:
        raise ConfigurationError("--checkpoint needs -o/--output: stdout cannot be resumed")
    # A worker's part that nothing resumes (see asyncpager.parallel): its
    # commits only tell the coordinator how far it may copy.
    scratch = bool(getattr(args, "scratch_part", False))
    checkpoint = Checkpoint(args.checkpoint, durable=not scratch) if args.checkpoint else None
    if checkpoint is not None:
        checkpoint.check_writable()
    options: dict[str, Any] = {}
    fmt = args.format or (detect_format(args.output)[0] if args.output else None)
    if scratch and fmt in ("jsonl", "csv"):
        options["durable"] = False
    if args.csv_raw_formulas:
        if fmt != "csv":
            raise ConfigurationError("--csv-raw-formulas applies to CSV output only")
        options["raw_formulas"] = True
    sink = open_sink(args.output, args.format, **options)
    return query, checkpoint, sink


def _write_stats(path: str, fetcher: Any, result: Any) -> None:
    body = fetcher.stats.as_dict()
    body["items_written"] = result.items_written if result is not None else None
    body["complete"] = result.complete if result is not None else False
    report = result.report if result is not None else None
    body["failures"] = failure_records(report.failures) if report is not None else []
    try:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(body, handle, indent=2, sort_keys=True)
    except OSError as exc:
        print(f"asyncpager: cannot write --stats {path}: {exc.strerror}", file=sys.stderr)


def _error_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:2000]


def _services(args: argparse.Namespace) -> list[str]:
    """The service the command pages through."""
    if args.command in ("s3", "dynamodb"):
        return [args.command]
    service = getattr(args, "service", None)
    return [service] if isinstance(service, str) else []


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    # --workers: started before anything else, to import while this plans.
    processes: list[Any] = []
    try:
        workers = 1 if args.command == "demo" or _on_cluster(args) else _workers(args)
    except ConfigurationError:
        workers = 1  # said again, as one line, from inside main_guarded
    if workers > 1:
        from asyncpager._spawn import start_workers, stop_workers

        processes = start_workers(workers, services=_services(args))

    async def body(interrupted: anyio.Event) -> int:
        if args.command == "demo":
            from asyncpager.demo import run_demo

            return int(await run_demo(args))
        if _on_cluster(args):
            from asyncpager.cluster._cli import run_cluster

            return await run_cluster(args, interrupted)
        if _workers(args) > 1:
            from asyncpager.parallel import run_parallel

            return await run_parallel(args, argv, interrupted, processes)
        return await _run_export(args, interrupted)

    try:
        return main_guarded(args, body)
    finally:
        if processes:
            # Normally stopped by the coordinator already; not if it never ran.
            stop_workers(processes)


def _workers(args: argparse.Namespace) -> int:
    """``--workers``, or by default one per core where the output can be
    joined from parts (JSON Lines, Parquet) and nothing counts across them."""
    if getattr(args, "workers", None):
        given = int(args.workers)
        args.workers = given
        return given
    import os

    from asyncpager.sinks import detect_format

    fmt = args.format or (detect_format(args.output)[0] if args.output else None) or "jsonl"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    auto = cores or 1
    if fmt not in ("jsonl", "parquet") or args.max_items is not None:
        auto = 1
    args.workers = auto
    return auto


def _tune_gc() -> None:
    """Make full garbage collections rare in this process.

    An export streams pages through a queue: tens of thousands of new dicts
    per second live for a moment, long enough to count as "long lived", so
    CPython's default thresholds (700, 10, 10) ran a full collection every
    dozen pages, each walking every object of the process (botocore's
    models included), about 70 ms apiece: 26 of them listing 300k keys.
    Pages hold no reference cycles (reference counting frees them), so
    fewer collections reclaim the same memory. Measured back to back on
    300k keys and 100k items (`--workers 1`, 50 ms per request): S3 export
    10.9 and 10.1 CPU-s -> 6.5 and 8.8; DynamoDB 8.5 and 7.1 -> 5.8 and 6.4.
    """
    import gc

    from asyncpager.parsers import freeze_pages

    gc.set_threshold(10_000, 50, 1000)
    # And pages are never walked at all (measured: a DynamoDB export of 100k
    # items, 50 ms per request, 9.9 -> 6.6 CPU-s).
    freeze_pages()


def main_guarded(args: argparse.Namespace, body: Callable[[anyio.Event], Awaitable[int]]) -> int:
    """Run ``body`` on the chosen event loop with Ctrl-C (and SIGTERM) turned
    into a clean stop, and every error into one line and an exit code."""
    interrupted_flag = {"set": False}
    _tune_gc()

    async def entry() -> int:
        interrupted = anyio.Event()

        async def watch_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    interrupted_flag["set"] = True
                    interrupted.set()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch_signals)
                try:
                    return await body(interrupted)
                finally:
                    tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            from asyncpager._groups import first_error

            raise first_error(group) from None
        raise AssertionError("unreachable")  # pragma: no cover

    try:
        use_uvloop = args.loop != "asyncio"
        if use_uvloop:
            try:
                import uvloop  # noqa: F401
            except ImportError:
                if args.loop == "uvloop":
                    raise ConfigurationError("--loop uvloop: uvloop is not installed") from None
                use_uvloop = False
        code: int = anyio.run(entry, backend="asyncio", backend_options={"use_uvloop": use_uvloop})
        return EXIT_INTERRUPTED if interrupted_flag["set"] and code == EXIT_OK else code
    except UsageError as exc:
        print(f"asyncpager: error: {_error_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigurationError as exc:
        print(f"asyncpager: error: {_error_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except CredentialsError:
        print(
            "asyncpager: error: no AWS credentials found (use --profile, environment "
            "variables or an instance role)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except StreamFailedError as exc:
        print(f"asyncpager: error: {_error_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except TransportError as exc:
        print(f"asyncpager: error: cannot reach the endpoint: {_error_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except AsyncPagerError as exc:
        print(f"asyncpager: error: {_error_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        # Raised before the signal watcher started, or past it: every commit
        # is atomic, so what was saved is consistent.
        print("asyncpager: interrupted; progress saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"asyncpager: error:{where} {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        # botocore's own errors outside a stream (a configuration file it
        # cannot parse, met while sampling the shard cuts): one line too.
        if not _is_botocore_error(exc):
            raise
        print(f"asyncpager: error: {_error_line(exc)}", file=sys.stderr)
        return EXIT_FAILED


def _is_botocore_error(exc: BaseException) -> bool:
    exceptions = sys.modules.get("botocore.exceptions")
    return exceptions is not None and isinstance(exc, exceptions.BotoCoreError)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["endpoint"]:
        from asyncpager.testing.__main__ import main as endpoint_main

        return int(endpoint_main(argv[1:], prog="asyncpager endpoint") or 0)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"asyncpager: error: {_error_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("asyncpager: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return _run(args, argv)


def run() -> NoReturn:
    """The ``asyncpager`` command: :func:`main`, then leave without tearing
    the interpreter down.

    Everything the command writes is closed (and synced) before ``main``
    returns; what is left at exit is freeing every object one by one, which
    took 0.23 s of a 7.5 s export here (botocore's models, the plan, the
    parsers' tables). So once the standard streams are flushed, other
    threads joined and ``atexit`` handlers run, the process ends at once. A
    flush that fails (a closed pipe) leaves the ordinary way, with Python's
    own message and code."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    import atexit
    import os
    import threading

    # What the interpreter does first on its way out: the thread pools'
    # exit hooks (Dask's, the event loop's), then a join of every thread
    # that is not a daemon; then the atexit handlers.
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
