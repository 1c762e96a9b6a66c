"""The engine against moto: many streams, bounded queues, errors, cancellation."""

from __future__ import annotations

import asyncio
import gc
import uuid
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import asyncpager
from asyncpager.engine import Fetcher
from asyncpager.pacing import RateLimit
from asyncpager.streams import Stream
from tests.conftest import create_table

pytestmark = pytest.mark.anyio

REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2", "sa-east-1", "eu-central-1"]


@pytest.fixture(scope="module")
def fleet(moto_server: str) -> dict[str, Any]:
    """20 buckets, a table and instances in 5 regions, made with boto3."""
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_server)
    run = uuid.uuid4().hex[:8]
    buckets = []
    for b in range(20):
        name = f"engine-{run}-{b:02d}"
        s3.create_bucket(Bucket=name)
        for k in range(b % 7 + 3):
            s3.put_object(Bucket=name, Key=f"k/{k:03d}-{b}", Body=b"")
        buckets.append(name)
    ddb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=moto_server)
    table = f"engine-{run}"
    create_table(ddb, table)
    for i in range(60):
        ddb.put_item(TableName=table, Item={"pk": {"S": f"item-{i:03d}"}, "v": {"N": str(i)}})
    for i, region in enumerate(REGIONS):
        ec2 = boto3.client("ec2", region_name=region, endpoint_url=moto_server)
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        ec2.run_instances(ImageId=image, MinCount=i + 1, MaxCount=i + 1)
    return {"buckets": buckets, "table": table, "endpoint": moto_server}


def all_streams(fleet: dict[str, Any], page_size: int = 2) -> list[Stream]:
    url = fleet["endpoint"]
    streams = [
        Stream(
            "s3",
            "list_objects_v2",
            {"Bucket": b},
            region="us-east-1",
            endpoint_url=url,
            page_size=page_size,
        )
        for b in fleet["buckets"]
    ]
    streams += [
        Stream(
            "dynamodb",
            "scan",
            {"TableName": fleet["table"], "Segment": s, "TotalSegments": 16},
            region="us-east-1",
            endpoint_url=url,
            page_size=page_size,
        )
        for s in range(16)
    ]
    streams += [
        Stream("ec2", "describe_instances", {}, region=r, endpoint_url=url, labels={"region": r})
        for r in REGIONS
    ]
    return streams


def sequential(fleet: dict[str, Any]) -> set[tuple[str, str]]:
    import boto3

    url = fleet["endpoint"]
    out: set[tuple[str, str]] = set()
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=url)
    for b in fleet["buckets"]:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b):
            out |= {("s3", f"{b}/{o['Key']}") for o in page.get("Contents", [])}
    ddb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=url)
    for page in ddb.get_paginator("scan").paginate(TableName=fleet["table"]):
        out |= {("dynamodb", i["pk"]["S"]) for i in page["Items"]}
    for r in REGIONS:
        ec2 = boto3.client("ec2", region_name=r, endpoint_url=url)
        for page in ec2.get_paginator("describe_instances").paginate():
            for res in page["Reservations"]:
                out |= {("ec2", f"{r}/{i['InstanceId']}") for i in res["Instances"]}
    return out


def items_of(stream: Stream, page: dict[str, Any]) -> list[tuple[str, str]]:
    if stream.service == "s3":
        bucket = stream.params["Bucket"]
        return [("s3", f"{bucket}/{o['Key']}") for o in page.get("Contents", [])]
    if stream.service == "dynamodb":
        return [("dynamodb", i["pk"]["S"]) for i in page["Items"]]
    return [
        ("ec2", f"{stream.region}/{i['InstanceId']}")
        for res in page["Reservations"]
        for i in res["Instances"]
    ]


def other_tasks() -> set[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and not t.done()}


async def test_many_streams_equal_sequential_listing(fleet: dict[str, Any]) -> None:
    streams = all_streams(fleet)
    assert len(streams) >= 41
    seen: list[tuple[str, str]] = []
    async with Fetcher(concurrency=16, queue_pages=8) as fetcher:
        async for stream, page in fetcher.pages(streams):
            seen += items_of(stream, page)
    assert len(seen) == len(set(seen)), "an item came twice"
    assert set(seen) == sequential(fleet)


async def test_run_with_consumers_and_report(fleet: dict[str, Any]) -> None:
    streams = all_streams(fleet) + all_streams(fleet, page_size=3)[:20]  # 61 streams
    seen: list[tuple[str, str]] = []
    result_items = 0

    async def consume(stream: Stream, page: dict[str, Any]) -> None:
        nonlocal result_items
        await anyio.lowlevel.checkpoint()
        seen.extend(items_of(stream, page))
        # The engine counts result-key items: EC2's are reservations.
        result_items += len(page.get("Contents", page.get("Items", page.get("Reservations", []))))

    async with Fetcher(concurrency=12, queue_pages=4) as fetcher:
        report = await fetcher.run(streams, consume, consumers=4)
    assert report.ok
    assert report.stats.streams_done == len(streams) == 61
    assert report.stats.items == result_items
    # The first 20 buckets were listed twice (two page sizes): each key twice.
    expected = sequential(fleet)
    assert set(seen) == expected
    s3_keys = [x for x in seen if x[0] == "s3"]
    assert len(s3_keys) == 2 * len({x for x in expected if x[0] == "s3"})
    assert all(s.status == "done" and s.committed is not None for s in report.streams)
    assert report.resume_streams() == []


async def test_slow_consumer_bounds_pages_held(fleet: dict[str, Any]) -> None:
    streams = all_streams(fleet, page_size=1)[:20]
    produced = 0
    consumed = 0
    peak = 0

    fetcher = Fetcher(concurrency=4, queue_pages=3)
    async with fetcher, fetcher.pages(streams) as flow:
        async for _stream, _page in flow:
            produced = fetcher.stats.pages
            # Pages fetched but not yet consumed: in the queue, in the
            # workers' hands waiting for room, and the one held here.
            peak = max(peak, produced - consumed)
            consumed += 1
            await anyio.sleep(0.005)
    assert consumed == fetcher.stats.pages >= 100
    assert peak <= 3 + 4 + 1
    assert fetcher.stats.peak_queue_depth <= 3


async def test_break_stops_everything_promptly(fleet: dict[str, Any]) -> None:
    before = other_tasks()
    async with Fetcher(concurrency=8, queue_pages=2) as fetcher:
        with anyio.fail_after(5):
            async for _stream, _page in fetcher.pages(all_streams(fleet, page_size=1)):
                break
            gc.collect()
            # The dropped flow cancelled its workers: nothing keeps fetching.
            await anyio.sleep(0.2)
            pages = fetcher.stats.pages
            await anyio.sleep(0.3)
            assert fetcher.stats.pages == pages
        clients = list(fetcher._clients.values())
        assert clients
    assert other_tasks() <= before
    for client in clients:
        session = client._endpoint.http_session
        inner = getattr(session, "_session", None)
        assert inner is None or inner.closed


async def test_cancelling_the_caller_stops_promptly(fleet: dict[str, Any]) -> None:
    before = other_tasks()
    start = anyio.current_time()
    async with Fetcher(concurrency=8, queue_pages=2) as fetcher:
        with anyio.move_on_after(0.3) as scope:
            async for _stream, _page in fetcher.pages(all_streams(fleet, page_size=1)):
                await anyio.sleep(0.05)
        assert scope.cancelled_caught
    assert anyio.current_time() - start < 3
    assert other_tasks() <= before


async def test_a_cancelled_caller_takes_no_queued_page(fleet: dict[str, Any]) -> None:
    # Queued pages are handed over without a turn of the loop; a caller
    # cancelled by then still stops there, taking nothing.
    before = other_tasks()
    fetcher = Fetcher(concurrency=8, queue_pages=4)
    async with fetcher, fetcher.pages(all_streams(fleet, page_size=1)) as flow:
        await flow.__anext__()
        with anyio.fail_after(10):
            # The engine's statistics are all there is to wait on.
            while fetcher.stats.queue_depth == 0:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        taken: list[Any] = []
        with anyio.CancelScope() as scope:
            scope.cancel()
            taken.append(await flow.__anext__())
        assert scope.cancelled_caught
        assert taken == []
        # The flow is closed: nothing more comes out of it.
        assert [item async for item in flow] == []
    assert other_tasks() <= before


async def test_consumer_error_is_raised_alone(fleet: dict[str, Any]) -> None:
    before = other_tasks()

    async def consume(stream: Stream, page: dict[str, Any]) -> None:
        if stream.service == "dynamodb":
            raise KeyError("boom")

    with anyio.fail_after(10):
        async with Fetcher(concurrency=8) as fetcher:
            with pytest.raises(KeyError, match="boom"):
                await fetcher.run(all_streams(fleet), consume, consumers=3)
    assert other_tasks() <= before


async def test_failed_stream_raises_with_its_name(fleet: dict[str, Any]) -> None:
    url = fleet["endpoint"]
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    streams = [
        *all_streams(fleet)[:10],
        Stream("s3", "list_objects_v2", {"Bucket": missing}, region="us-east-1", endpoint_url=url),
    ]
    async with Fetcher(concurrency=4) as fetcher:
        with pytest.raises(asyncpager.StreamFailedError) as info:
            async for _ in fetcher.pages(streams):
                pass
    assert missing in str(info.value)
    assert isinstance(info.value.__cause__, Exception)

    # Raised out of the Fetcher's block, it is the same error, not a group.
    async def list_all() -> None:
        async with Fetcher(concurrency=4) as fetcher:
            async for _ in fetcher.pages(streams):
                pass

    with pytest.raises(asyncpager.StreamFailedError) as outside:
        await list_all()
    assert missing in str(outside.value)


async def test_an_error_of_the_block_leaves_the_fetcher_as_itself() -> None:
    class Mine(Exception):
        pass

    with pytest.raises(Mine):
        async with Fetcher():
            raise Mine


async def test_on_error_continue_reports_failures(fleet: dict[str, Any]) -> None:
    url = fleet["endpoint"]
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    good = all_streams(fleet)[:10]
    streams = [
        *good,
        Stream("s3", "list_objects_v2", {"Bucket": missing}, region="us-east-1", endpoint_url=url),
    ]
    seen: list[tuple[str, str]] = []

    async def consume(stream: Stream, page: dict[str, Any]) -> None:
        seen.extend(items_of(stream, page))

    async with Fetcher(concurrency=4, on_error="continue") as fetcher:
        report = await fetcher.run(streams, consume)
    assert not report.ok
    assert [f.stream.params["Bucket"] for f in report.failures] == [missing]
    assert isinstance(report.failures[0].error, asyncpager.NotFoundError)
    assert report.stats.streams_done == 10
    assert len(report.resume_streams()) == 1


async def test_rate_limit_paces_requests_on_a_fake_clock(fleet: dict[str, Any]) -> None:
    clock = asyncpager.FakeClock()
    streams = all_streams(fleet, page_size=1)[:6]
    async with Fetcher(concurrency=6, rate_limits=[RateLimit(10, burst=1)], clock=clock) as fetcher:
        report = await fetcher.run(streams, _ignore)
    requests = report.stats.requests
    assert requests >= 25
    # burst 1 then 10/s: the last of n requests cannot start before (n-1)/10 s.
    assert clock.now() >= (requests - 1) / 10 - 1e-9
    assert report.stats.waited_on_buckets > 0


async def test_committed_position_resumes_exactly(fleet: dict[str, Any]) -> None:
    bucket = fleet["buckets"][6]  # 9 keys
    url = fleet["endpoint"]
    stream = Stream(
        "s3",
        "list_objects_v2",
        {"Bucket": bucket},
        region="us-east-1",
        endpoint_url=url,
        page_size=2,
    )
    first: list[str] = []
    async with Fetcher(concurrency=1, queue_pages=1) as fetcher:
        async with fetcher.pages([stream]) as flow:
            async for _s, page in flow:
                first += [o["Key"] for o in page["Contents"]]
                if len(first) >= 4:
                    break
        assert flow.report is not None
    # Two pages were handed out; the second was still held when we left, so
    # only the first one is committed.
    resume = flow.report.streams[0].committed
    assert resume is not None
    assert resume.position is not None
    rest: list[str] = []
    async with Fetcher(concurrency=1) as fetcher:
        async for _s, page in fetcher.pages([resume]):
            rest += [o["Key"] for o in page["Contents"]]
    assert first[:2] + rest == sorted(first[:2] + rest)
    assert len(first[:2] + rest) == 9
    assert set(first) <= set(first[:2] + rest)


async def _ignore(stream: Stream, page: dict[str, Any]) -> None:
    return None


async def test_stats_callback_sees_progress_and_run_ends(fleet: dict[str, Any]) -> None:
    seen: list[int] = []

    def on_stats(stats: asyncpager.Stats) -> None:
        seen.append(stats.pages)

    with anyio.fail_after(30):
        async with Fetcher(concurrency=4, on_stats=on_stats, stats_interval=0.01) as fetcher:
            report = await fetcher.run(all_streams(fleet)[:8], _ignore)
    assert report.ok
    assert seen, "the callback was never called"
    assert seen[-1] == report.stats.pages
    assert seen == sorted(seen)


async def test_a_fetched_stream_is_resumed_until_its_pages_are_consumed(
    fleet: dict[str, Any],
) -> None:
    # The stream's last page is fetched long before the slow consumer takes
    # it: a checkpoint taken then must still hold the stream, or the pages
    # in the queue would be lost on resume.
    stream = all_streams(fleet, page_size=1)[6]  # a 9-key bucket: 9 pages
    fetched = anyio.Event()

    def on_stats(stats: asyncpager.Stats) -> None:
        if stats.streams_done:
            fetched.set()

    fetcher = Fetcher(concurrency=2, queue_pages=32, on_stats=on_stats, stats_interval=0.01)
    async with fetcher, fetcher.pages([stream]) as flow:
        first = await flow.__anext__()
        with anyio.fail_after(10):
            await fetched.wait()
        resume = fetcher.resume_streams()
        assert len(resume) == 1
        assert resume[0].params == stream.params
        rest = [page async for _s, page in flow]
        assert fetcher.resume_streams() == []
    keys = [o["Key"] for _s, p in [first, *[(None, r) for r in rest]] for o in p["Contents"]]
    assert len(keys) == len(set(keys)) == 9


async def test_a_stream_whose_last_page_was_consumed_is_not_resumed() -> None:
    # A's one page is taken and acknowledged while the only worker waits on
    # B's slow answer, before it comes back to A to find nothing more. A
    # checkpoint taken then held A at its last token, which is None after a
    # last page: from its start. Resumed, A's items came twice (a crash soak
    # found three scan segments written twice this way).
    from asyncpager.testing import Bucket, LatencyModel, LocalEndpoint, Table

    with LocalEndpoint(
        buckets=[Bucket("slow-bucket", 30, "flat")],
        tables=[Table("tiny-table", 5)],
        latency=[LatencyModel(service="s3", fixed=0.6)],
    ) as ep:
        a = Stream("dynamodb", "scan", {"TableName": "tiny-table"}, region="us-east-1",
                   endpoint_url=ep.url)  # fmt: skip
        b = Stream("s3", "list_objects_v2", {"Bucket": "slow-bucket"}, region="us-east-1",
                   endpoint_url=ep.url, page_size=10)  # fmt: skip
        snapshot: list[Stream] = []
        async with Fetcher(concurrency=1) as fetcher, fetcher.pages([a, b]) as flow:
            stream, page = await flow.__anext__()
            assert stream.service == "dynamodb"
            assert len(page["Items"]) == 5

            async def look() -> None:
                await anyio.sleep(0.3)  # A acknowledged, B's answer not back yet
                snapshot.extend(fetcher.resume_streams())

            async with anyio.create_task_group() as tg:
                tg.start_soon(look)
                stream, _page = await flow.__anext__()  # acknowledges A's page
            assert stream.service == "s3"
            rest = [s async for s, _p in flow]
    assert [s.service for s in rest] == ["s3", "s3"]
    assert [s.service for s in snapshot] == ["s3"]


async def test_raw_services_page_a_binary_key_table_exactly(moto_server: str) -> None:
    # Raw pages keep DynamoDB's base64 text for blobs, but the next request's
    # ExclusiveStartKey is made from LastEvaluatedKey: that must still be bytes.
    import base64

    import boto3

    ddb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=moto_server)
    table = f"raw-{uuid.uuid4().hex[:8]}"
    create_table(ddb, table, "B")
    keys = {bytes([n, 200 - n]) for n in range(30)}
    for key in keys:
        ddb.put_item(TableName=table, Item={"pk": {"B": key}, "v": {"B": key * 2}})
    # One stream: moto fails parallel scans of a binary key (HTTP 500).
    streams = [
        Stream(
            "dynamodb",
            "scan",
            {"TableName": table},
            region="us-east-1",
            endpoint_url=moto_server,
            page_size=4,
        )
    ]
    seen: list[bytes] = []
    pages = 0
    async with Fetcher(raw_services={"dynamodb"}) as fetcher:
        async for _stream, page in fetcher.pages(streams):
            pages += 1
            for item in page["Items"]:
                assert isinstance(item["v"]["B"], str)
                seen.append(base64.b64decode(item["pk"]["B"]))
    assert pages >= 8
    assert sorted(seen) == sorted(keys)


def _segments(url: str, table: str, total: int) -> list[Stream]:
    """A parallel scan of ``table``, 50 items per page."""
    return [
        Stream(
            "dynamodb",
            "scan",
            {"TableName": table, "Segment": s, "TotalSegments": total},
            region="us-east-1",
            endpoint_url=url,
            page_size=50,
        )
        for s in range(total)
    ]


async def test_byte_budget_bounds_pages_in_flight_as_parsed() -> None:
    # A request reserves its page's expected size before it is sent, so the
    # pages in flight count against queue_bytes as the queued ones do: with
    # 16 segments and 64 workers, not every segment holds a page at once.
    # And pages count as parsed: a DynamoDB page of typed items is several
    # times its JSON, and a budget counted on the wire let a library scan
    # hold 1.9 GB at 256 MB.
    from asyncpager._footprint import footprint
    from asyncpager.testing import LocalEndpoint, Table

    with LocalEndpoint(tables=[Table("parsed", 8_000, item_shape="mixed")]) as ep:
        streams = _segments(ep.url, "parsed", 16)
        # A budget of eight full pages by their size on the wire.
        async with Fetcher() as probe, probe.pages(streams[:1]) as first:
            async for _stream, page in first:
                budget = 8 * int(page["ResponseMetadata"]["HTTPHeaders"]["content-length"])
                break
        wire: list[int] = []
        memory: list[int] = []
        consumed = peak = 0
        fetcher = Fetcher(concurrency=64, queue_pages=64, queue_bytes=budget)
        async with fetcher, fetcher.pages(streams) as flow:
            async for _stream, page in flow:
                wire.append(int(page["ResponseMetadata"]["HTTPHeaders"]["content-length"]))
                memory.append(footprint(page))
                if consumed < 100:
                    peak = max(peak, fetcher.stats.pages - consumed)
                consumed += 1
                await anyio.sleep(0.002)
    assert consumed == fetcher.stats.pages >= 160
    full_wire = sorted(wire)[len(wire) // 2]
    full_memory = sorted(memory)[len(memory) // 2]
    assert full_memory > 3 * full_wire
    # Counted on the wire, eight pages would fit; counted parsed, the
    # budget's worth, the page held here and slack for a page larger than
    # its reservation. (The peak is taken while full pages flow: each
    # segment ends with a nearly empty page, and many of those fit in the
    # budget at once, as they should.)
    assert peak <= budget // full_memory + 3 < 8


async def test_pages_are_sized_once_per_fetcher_not_per_flow() -> None:
    # Walking a parsed page to learn its size costs about as much as parsing
    # it: a fetcher that runs one flow after another learns it once.
    from asyncpager._footprint import SAMPLES
    from asyncpager.testing import LocalEndpoint, Table

    with LocalEndpoint(tables=[Table("sized", 2_000, item_shape="mixed")]) as ep:
        streams = _segments(ep.url, "sized", 4)
        async with Fetcher() as fetcher:
            async for _stream, _page in fetcher.pages(streams):
                pass
            walked = fetcher._sizer._ratios[("dynamodb", "scan")][1]
            async for _stream, _page in fetcher.pages(streams):
                pass
            assert fetcher._sizer._ratios[("dynamodb", "scan")][1] == walked <= SAMPLES


# -- streams handed over while the run goes on ----------------------------------


async def test_more_adds_streams_to_a_running_flow(fleet: dict[str, Any]) -> None:
    streams = all_streams(fleet)
    first, later = streams[:3], streams[3:]
    first_page = anyio.Event()
    handed: list[int] = []

    async def more() -> Any:
        # The second batch only once a page has come: the run must still be
        # there to take it, with its first streams perhaps all done.
        yield later[:10]
        handed.append(1)
        await first_page.wait()
        await anyio.sleep(0.2)
        yield later[10:]
        handed.append(2)

    seen: list[tuple[str, str]] = []
    with anyio.fail_after(30):
        async with Fetcher(concurrency=8, queue_pages=4) as fetcher:
            async for stream, page in fetcher.pages(first, more=more()):
                first_page.set()
                seen += items_of(stream, page)
    assert handed == [1, 2]
    assert len(seen) == len(set(seen)), "an item came twice"
    assert set(seen) == sequential(fleet)
    assert fetcher.stats.streams_total >= len(streams)


async def test_a_run_with_no_streams_waits_for_more(fleet: dict[str, Any]) -> None:
    streams = all_streams(fleet)[:5]
    waited = anyio.Event()

    async def more() -> Any:
        await anyio.sleep(0.1)
        waited.set()
        yield streams

    seen: list[tuple[str, str]] = []

    async def consume(stream: Stream, page: dict[str, Any]) -> None:
        assert waited.is_set()
        seen.extend(items_of(stream, page))

    with anyio.fail_after(30):
        async with Fetcher(concurrency=4) as fetcher:
            report = await fetcher.run([], consume, more=more())
    assert report.ok
    assert seen
    assert report.stats.streams_total == 5
    assert report.stats.streams_done == 5


async def test_cancelled_while_waiting_for_more_stops_promptly(fleet: dict[str, Any]) -> None:
    before = other_tasks()
    closed: list[bool] = []

    async def more() -> Any:
        try:
            yield all_streams(fleet)[:2]
            await anyio.sleep_forever()
            yield []  # never reached
        finally:
            closed.append(True)

    async def consume(stream: Stream, page: dict[str, Any]) -> None:
        pass

    ended: list[bool] = []
    with anyio.fail_after(30):
        async with Fetcher(concurrency=4) as fetcher:

            async def cancel_once_done() -> None:
                # Its streams done, only ``more`` holds the run open.
                while fetcher.stats.streams_done < 2:  # noqa: ASYNC110 - a counter, no event
                    await anyio.sleep(0.01)
                await anyio.sleep(0.1)
                tg.cancel_scope.cancel()

            async def run() -> None:
                await fetcher.run([], consume, more=more())
                ended.append(True)

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_once_done)
                tg.start_soon(run)
    assert ended == []
    assert closed == [True]
    assert other_tasks() <= before


async def test_an_error_in_more_ends_the_run_with_it(fleet: dict[str, Any]) -> None:
    before = other_tasks()

    async def more() -> Any:
        yield all_streams(fleet)[:1]
        raise LookupError("no more work: the coordinator is gone")

    async def consume(stream: Stream, page: dict[str, Any]) -> None:
        await anyio.sleep(0.01)

    with anyio.fail_after(10):
        async with Fetcher(concurrency=4) as fetcher:
            with pytest.raises(LookupError, match="coordinator is gone"):
                await fetcher.run(all_streams(fleet)[1:3], consume, more=more())
    assert other_tasks() <= before


@pytest.mark.parametrize(
    ("share", "split", "told"), [(0.95, True, 3), (0.5, True, None), (0.95, False, None)]
)
async def test_the_streams_that_keep_a_bound_loop_busy_are_told_during_a_run(
    monkeypatch: pytest.MonkeyPatch, share: float, split: bool, told: int | None
) -> None:
    # What a --workers worker asks by (asyncpager.parallel._ask_below): the
    # loop's own figure while it is the bound, nothing while latency is, or
    # where no share is measured (streams that never split).
    from asyncpager.testing import LocalEndpoint, Table
    from tests.test_plan_s3 import _Loop

    monkeypatch.setattr("asyncpager.engine.LoopLoad", lambda: _Loop(share, 3))
    with LocalEndpoint(tables=[Table("told", 400)]) as ep:
        fetcher = Fetcher(concurrency=4, split=split)
        async with fetcher:
            assert fetcher._streams_enough() is None  # nothing runs
            seen = []
            async with fetcher.pages(_segments(ep.url, "told", 2)) as flow:
                async for _stream, _page in flow:
                    seen.append(fetcher._streams_enough())
            assert fetcher._streams_enough() is None
    assert len(seen) >= 8  # four pages a segment, and a last one maybe empty
    assert seen[-1] == told
