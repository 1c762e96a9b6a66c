"""One peer listing one workload, in a process of its own.

    python -m benchmarks._child PEER '{"kind": "s3", "url": ..., ...}'

Prints one line ``RESULT {"items": ..., "wall": ..., "cpu": ...}`` on stdout.
``wall`` and ``cpu`` cover the listing only (clients created, every page
fetched, parsed and its items counted), not the interpreter's start-up or
imports, which the parent measures as a whole through ``wait4``. ``cpu`` is
``time.process_time()``: every thread of the process.

Each peer is written the way its documentation shows, with one deliberate
change: where several requests share one client, its connection pool is made
as large as the number of streams (botocore's default of 10 would otherwise
decide the result).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.scenarios import HOME_REGION, Workload

Page = dict[str, Any]
Result = dict[str, Any]


def count_page(kind: str, page: Page) -> int:
    if kind == "s3":
        return len(page.get("Contents") or ())
    if kind == "dynamodb":
        return len(page.get("Items") or ())
    return sum(len(r.get("Instances") or ()) for r in page.get("Reservations") or ())


def _config(pool: int = 10) -> Any:
    from botocore.config import Config

    return Config(max_pool_connections=max(10, pool))


# -- boto3 ---------------------------------------------------------------------


def _boto3_clients(w: Workload, service: str, regions: Iterable[str], pool: int = 10) -> list[Any]:
    """Clients made in this thread from one session, as boto3 asks (a session
    is not thread-safe; a client is)."""
    import boto3

    session = boto3.session.Session()
    return [
        session.client(service, region_name=r, endpoint_url=w.url, config=_config(pool))
        for r in regions
    ]


def _sync_pages(client: Any, operation: str, **params: Any) -> Iterable[Page]:
    return client.get_paginator(operation).paginate(**params)  # type: ignore[no-any-return]


def _count(kind: str, pages: Iterable[Page]) -> int:
    return sum(count_page(kind, page) for page in pages)


def _s3_top_prefixes(client: Any, bucket: str) -> tuple[int, list[str]]:
    """Keys at the root and the top-level prefixes: how one bucket is fanned
    out by hand when there is no key-range planner."""
    root = 0
    prefixes: list[str] = []
    for page in _sync_pages(client, "list_objects_v2", Bucket=bucket, Delimiter="/"):
        root += len(page.get("Contents") or ())
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes") or ()]
    return root, prefixes


def boto3_sync(w: Workload) -> int:
    if w.kind == "s3":
        (s3,) = _boto3_clients(w, "s3", [HOME_REGION])
        return sum(_count("s3", _sync_pages(s3, "list_objects_v2", Bucket=b)) for b in w.buckets)
    if w.kind == "dynamodb":
        (ddb,) = _boto3_clients(w, "dynamodb", [HOME_REGION])
        return _count("dynamodb", _sync_pages(ddb, "scan", TableName=w.table))
    config = {"PageSize": w.page_size}
    return sum(
        _count("ec2", _sync_pages(ec2, "describe_instances", PaginationConfig=config))
        for ec2 in _boto3_clients(w, "ec2", w.regions)
    )


def boto3_threads(w: Workload) -> int:
    """One paginator per bucket, segment or region, each in a thread of its own."""
    jobs: list[Callable[[], int]] = []
    base = 0

    def job(client: Any, operation: str, **params: Any) -> Callable[[], int]:
        return lambda: _count(w.kind, _sync_pages(client, operation, **params))

    if w.kind == "s3":
        if len(w.buckets) == 1:
            bucket = w.buckets[0]
            (probe,) = _boto3_clients(w, "s3", [HOME_REGION])
            base, prefixes = _s3_top_prefixes(probe, bucket)
            (s3,) = _boto3_clients(w, "s3", [HOME_REGION], pool=len(prefixes))
            jobs = [job(s3, "list_objects_v2", Bucket=bucket, Prefix=p) for p in prefixes]
        else:
            (s3,) = _boto3_clients(w, "s3", [HOME_REGION], pool=len(w.buckets))
            jobs = [job(s3, "list_objects_v2", Bucket=b) for b in w.buckets]
    elif w.kind == "dynamodb":
        total = w.segments or 1
        (ddb,) = _boto3_clients(w, "dynamodb", [HOME_REGION], pool=total)
        jobs = [
            job(ddb, "scan", TableName=w.table, Segment=s, TotalSegments=total)
            for s in range(total)
        ]
    else:
        config = {"PageSize": w.page_size}
        clients = _boto3_clients(w, "ec2", w.regions)
        jobs = [job(ec2, "describe_instances", PaginationConfig=config) for ec2 in clients]
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        futures = [pool.submit(run) for run in jobs]
        return base + sum(future.result() for future in futures)


def parallel_scan(w: Workload) -> int:
    import aws_dynamodb_parallel_scan

    total = w.segments or 1
    (client,) = _boto3_clients(w, "dynamodb", [HOME_REGION], pool=total)
    paginator = aws_dynamodb_parallel_scan.get_paginator(client)
    return _count("dynamodb", paginator.paginate(TableName=w.table, TotalSegments=total))


# -- aiobotocore ---------------------------------------------------------------


async def _aio_count(client: Any, kind: str, operation: str, **params: Any) -> int:
    n = 0
    async for page in client.get_paginator(operation).paginate(**params):
        n += count_page(kind, page)
    return n


def _aio_client(session: Any, service: str, url: str, region: str, pool: int = 10) -> Any:
    return session.create_client(
        service, region_name=region, endpoint_url=url, config=_config(pool)
    )


async def aiobotocore_peer(w: Workload, gather: bool) -> int:
    """One paginator per bucket, segment or region: one after the other, or
    all at once with ``asyncio.gather``. All clients come from one session."""
    from contextlib import AsyncExitStack

    from aiobotocore.session import get_session

    session = get_session()

    async with AsyncExitStack() as stack:

        async def client(service: str, region: str = HOME_REGION, pool: int = 10) -> Any:
            made = _aio_client(session, service, w.url, region, pool if gather else 10)
            return await stack.enter_async_context(made)

        base = 0
        if w.kind == "s3" and len(w.buckets) == 1 and gather:
            bucket = w.buckets[0]
            probe = await client("s3")
            prefixes: list[str] = []
            async for page in probe.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Delimiter="/"
            ):
                base += count_page("s3", page)
                prefixes += [p["Prefix"] for p in page.get("CommonPrefixes") or ()]
            s3 = await client("s3", pool=len(prefixes))
            jobs = [_job(s3, "s3", "list_objects_v2", Bucket=bucket, Prefix=p) for p in prefixes]
        elif w.kind == "s3":
            s3 = await client("s3", pool=len(w.buckets))
            jobs = [_job(s3, "s3", "list_objects_v2", Bucket=b) for b in w.buckets]
        elif w.kind == "dynamodb" and gather:
            total = w.segments or 1
            ddb = await client("dynamodb", pool=total)
            jobs = [
                _job(ddb, "dynamodb", "scan", TableName=w.table, Segment=s, TotalSegments=total)
                for s in range(total)
            ]
        elif w.kind == "dynamodb":
            ddb = await client("dynamodb")
            jobs = [_job(ddb, "dynamodb", "scan", TableName=w.table)]
        else:
            config = {"PageSize": w.page_size}
            jobs = [
                _job(await client("ec2", r), "ec2", "describe_instances", PaginationConfig=config)
                for r in w.regions
            ]
        if gather:
            return base + sum(await asyncio.gather(*(run() for run in jobs)))
        for run in jobs:
            base += await run()
        return base


def _job(client: Any, kind: str, operation: str, **params: Any) -> Callable[[], Awaitable[int]]:
    return lambda: _aio_count(client, kind, operation, **params)


# -- asyncpager ----------------------------------------------------------------


async def asyncpager_peer(w: Workload, botocore_parser: bool, info: Result) -> int:
    """The Fetcher with its defaults; with ``botocore_parser``, without the
    compiled parsers it installs by default."""
    from asyncpager import Fetcher, plan_s3
    from asyncpager.plan.dynamodb import plan_scan
    from asyncpager.plan.regions import plan_regions

    options: dict[str, Any] = {"fast_parse": False} if botocore_parser else {}
    async with Fetcher(**options) as fetcher:
        if w.kind == "s3":
            # Sampled first, as README.md shows and the command does: the
            # sampling's round trips are timed with the listing.
            from asyncpager.plan.s3 import sample_urls

            urls = [f"s3://{b}" for b in w.buckets]
            (one,) = plan_s3(urls[:1], shards=1, region=HOME_REGION, endpoint_url=w.url)
            samples = await sample_urls(urls, await fetcher.client_for(one))
            streams = plan_s3(
                urls,
                shards=max(1, fetcher.concurrency // len(urls)),
                region=HOME_REGION,
                endpoint_url=w.url,
                samples=samples,
            )
        elif w.kind == "dynamodb":
            assert w.table is not None
            plan = await plan_scan(w.table, region=HOME_REGION, endpoint_url=w.url)
            streams = plan.streams
            info["segments"] = plan.segments
        else:
            streams = await plan_regions(
                "ec2",
                "DescribeInstances",
                regions=list(w.regions),
                resolve_accounts=False,
                endpoint_url=w.url,
                page_size=w.page_size,
            )
        info["streams"] = len(streams)
        info["concurrency"] = fetcher.concurrency
        n = 0
        async with fetcher.pages(streams) as flow:
            async for _stream, page in flow:
                n += count_page(w.kind, page)
        # Asked after the listing: made up front, the clients (17 regions:
        # about a second of CPU) kept every request waiting until the last
        # was made, where the Fetcher makes each on its stream's first turn.
        info["parser"] = await _parser(fetcher, streams)
        if flow.report is not None:
            stats = flow.report.stats
            info.update(
                requests=stats.requests,
                retries=stats.retries,
                throttles=stats.throttles,
                splits=stats.splits,
                peak_queue_depth=stats.peak_queue_depth,
                streams_total=stats.streams_total,
            )
        return n


async def _parser(fetcher: Any, streams: list[Any]) -> str:
    """Which parser the Fetcher's clients use (made already by the listing;
    any that is not is made now)."""
    try:
        from asyncpager.parsers import is_installed
    except ImportError:
        return "botocore"
    clients = {}
    for stream in streams:
        if (stream.service, stream.region) not in clients:
            clients[stream.service, stream.region] = await fetcher.client_for(stream)
    fast = [bool(is_installed(client)) for client in clients.values()]
    return "fast" if fast and all(fast) else "botocore"


# -- running -------------------------------------------------------------------


def _run_async(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())


def run_peer(peer: str, w: Workload) -> Result:
    info: Result = {}
    runners: dict[str, Callable[[], int]] = {
        "boto3": lambda: boto3_sync(w),
        "boto3-threads": lambda: boto3_threads(w),
        "parallel-scan": lambda: parallel_scan(w),
        "aiobotocore": lambda: _run_async(lambda: aiobotocore_peer(w, gather=False)),
        "aiobotocore-gather": lambda: _run_async(lambda: aiobotocore_peer(w, gather=True)),
        "asyncpager": lambda: _run_async(lambda: asyncpager_peer(w, False, info)),
        "asyncpager-botocore": lambda: _run_async(lambda: asyncpager_peer(w, True, info)),
    }
    _warm_imports(peer)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    items = runners[peer]()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"items": items, "wall": wall, "cpu": cpu, **info}


def _warm_imports(peer: str) -> None:
    """Import what the peer uses before the clock starts (a library user
    pays imports once per process, not once per listing)."""
    import botocore.session  # noqa: F401

    if peer.startswith(("boto3", "parallel")):
        import boto3  # noqa: F401
    if peer == "parallel-scan":
        import aws_dynamodb_parallel_scan  # noqa: F401
    if peer.startswith(("aiobotocore", "asyncpager")):
        import aiobotocore.session  # noqa: F401

        with contextlib.suppress(ImportError):
            import uvloop  # noqa: F401
    if peer.startswith("asyncpager"):
        # ``import asyncpager`` is lazy: name every module the peer runs, and
        # anyio's asyncio backend, which anyio imports on first use.
        import anyio._backends._asyncio  # noqa: F401

        import asyncpager.engine
        import asyncpager.parsers
        import asyncpager.plan.dynamodb
        import asyncpager.plan.regions
        import asyncpager.plan.s3  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    peer, spec = args[0], json.loads(args[1])
    result = run_peer(peer, Workload.from_json(spec))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
