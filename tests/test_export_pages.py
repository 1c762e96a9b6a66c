"""How the exporter turns pages into output: records without copies, pages
encoded apart from the write, the cyclic collector put back as it was found.

Against the local endpoint (real HTTP), with the library's ``export``.
"""

from __future__ import annotations

import gc
import io
import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from asyncpager import Fetcher, plan_s3
from asyncpager.cli import make_records
from asyncpager.convert import plain_to_json_line
from asyncpager.errors import ConfigurationError
from asyncpager.export import export
from asyncpager.plan.dynamodb import plan_scan
from asyncpager.sinks import CsvSink, JsonlSink
from asyncpager.streams import Stream
from asyncpager.testing import Bucket, LocalEndpoint, Table

pytestmark = pytest.mark.anyio

N_KEYS = 2_500
N_ITEMS = 600


@pytest.fixture(scope="module")
def endpoint() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(
        buckets=[Bucket("pages-bucket", N_KEYS, "unicode")],
        tables=[Table("pages-table", N_ITEMS)],
    ) as ep:
        yield ep


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "pages-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "pages-test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def s3_streams(endpoint: LocalEndpoint) -> list[Stream]:
    return list(plan_s3(["s3://pages-bucket"], shards=3, endpoint_url=endpoint.url, page_size=300))


class ListSink:
    """A sink that only has the protocol's methods: it is given records."""

    def __init__(self) -> None:
        self.records: list[Mapping[str, Any]] = []
        self.threads: set[int] = set()

    def open(self, state: Mapping[str, Any] | None) -> None:
        pass

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        self.threads.add(threading.get_ident())
        self.records.extend(records)

    def commit(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


# -- the sink in two steps ------------------------------------------------------


def sample_records() -> list[dict[str, Any]]:
    return [
        {"id": "a", "n": Decimal("1.50"), "tags": ["x", "y"]},
        {"id": "b", "n": Decimal("1E+2"), "extra": True},
        {"id": "=c", "n": None},
    ]


@pytest.mark.parametrize("cls", [JsonlSink, CsvSink])
def test_encode_then_write_encoded_is_write(cls: type[JsonlSink | CsvSink]) -> None:
    whole, halves = io.BytesIO(), io.BytesIO()
    one = cls(None, stream=whole)
    two = cls(None, stream=halves)
    one.open(None)
    two.open(None)
    for batch in (sample_records(), sample_records()[1:]):
        one.write(batch)
        two.write_encoded(two.encode_records(batch), len(batch))
    assert one.commit() == two.commit()
    one.close()
    two.close()
    assert whole.getvalue() == halves.getvalue()


@pytest.mark.parametrize("compression", [None, "gzip"])
@pytest.mark.parametrize("cls", [JsonlSink, CsvSink])
def test_buffered_then_written_in_chunks_is_write(
    cls: type[JsonlSink | CsvSink], compression: str | None
) -> None:
    # The exporter's way: buffered in the loop's thread, full buffers
    # written in the sink's. A small buffer makes several of them.
    whole, parts = io.BytesIO(), io.BytesIO()
    one = cls(None, stream=whole, compression=compression, buffer_size=64)
    two = cls(None, stream=parts, compression=compression, buffer_size=64)
    one.open(None)
    two.open(None)
    written = 0
    for batch in [sample_records(), sample_records()[1:]] * 3:
        one.write(batch)
        chunks = two.buffer_encoded(two.encode_records(batch), len(batch))
        if chunks is not None:
            assert sum(map(len, chunks)) >= 64
            written += 1
            two.write_chunks(chunks)
    assert written >= 3
    assert one.commit() == two.commit()
    one.close()
    two.close()
    assert whole.getvalue() == parts.getvalue()


class _FullDisk(io.BytesIO):
    """An output that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def write(self, data: Any) -> int:
        if self.tell() + len(data) > self.room:
            raise OSError(28, "No space left on device")
        return super().write(data)


async def test_a_write_that_fails_in_the_sinks_thread_stops_the_export_with_its_error(
    endpoint: LocalEndpoint,
) -> None:
    # Full buffers are written in the sink's thread while the export goes
    # on: the disk's error still stops it, as itself, and nothing is
    # written after it.
    output = _FullDisk(room=50_000)
    sink = JsonlSink(None, stream=output, buffer_size=4096)
    records = make_records(query=None, plain_dynamodb=False, label_keys=[])
    caught: list[BaseException] = []
    try:
        await export(s3_streams(endpoint), sink, records)
    except* OSError as group:
        caught.extend(group.exceptions)
    assert len(caught) == 1
    assert "No space left on device" in str(caught[0])
    assert gc.isenabled()
    assert 0 < len(output.getvalue()) <= 50_000
    # Whole lines only, each one an object listed.
    lines = output.getvalue().splitlines(keepends=True)
    assert all(line.endswith(b"\n") and json.loads(line)["Key"] for line in lines)


def test_encode_records_needs_an_open_sink(tmp_path: Path) -> None:
    sink = JsonlSink(str(tmp_path / "out.jsonl"))
    with pytest.raises(ConfigurationError, match="open"):
        sink.encode_records(sample_records())
    sink.open(None)
    data = sink.encode_records(sample_records())
    sink.close()
    with pytest.raises(ConfigurationError, match="closed"):
        sink.write_encoded(data, 3)
    assert os.path.getsize(tmp_path / "out.jsonl") == 0


# -- records ------------------------------------------------------------------------


async def test_records_are_the_pages_items_and_labels_go_into_copies(
    endpoint: LocalEndpoint,
) -> None:
    plain = make_records(query=None, plain_dynamodb=False, label_keys=[])
    labelled = make_records(query=None, plain_dynamodb=False, label_keys=["bucket"])
    async with Fetcher() as fetcher:
        async for stream, page in fetcher.pages(s3_streams(endpoint)):
            before = [dict(item) for item in page.get("Contents", [])]
            records = plain(stream, page)
            assert all(r is item for r, item in zip(records, page["Contents"], strict=True))
            with_labels = labelled(stream, page)
            assert [dict(r) for r in with_labels] == [
                {**item, "_bucket": "pages-bucket"} for item in before
            ]
            # The page itself is left as it came.
            assert page.get("Contents", []) == before
            break


async def test_dynamodb_records_are_plain_and_labelled(endpoint: LocalEndpoint) -> None:
    labelled = make_records(query=None, plain_dynamodb=True, label_keys=["segment"])
    async with Fetcher() as fetcher:
        plan = await plan_scan(
            "pages-table", segments=2, endpoint_url=endpoint.url, fetcher=fetcher
        )
        async for stream, page in fetcher.pages(plan.streams):
            records = labelled(stream, page)
            assert len(records) == len(page["Items"])
            for record, item in zip(records, page["Items"], strict=True):
                assert record["pk"] == item["pk"]["S"]
                assert record["_segment"] == stream.labels["segment"]
                assert "_segment" not in item
            break


# -- export ----------------------------------------------------------------------


@pytest.mark.parametrize("collector_on", [True, False])
async def test_export_writes_every_record_and_puts_the_collector_back(
    endpoint: LocalEndpoint, tmp_path: Path, collector_on: bool
) -> None:
    out = tmp_path / "out.jsonl"
    sink = JsonlSink(str(out))
    records = make_records(query=None, plain_dynamodb=False, label_keys=[])
    was = gc.isenabled()
    try:
        if not collector_on:
            gc.disable()
        result = await export(s3_streams(endpoint), sink, records)
        assert gc.isenabled() is collector_on
    finally:
        if was:
            gc.enable()
    assert result.complete
    assert result.items_written == N_KEYS
    lines = out.read_bytes().splitlines(keepends=True)
    assert len(lines) == N_KEYS
    keys = [json.loads(line)["Key"] for line in lines]
    assert len(set(keys)) == N_KEYS


async def test_export_through_a_plain_sink_gets_the_same_records(
    endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    records = make_records(query=None, plain_dynamodb=True, label_keys=[])
    async with Fetcher() as fetcher:
        plan = await plan_scan(
            "pages-table", segments=2, endpoint_url=endpoint.url, fetcher=fetcher
        )
        streams = plan.streams
    listed = ListSink()
    async with Fetcher(fast_parse=False) as plain:
        result = await export(streams, listed, records, max_items=N_ITEMS - 7, fetcher=plain)
    assert result.items_written == N_ITEMS - 7 == len(listed.records)
    # Written in the worker thread, and the collector left on. (Whether it
    # is on during a write cannot be asserted: the pause while the loop's
    # thread converts the next page is process-wide, and overlapped a write
    # in one CI run.)
    assert threading.get_ident() not in listed.threads
    assert gc.isenabled()
    out = tmp_path / "out.jsonl"
    result = await export(streams, JsonlSink(str(out)), records, max_items=N_ITEMS - 7)
    assert result.items_written == N_ITEMS - 7
    by_key = {r["pk"]: plain_to_json_line(r) for r in listed.records}
    lines = out.read_bytes().splitlines(keepends=True)
    assert sorted(lines) == sorted(by_key[json.loads(line)["pk"]] for line in lines)


async def test_a_record_that_cannot_be_encoded_fails_the_export_cleanly(
    endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    def records(stream: Stream, page: dict[str, Any]) -> list[Mapping[str, Any]]:
        return [{"Key": item["Key"], "bad": object()} for item in page.get("Contents", [])]

    out = tmp_path / "out.jsonl"
    caught: list[BaseException] = []
    try:
        await export(s3_streams(endpoint), JsonlSink(str(out)), records)
    except* TypeError as group:
        caught.extend(group.exceptions)
    assert caught
    assert "cannot write a object as JSON" in str(caught[0])
    assert gc.isenabled()
    assert out.read_bytes() == b""


async def test_a_byte_sink_that_changes_write_is_given_records(
    endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    class OnlyKeys(JsonlSink):
        def write(self, records: Sequence[Mapping[str, Any]]) -> None:
            super().write([{"Key": r["Key"]} for r in records])

    out = tmp_path / "out.jsonl"
    records = make_records(query=None, plain_dynamodb=False, label_keys=[])
    result = await export(s3_streams(endpoint), OnlyKeys(str(out)), records)
    assert result.items_written == N_KEYS
    assert {tuple(json.loads(line)) for line in out.read_bytes().splitlines()} == {("Key",)}


# -- streams handed over while the export runs -------------------------------------


def _keys_written(path: Path) -> list[str]:
    return [json.loads(line)["Key"] for line in path.read_bytes().splitlines()]


async def test_streams_handed_over_are_exported_once(
    endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    first, second, third = s3_streams(endpoint)

    async def more() -> Any:
        yield [second]
        yield [second, third]  # sent twice: taken once

    out = tmp_path / "out.jsonl"
    records = make_records(query=None, plain_dynamodb=False, label_keys=[])
    result = await export([first], JsonlSink(str(out)), records, more=more())
    assert result.complete
    keys = _keys_written(out)
    assert len(keys) == N_KEYS
    assert len(set(keys)) == N_KEYS


async def test_a_resumed_export_runs_what_it_never_took(
    endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    """Interrupted after taking a handed-over stream, resumed with one more
    that it never took: every key exactly once."""
    import anyio

    from asyncpager.checkpoint import Checkpoint, CheckpointState

    first, second, third = s3_streams(endpoint)
    out = tmp_path / "out.jsonl"
    checkpoint = Checkpoint(tmp_path / "out.ckpt")
    records = make_records(query=None, plain_dynamodb=False, label_keys=[])
    saved: list[CheckpointState] = []
    handed = anyio.Event()

    async def more() -> Any:
        yield [second]
        handed.set()
        await anyio.sleep_forever()
        yield []

    def on_commit(state: CheckpointState) -> None:
        saved.append(state)
        # Stop once a commit holds the handed-over stream and some output.
        if handed.is_set() and state.items_written > 0 and len(saved) > 2:
            scope.cancel()

    async with Fetcher(concurrency=2, queue_pages=1) as fetcher:
        with anyio.CancelScope() as scope:
            await export(
                [first], JsonlSink(str(out)), records, checkpoint=checkpoint,
                fingerprint="fp", commit_interval=0, fetcher=fetcher, on_commit=on_commit,
                more=more(),
            )  # fmt: skip
    assert scope.cancel_called
    state = checkpoint.load("fp")
    assert state is not None
    assert not state.complete
    assert len(state.extra["taken"]) == 2
    written_before = len(_keys_written(out))
    assert 0 < written_before < N_KEYS

    async def nothing_more() -> Any:
        return
        yield []

    result = await export(
        [first, second, third], JsonlSink(str(out)), records, checkpoint=checkpoint,
        fingerprint="fp", more=nothing_more(),
    )  # fmt: skip
    assert result.complete
    assert result.resumed
    keys = _keys_written(out)
    assert len(keys) == N_KEYS, "a key was lost or written twice"
    assert len(set(keys)) == N_KEYS


async def test_without_more_a_resumed_export_keeps_to_its_checkpoint(
    endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    from asyncpager.checkpoint import Checkpoint, CheckpointState

    first, second, _third = s3_streams(endpoint)
    checkpoint = Checkpoint(tmp_path / "out.ckpt")
    checkpoint.save(CheckpointState(fingerprint="fp", streams=[first]))
    out = tmp_path / "out.jsonl"
    records = make_records(query=None, plain_dynamodb=False, label_keys=[])
    result = await export(
        [first, second], JsonlSink(str(out)), records, checkpoint=checkpoint, fingerprint="fp"
    )
    assert result.complete
    keys = _keys_written(out)
    assert len(keys) == len(set(keys))
    assert 0 < len(keys) < N_KEYS  # the first shard only


async def test_a_checkpoint_saved_without_more_resumes_as_it_was(
    endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    """A checkpoint written before streams were handed over (no list of
    taken streams) still resumes exactly: nothing given is run twice."""
    from asyncpager.checkpoint import Checkpoint, CheckpointState

    first, second, third = s3_streams(endpoint)
    checkpoint = Checkpoint(tmp_path / "out.ckpt")
    checkpoint.save(CheckpointState(fingerprint="fp", streams=[first]))

    async def nothing_more() -> Any:
        return
        yield []

    out = tmp_path / "out.jsonl"
    records = make_records(query=None, plain_dynamodb=False, label_keys=[])
    result = await export(
        [first, second, third], JsonlSink(str(out)), records, checkpoint=checkpoint,
        fingerprint="fp", more=nothing_more(),
    )  # fmt: skip
    assert result.complete
    keys = _keys_written(out)
    assert len(keys) == len(set(keys))
    assert 0 < len(keys) < N_KEYS  # the first shard only: the others were taken


async def test_a_part_given_away_is_saved_before_it_is_handed_over(
    endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    """Asked to give work away mid-run, the export splits a running stream,
    commits, and only then replies; the part stays on record in the
    checkpoint, complete or not, and this export never lists it."""
    import anyio

    from asyncpager.checkpoint import Checkpoint
    from asyncpager.export import GiveRequest, given_streams

    (whole,) = plan_s3(["s3://pages-bucket"], shards=1, endpoint_url=endpoint.url, page_size=100)
    out = tmp_path / "out.jsonl"
    checkpoint = Checkpoint(tmp_path / "out.ckpt")
    records = make_records(query=None, plain_dynamodb=False, label_keys=[])
    replies: list[list[Stream]] = []
    saved_when_replied: list[list[Stream]] = []

    def reply(streams: Any) -> None:
        state = checkpoint.load("fp")
        assert state is not None
        saved_when_replied.append(given_streams(state))
        replies.append(list(streams))

    async def gives() -> Any:
        # Once the stream has a page, so that it can split.
        while fetcher.stats.pages < 2:  # noqa: ASYNC110
            await anyio.sleep(0.005)
        request: GiveRequest = reply
        yield request

    async with Fetcher(concurrency=1, queue_pages=1, split=False) as fetcher:
        result = await export(
            [whole], JsonlSink(str(out)), records, checkpoint=checkpoint, fingerprint="fp",
            fetcher=fetcher, gives=gives(),
        )  # fmt: skip
    assert result.complete
    ((part,),) = replies
    assert [s.to_json() for s in saved_when_replied[0]] == [part.to_json()]
    state = checkpoint.load("fp")
    assert state is not None
    assert state.complete
    assert [s.to_json() for s in given_streams(state)] == [part.to_json()]
    other = tmp_path / "other.jsonl"
    await export([part], JsonlSink(str(other)), records)
    mine, theirs = _keys_written(out), _keys_written(other)
    assert mine
    assert theirs
    assert len(set(mine + theirs)) == len(mine + theirs) == N_KEYS
