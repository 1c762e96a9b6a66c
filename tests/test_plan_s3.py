"""S3 key-range shards against moto: exactly the sequential listing."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

import asyncpager
from asyncpager.engine import Fetcher
from asyncpager.plan.keyspace import key_bytes
from asyncpager.plan.s3 import parse_s3_url, plan_s3
from asyncpager.streams import Stream
from tests.conftest import put_s3_keys
from tests.test_paginate_parity import AWKWARD_KEYS

pytestmark = pytest.mark.anyio

HOT_KEYS = [f"hot/{i:04d}" for i in range(90)] + ["a", "zz/1", "é", "🙂"]


def utf8_sorted(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda k: k.encode())


@pytest.fixture(scope="module")
def buckets(moto_server: str) -> dict[str, list[str]]:
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_server)
    run = uuid.uuid4().hex[:8]
    made: dict[str, list[str]] = {}
    for name, keys in (
        (f"awk-{run}", AWKWARD_KEYS),
        (f"hot-{run}", HOT_KEYS),
        (f"empty-{run}", []),
    ):
        s3.create_bucket(Bucket=name)
        put_s3_keys(s3, name, keys)
        made[name] = keys
    return made


async def list_with(
    moto_server: str, streams: list[Stream], concurrency: int = 8
) -> tuple[list[str], Any]:
    keys: list[str] = []
    fetcher = Fetcher(concurrency=concurrency, queue_pages=4)
    async with fetcher, fetcher.pages(streams) as flow:
        async for _stream, page in flow:
            keys += [c["Key"] for c in page.get("Contents", [])]
    return keys, flow.report


@pytest.mark.parametrize("shards", [1, 3, 16])
@pytest.mark.parametrize("page_size", [2, 1000])
async def test_shards_list_exactly_the_bucket(
    moto_server: str, buckets: dict[str, list[str]], shards: int, page_size: int
) -> None:
    for bucket, expected in buckets.items():
        streams = plan_s3(
            [f"s3://{bucket}"],
            shards=shards,
            region="us-east-1",
            endpoint_url=moto_server,
            page_size=page_size,
        )
        keys, report = await list_with(moto_server, streams)
        assert len(keys) == len(set(keys)), f"{bucket}: a key came twice"
        assert set(keys) == set(expected), bucket
        assert utf8_sorted(keys) == utf8_sorted(expected)
        assert report.ok


def hot_streams(
    moto_server: str, buckets: dict[str, list[str]], *, shards: int, page_size: int
) -> list[Stream]:
    """The hot bucket (one busy prefix) cut into ``shards``."""
    hot = next(b for b in buckets if b.startswith("hot-"))
    return plan_s3(
        [f"s3://{hot}"], shards=shards, region="us-east-1", endpoint_url=moto_server,
        page_size=page_size,
    )  # fmt: skip


async def test_large_shard_splits_to_feed_idle_workers(
    moto_server: str, buckets: dict[str, list[str]]
) -> None:
    streams = hot_streams(moto_server, buckets, shards=1, page_size=5)
    keys, report = await list_with(moto_server, streams, concurrency=6)
    assert report.stats.splits > 0
    assert report.stats.streams_total > 1
    assert utf8_sorted(keys) == utf8_sorted(HOT_KEYS)
    assert len(keys) == len(HOT_KEYS)


async def test_a_stream_given_away_is_listed_once_between_the_two(
    moto_server: str, buckets: dict[str, list[str]]
) -> None:
    # Work stealing between processes: the running shard gives part of
    # what is ahead of it away; this run lists the rest, another the part.
    streams = hot_streams(moto_server, buckets, shards=1, page_size=5)
    keys: list[str] = []
    fetcher = Fetcher(concurrency=2, queue_pages=4, split=False)
    async with fetcher, fetcher.pages(streams) as flow:
        pages = aiter(flow)
        _stream, first = await anext(pages)
        keys += [c["Key"] for c in first.get("Contents", [])]
        (given,) = fetcher.give_away()
        assert fetcher.stats.given == 1
        # A resume state taken now has the shard narrowed to what it kept.
        (resume,) = fetcher.resume_streams()
        assert resume.shape["hi"] == given.shape["lo"]
        async for _stream, page in pages:
            keys += [c["Key"] for c in page.get("Contents", [])]
    other, report = await list_with(moto_server, [given])
    assert report.ok
    assert other
    assert not set(keys) & set(other)
    assert utf8_sorted(keys + other) == utf8_sorted(HOT_KEYS)
    # With nothing running, there is nothing to give.
    async with Fetcher() as idle:
        assert idle.give_away() == []


class _Loop:
    """A loop whose CPU share reads ``share`` whatever the machine does (the
    engine's LoopLoad measures this thread's real CPU time, which a test
    cannot set), so that one rule at a time decides."""

    def __init__(self, share: float, enough: int = 0) -> None:
        self._share = share
        self._enough = enough
        self.last_share = 0.0

    def share(self) -> float:
        self.last_share = self._share
        return self._share

    def now(self) -> float:
        return 0.0

    def close(self) -> None:
        pass

    def turned(self, started: float) -> None:
        del started

    def enough(self) -> int:
        return self._enough


async def _splits_while_pages_wait(
    moto_server: str,
    buckets: dict[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    *,
    held_for: float,
    loop: float = 0.0,
    enough: int = 0,
) -> tuple[int, int]:
    """Splits made before and after two pages wait for a consumer that has
    held its first page for ``held_for`` seconds of the fetcher's clock (a
    clock that moves only by hand), the loop reading ``loop`` of its time on
    CPU and ``enough`` streams keeping it that busy; every key is listed
    once either way."""
    from asyncpager import FakeClock
    from asyncpager.engine import SPLIT_WAITING

    monkeypatch.setattr("asyncpager.engine.LoopLoad", lambda: _Loop(loop, enough))
    streams = hot_streams(moto_server, buckets, shards=1, page_size=5)
    keys: list[str] = []
    clock = FakeClock(autojump=False)
    fetcher = Fetcher(concurrency=6, queue_pages=8, clock=clock)
    async with fetcher, fetcher.pages(streams) as flow:
        pages = aiter(flow)
        _stream, first = await anext(pages)
        clock.advance(held_for)
        keys += [c["Key"] for c in first.get("Contents", [])]
        # The stats are plain counters with no event to wait on: polled
        # while moto answers the requests in flight.
        with anyio.fail_after(60):
            while fetcher.stats.queue_depth < SPLIT_WAITING:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            splits, fetched = fetcher.stats.splits, fetcher.stats.pages
            while fetcher.stats.pages < fetched + 3 and fetcher.stats.queue_depth < 8:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert fetcher.stats.pages > fetched
        after = fetcher.stats.splits
        async for _stream, page in pages:
            keys += [c["Key"] for c in page.get("Contents", [])]
    assert utf8_sorted(keys) == utf8_sorted(HOT_KEYS)
    return splits, after


async def test_no_split_while_pages_wait_for_a_busy_consumer(
    moto_server: str, buckets: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A consumer that is behind (here: holding its first page for a second,
    # all of the run's time) is the bound; splitting would only add
    # requests. Once it reads again and the queue empties, splitting
    # resumes as ever.
    before, after = await _splits_while_pages_wait(moto_server, buckets, monkeypatch, held_for=1)
    assert after == before


async def test_pages_waiting_for_an_idle_consumer_do_not_stop_splits(
    moto_server: str, buckets: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same pages waiting, but no time has passed on the fetcher's clock:
    # they came together and the consumer has not been busy, so it is not
    # the bound (as when many answers are parsed in one turn of the loop).
    before, after = await _splits_while_pages_wait(moto_server, buckets, monkeypatch, held_for=0)
    assert after > before


async def test_no_split_while_the_loop_is_on_cpu(
    moto_server: str, buckets: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The consumer is idle, but the loop is on CPU all the time: it is the
    # bound, and a new stream would only add requests and pages in memory.
    before, after = await _splits_while_pages_wait(
        moto_server, buckets, monkeypatch, held_for=0, loop=1.0
    )
    assert after == before


async def test_splits_go_on_while_the_loop_reads_busy_with_too_few_streams(
    moto_server: str, buckets: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The loop's share lags: it reads busy a while after streams ended. While
    # fewer streams run than keep it busy (here: more than the six slots),
    # they split as if it were idle.
    before, after = await _splits_while_pages_wait(
        moto_server, buckets, monkeypatch, held_for=0, loop=1.0, enough=100
    )
    assert after > before


async def test_prefix_and_delimiter(moto_server: str, buckets: dict[str, list[str]]) -> None:
    awk = next(b for b in buckets if b.startswith("awk-"))
    streams = plan_s3(
        [f"s3://{awk}/many/"], shards=4, region="us-east-1", endpoint_url=moto_server, page_size=3
    )
    keys, _ = await list_with(moto_server, streams)
    assert utf8_sorted(keys) == utf8_sorted([k for k in AWKWARD_KEYS if k.startswith("many/")])
    streams = plan_s3(
        [f"s3://{awk}"],
        region="us-east-1",
        endpoint_url=moto_server,
        delimiter="/",
        page_size=4,
    )
    assert len(streams) == 1
    prefixes: list[str] = []
    top: list[str] = []
    async with Fetcher(concurrency=4) as fetcher:
        async for _s, page in fetcher.pages(streams):
            prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
            top += [c["Key"] for c in page.get("Contents", [])]
    assert set(prefixes) == {k.split("/")[0] + "/" for k in AWKWARD_KEYS if "/" in k}
    assert set(top) == {k for k in AWKWARD_KEYS if "/" not in k}


async def test_snapshot_leaves_out_later_objects(moto_server: str) -> None:
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_server)
    bucket = f"snap-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    put_s3_keys(s3, bucket, ["old/1", "old/2"])
    cut = s3.list_objects_v2(Bucket=bucket)["Contents"][-1]["LastModified"]
    streams = plan_s3(
        [f"s3://{bucket}"],
        shards=2,
        region="us-east-1",
        endpoint_url=moto_server,
        snapshot=cut - dt.timedelta(days=1),
    )
    keys, _ = await list_with(moto_server, streams)
    assert keys == []
    streams = plan_s3(
        [f"s3://{bucket}"], shards=2, region="us-east-1", endpoint_url=moto_server, snapshot=cut
    )
    keys, _ = await list_with(moto_server, streams)
    assert sorted(keys) == ["old/1", "old/2"]


async def test_resume_after_stopping_midway_lists_the_rest_once(
    moto_server: str, buckets: dict[str, list[str]]
) -> None:
    streams = hot_streams(moto_server, buckets, shards=3, page_size=4)
    first: list[str] = []
    async with Fetcher(concurrency=4, queue_pages=2) as fetcher, fetcher.pages(streams) as flow:
        async for _s, page in flow:
            first += [c["Key"] for c in page.get("Contents", [])]
            if len(first) >= 40:
                break
    report = flow.report
    assert report is not None
    # The page held at the break was never acknowledged: it is listed again.
    held = len(page.get("Contents", []))
    acknowledged = first[: len(first) - held]
    rest, _ = await list_with(moto_server, report.resume_streams())
    together = acknowledged + rest
    assert len(together) == len(set(together)) == len(HOT_KEYS)


def test_parse_s3_url() -> None:
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://bucket/a b/%2F#x?y") == ("bucket", "a b/%2F#x?y")
    assert parse_s3_url("s3://bucket/pre/fix/") == ("bucket", "pre/fix/")
    for bad in (
        "bucket/key",
        "s3://",
        "s3:///key",
        "http://bucket/x",
        "s3://a",
        "s3://b@d/x",
        "s3://host:9000/x",
    ):
        with pytest.raises(asyncpager.ConfigurationError):
            parse_s3_url(bad)


@pytest.mark.slow
async def test_a_sampled_plan_spreads_a_hex_named_bucket_over_its_shards() -> None:
    from aiobotocore.session import get_session

    from asyncpager.plan.s3 import sample_density
    from asyncpager.testing import Bucket, LocalEndpoint

    async def items_per_shard(streams: list[Stream]) -> list[int]:
        counts = {id(s): 0 for s in streams}
        async with Fetcher(split=False) as fetcher:
            async for stream, page in fetcher.pages(streams):
                counts[id(stream)] += len(page.get("Contents") or [])
        return [counts[id(s)] for s in streams]

    with LocalEndpoint(buckets=[Bucket("hexnames", 120_000, "flat")]) as ep:
        async with get_session().create_client(
            "s3", endpoint_url=ep.url, region_name="us-east-1"
        ) as client:
            density = await sample_density("s3://hexnames", client)
        common = {"shards": 16, "endpoint_url": ep.url, "region": "us-east-1"}
        sampled = plan_s3(["s3://hexnames"], densities={"s3://hexnames": density}, **common)
        default = plan_s3(["s3://hexnames"], **common)
        spread = await items_per_shard(sampled)
        lumped = await items_per_shard(default)
    assert sum(spread) == sum(lumped) == 120_000
    assert sum(1 for c in lumped if c) <= 4
    assert sum(1 for c in spread if c) >= 12
    assert max(spread) < 120_000 / 4


@contextlib.asynccontextmanager
async def _cursor_on(bucket: Any, hi: str | None = None, **plan: Any) -> AsyncIterator[Any]:
    """A one-shard cursor over ``bucket`` (up to ``hi``) on a local endpoint
    of its own."""
    import anyio
    from aiobotocore.session import get_session

    from asyncpager.plan.s3 import S3RangeCursor
    from asyncpager.testing import LocalEndpoint

    with LocalEndpoint(buckets=[bucket]) as ep:
        async with get_session().create_client(
            "s3", endpoint_url=ep.url, region_name="us-east-1"
        ) as client:
            (stream,) = plan_s3(
                [f"s3://{bucket.name}"],
                shards=1,
                endpoint_url=ep.url,
                region="us-east-1",
                **plan,
            )
            if hi is not None:
                stream = stream.reshaped(hi=hi)
            cursor = S3RangeCursor(stream, client, hooks=None, retry=None, clock=anyio.current_time)
            try:
                yield cursor
            finally:
                await cursor.aclose()


@pytest.mark.slow
async def test_a_fresh_shard_reads_a_short_page_first_then_full_pages() -> None:
    from asyncpager.plan.s3 import PROBE_KEYS
    from asyncpager.testing import Bucket
    from asyncpager.testing._keys import key_space

    bucket = Bucket("probed", 2_500, "deep")
    expected = [key_space(bucket).key(i) for i in range(bucket.count)]
    after_all = "~"  # a bound past every key: the shard is not the last
    for hi, page_size, sizes in [
        (after_all, None, [PROBE_KEYS, 1000, 1000, 400]),
        (after_all, 500, [PROBE_KEYS, 500, 500, 500, 500, 400]),
        (after_all, PROBE_KEYS // 2, [PROBE_KEYS // 2] * 50),  # no shorter first page
        # The last shard (here the only one): every key of a page is its own.
        (None, None, [1000, 1000, 500]),
    ]:
        keys: list[str] = []
        seen: list[int] = []
        async with _cursor_on(bucket, hi, page_size=page_size) as cursor:
            while (page := await cursor.next_page()) is not None:
                seen.append(len(page["Contents"]))
                keys += [c["Key"] for c in page["Contents"]]
        assert seen == sizes, page_size
        assert keys == expected


@pytest.mark.slow
async def test_a_shard_splits_once_per_page() -> None:
    from asyncpager.testing import Bucket

    async with _cursor_on(Bucket("perpage", 20_000, "flat")) as cursor:
        # Nothing listed yet: nothing learnt of where the names are.
        assert cursor.split() is None
        for _ in range(3):
            await cursor.next_page()
            assert cursor.split() is not None
            assert cursor.split() is None


@pytest.mark.slow
async def test_a_split_lands_among_the_characters_names_use() -> None:
    from asyncpager.plan.keyspace import KeyRange, split_after
    from asyncpager.testing import Bucket

    async with _cursor_on(Bucket("hexkeys", 20_000, "flat")) as cursor:
        await cursor.next_page()
        await cursor.next_page()
        after = cursor.position["after"]
        narrowed, new = cursor.split()
    point = new.shape["lo"]
    assert narrowed.shape["hi"] == point
    shared = len(os.path.commonprefix([after, point]))  # noqa: RUF071 - characters wanted
    # Hex names: the cut is a hex digit where it departs from the last key,
    # where the printable-ASCII model puts it past every name.
    assert point[shared] in "0123456789abcdef", point
    _, default = split_after(KeyRange(None, None), after)
    assert default.lo is not None
    departs = len(os.path.commonprefix([after, default.lo]))  # noqa: RUF071
    assert default.lo[departs] not in "0123456789abcdef"


@pytest.mark.slow
async def test_a_rest_narrower_than_the_last_page_is_not_split() -> None:
    # What the next page will likely read whole: a split would only make a
    # stream of a few keys or none.
    from asyncpager.plan.s3 import PROBE_KEYS
    from asyncpager.testing import Bucket

    keys = [f"f{j}/obj-{i:04d}" for j in range(3) for i in range(1500)]
    bucket = Bucket("tail", keys=tuple(keys))
    async with _cursor_on(bucket, "f0/obj-1499") as cursor:
        probe = await cursor.next_page()
        assert len(probe["Contents"]) == PROBE_KEYS
        # 1,400 keys left: more than the next page, a thousand, will read.
        narrowed, new = cursor.split()
        assert new.shape["hi"] == "f0/obj-1499"
        assert narrowed.shape["hi"] == new.shape["lo"]
    async with _cursor_on(bucket, "f0/obj-1499") as cursor:
        await cursor.next_page()
        page = await cursor.next_page()
        assert page["Contents"][-1]["Key"] == "f0/obj-1099"
        # 400 left, fewer than the thousand the page spanned.
        assert cursor.split() is None
        last = await cursor.next_page()
        assert [c["Key"] for c in last["Contents"]] == keys[1100:1500]
    async with _cursor_on(bucket, "f2/obj-1499") as cursor:
        await cursor.next_page()
        await cursor.next_page()
        # Two folders more: split.
        assert cursor.split() is not None


@pytest.mark.slow
async def test_numbered_names_are_cut_among_all_digits() -> None:
    # Recent keys of a folder of numbered names share their first digits:
    # counted alone, those drew the cut to just past the shard's last key,
    # and its next page was read mostly past the new bound.
    from asyncpager.testing import Bucket

    keys = [f"n/{i:05d}.log" for i in range(100_000)]
    async with _cursor_on(Bucket("numbers", keys=tuple(keys)), "n/~") as cursor:
        page = await cursor.next_page()  # the probe: two keys sampled
        assert page["Contents"][-1]["Key"] == "n/00099.log"
        _narrowed, new = cursor.split()
    # About halfway through what is left (00100 to 99999).
    assert "n/2" < new.shape["lo"] < "n/9", new.shape["lo"]


def test_cuts_inside_folders_fall_among_the_characters_of_folder_names() -> None:
    # Folders named with lowercase letters: their subfolders are likely
    # named so too. Cut over printable ASCII, most ranges inside a folder
    # would lie among digits and capitals, where no such name is.
    names = ["am", "bu", "dx", "gl", "ib", "jv", "nz", "qr"]
    url = "s3://bucket"
    streams = plan_s3([url], shards=64, region="us-east-1", folders={url: [n + "/" for n in names]})
    inner = [s.shape["lo"] for s in streams if s.shape["lo"] and s.shape["lo"][-1] != "/"]
    assert len(inner) >= 48
    # Each cut inside a folder starts with a lowercase letter (over printable
    # ASCII, five of every seven were digits, capitals or punctuation).
    assert all("a" <= lo.split("/", 1)[1][:1] <= "z" for lo in inner), inner


def test_folders_are_cut_apart_and_the_shards_cover_everything() -> None:
    folders = [f"logs/{c}/" for c in "acemtx"]
    url = "s3://bucket/logs/"
    for shards in (4, 7, 16):
        streams = plan_s3(
            [url],
            shards=shards,
            region="us-east-1",
            folders={url: [*folders, "elsewhere/"]},  # not under the prefix: ignored
        )
        assert len(streams) == shards
        bounds = sorted(
            ((s.shape["lo"], s.shape["hi"]) for s in streams),
            key=lambda b: b"" if b[0] is None else key_bytes(b[0]) + b"\x00",
        )
        assert bounds[0][0] is None
        assert bounds[-1][1] is None
        for (_, hi), (lo, _) in itertools.pairwise(bounds):
            assert lo == hi
        edges = {lo for lo, _ in bounds}
        used = folders if shards > len(folders) else folders[0::2]
        assert set(used) <= edges, shards
        # Cuts inside a folder stay inside it.
        inner = edges - set(used) - {None}
        assert all(any(e.startswith(f) for f in used) for e in inner)
        if shards == 16:
            # Folder after folder: the first range of every folder first.
            firsts = [s.shape["lo"] for s in streams[1 : 1 + len(folders)]]
            assert firsts == folders
    # Fewer than two folders: the density decides, as before.
    one = plan_s3([url], shards=8, region="us-east-1", folders={url: folders[:1]})
    assert len(one) == 8


@pytest.mark.slow
async def test_a_tree_of_folders_is_dealt_evenly_between_two_processes() -> None:
    import bisect

    from aiobotocore.session import get_session

    from asyncpager.plan.keyspace import key_bytes
    from asyncpager.plan.s3 import sample_cut, sample_density, sample_folders
    from asyncpager.testing import Bucket, LocalEndpoint

    keys = sorted(
        (
            f"{top}/{mid:02d}/obj-{i:04d}.json"
            for top in ("am", "bu", "cx", "dq")
            for mid in range(10)
            for i in range(400)
        ),
        key=key_bytes,
    )
    encoded = [key_bytes(k) for k in keys]

    def held(lo: str | None, hi: str | None) -> int:
        start = 0 if lo is None else bisect.bisect_right(encoded, key_bytes(lo))
        end = len(keys) if hi is None else bisect.bisect_right(encoded, key_bytes(hi))
        return end - start

    with LocalEndpoint(buckets=[Bucket("tree", keys=tuple(keys))]) as ep:
        async with get_session().create_client(
            "s3", endpoint_url=ep.url, region_name="us-east-1"
        ) as client:
            density = await sample_density("s3://tree", client)
            folders = await sample_folders("s3://tree", client)
            assert await sample_cut("s3://tree", client) == (density, folders)
    assert folders == ["am/", "bu/", "cx/", "dq/"]

    def dealt(**sample: Any) -> list[int]:
        streams = plan_s3(["s3://tree"], shards=16, region="us-east-1", **sample)
        counts = [held(s.shape["lo"], s.shape["hi"]) for s in streams]
        assert sum(counts) == len(keys)
        return [sum(counts[0::2]), sum(counts[1::2])]  # as --workers 2 deals them

    sampled = {"densities": {"s3://tree": density}}
    assert max(dealt(**sampled)) >= 0.75 * len(keys)  # the first page alone
    assert max(dealt(**sampled, folders={"s3://tree": folders})) < 0.65 * len(keys)


@pytest.mark.slow
async def test_a_sample_is_one_round_trip() -> None:
    # The folders and the first page of keys are asked at once (two
    # connections from a new client): one round trip before the listing,
    # with folders or without, and for a bucket that cannot be read.
    from aiobotocore.session import get_session

    from asyncpager.plan.keyspace import TYPICAL_KEYS
    from asyncpager.plan.s3 import KeySample, sample_density, sample_keys
    from asyncpager.testing import Bucket, LocalEndpoint

    with LocalEndpoint(buckets=[Bucket("hexnames", 5_000, "flat")]) as ep:
        async with get_session().create_client(
            "s3", endpoint_url=ep.url, region_name="us-east-1"
        ) as client:
            expected = await sample_density("s3://hexnames", client)
        for url, sample in [
            ("s3://hexnames", KeySample(expected)),
            ("s3://not-here/logs/", KeySample()),
        ]:
            before = ep.stats()
            async with get_session().create_client(
                "s3", endpoint_url=ep.url, region_name="us-east-1"
            ) as client:
                assert await sample_keys(url, client) == sample
            after = ep.stats()
            assert after.count("s3", "ListObjectsV2") - before.count("s3", "ListObjectsV2") == 2
            assert after.connections - before.connections == 2
    assert expected != TYPICAL_KEYS  # learned from the page, not the default


async def test_samples_cut_a_bucket_where_its_keys_are_and_leave_one_page_whole() -> None:
    from aiobotocore.session import get_session

    from asyncpager.plan.s3 import KeySample, sample_urls
    from asyncpager.testing import Bucket, LocalEndpoint

    tree = tuple(f"{top}/{i:04d}.json" for top in ("am", "bu", "cx") for i in range(700))
    buckets = [
        Bucket("one-page", 1000, "flat"),  # exactly a page: not truncated
        Bucket("small-tree", keys=("a/1", "a/2", "b/1", "top")),
        Bucket("tree", keys=tree),
    ]
    urls = ["s3://one-page", "s3://small-tree", "s3://tree", "s3://tree/bu/", "s3://gone"]
    with LocalEndpoint(buckets=buckets) as ep:
        async with get_session().create_client(
            "s3", endpoint_url=ep.url, region_name="us-east-1"
        ) as client:
            samples = await sample_urls(urls, client)
    assert samples["s3://one-page"].whole
    assert not samples["s3://one-page"].folders
    # Folders, and a second listing that holds every key.
    assert samples["s3://small-tree"].folders == ("a/", "b/")
    assert samples["s3://small-tree"].whole
    assert samples["s3://tree"].folders == ("am/", "bu/", "cx/")
    assert not samples["s3://tree"].whole
    assert samples["s3://tree"].density != KeySample().density
    assert samples["s3://tree/bu/"].whole  # 700 keys under the prefix
    assert samples["s3://gone"] == KeySample()
    streams = plan_s3(urls, shards=6, samples=samples)

    def of(url: str) -> list[Any]:
        bucket, prefix = parse_s3_url(url)
        return [
            s
            for s in streams
            if s.params["Bucket"] == bucket and s.params.get("Prefix", "") == prefix
        ]

    for whole in ("s3://one-page", "s3://small-tree", "s3://tree/bu/"):
        assert [s.shape for s in of(whole)] == [{"lo": None, "hi": None}]
    assert len(of("s3://gone")) == 6
    # Each folder starts a shard.
    assert len(of("s3://tree")) == 6
    assert {"am/", "bu/", "cx/"} <= {s.shape["lo"] for s in of("s3://tree")}


@pytest.mark.parametrize("raw", [True, "json"])
async def test_snapshot_holds_on_raw_pages(raw: Any) -> None:
    # Raw pages carry LastModified as text (as sent, or as it is written):
    # the snapshot still compares it as a time.
    from asyncpager.testing import Bucket, LocalEndpoint

    with LocalEndpoint(buckets=[Bucket("dated", 3_000, "flat")]) as ep:
        cut = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
        streams = plan_s3(["s3://dated"], shards=3, endpoint_url=ep.url, snapshot=cut)

        async def keys(fetcher: Fetcher) -> dict[str, Any]:
            async with fetcher:
                return {
                    o["Key"]: o["LastModified"]
                    async for _s, page in fetcher.pages(streams)
                    for o in page.get("Contents", [])
                }

        cooked = await keys(Fetcher())
        got = await keys(Fetcher(raw_services={"s3": raw}))
    assert 0 < len(cooked) < 3_000
    assert got.keys() == cooked.keys()
    assert all(isinstance(v, str) for v in got.values())


async def test_buckets_in_two_regions_are_each_listed_in_their_own() -> None:
    # A client signs for us-east-1; the endpoint, as S3, points it to the
    # eu-west-1 bucket's own region (301 PermanentRedirect), and botocore
    # follows inside the request.
    from asyncpager.testing import Bucket, LocalEndpoint
    from asyncpager.testing._keys import key_space

    buckets = [Bucket("eu-keys", 2_500, "deep", region="eu-west-1"), Bucket("us-keys", 300)]
    with LocalEndpoint(buckets=buckets) as ep:
        streams = plan_s3(["s3://eu-keys", "s3://us-keys"], endpoint_url=ep.url, region="us-east-1")
        keys, report = await list_with(ep.url, streams)
        sent = ep.stats().requests[("s3", "ListObjectsV2")]
    expected = [key_space(b).key(i) for b in buckets for i in range(b.count)]
    assert sorted(keys) == sorted(expected)
    assert sent > report.stats.requests  # the redirected ones, sent again
