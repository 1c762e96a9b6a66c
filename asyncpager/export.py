"""Export: run streams into a sink, crash-safe.

Exactly once, even after ``kill -9``: the sink's committed state and every
stream's committed position are saved together in one atomic checkpoint
(:mod:`asyncpager.checkpoint`). A page is acknowledged to the engine only
after the sink has taken it, and a commit happens only between two pages,
when everything written has been acknowledged; so the positions saved always
match the output saved. On resume, the sink throws away whatever was written
after its last commit, and the streams restart from the saved positions.

The single consumer writes each page inside a shielded scope: Ctrl-C (or any
cancellation) lets the page being written finish and be acknowledged, then
the final commit saves everything, and the command exits with 130.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import anyio
import anyio.to_thread

from asyncpager.checkpoint import Checkpoint, CheckpointState
from asyncpager.checkpoint import fingerprint as _fingerprint
from asyncpager.convert import RecordsView
from asyncpager.engine import Fetcher, RunReport
from asyncpager.errors import ConfigurationError
from asyncpager.item_lines import EncodedLines
from asyncpager.sinks._thread import SinkThread
from asyncpager.streams import Stream

__all__ = ["ExportResult", "GiveRequest", "Sink", "export", "given_streams"]

Page = dict[str, Any]
Records = Callable[[Stream, Page], Sequence[Mapping[str, Any]]]


class Sink(Protocol):
    """Where exported records go (see ``asyncpager.sinks``). Blocking methods:
    the exporter calls them in a worker thread."""

    def open(self, state: Mapping[str, Any] | None) -> None: ...
    def write(self, records: Sequence[Mapping[str, Any]]) -> None: ...
    def commit(self) -> dict[str, Any]: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


@dataclass
class ExportResult:
    """How an export ended."""

    report: RunReport | None
    items_written: int
    complete: bool
    resumed: bool
    already_complete: bool = False


async def export(
    streams: Sequence[Stream],
    sink: Sink,
    records: Records,
    *,
    checkpoint: Checkpoint | None = None,
    fingerprint: str = "",
    max_items: int | None = None,
    commit_interval: float = 5.0,
    fetcher: Fetcher | None = None,
    on_commit: Callable[[CheckpointState], None] | None = None,
    more: AsyncIterable[Sequence[Stream]] | None = None,
    gives: AsyncIterable[GiveRequest] | None = None,
) -> ExportResult:
    """Fetch ``streams`` and write ``records(stream, page)`` of every page to
    ``sink``, committing every ``commit_interval`` seconds.

    With a ``checkpoint`` an interrupted export resumes where its last commit
    left it; a complete one is not run again. ``fetcher`` is an entered
    :class:`Fetcher` (its options decide concurrency and pacing); one with
    default options is made otherwise.

    ``more`` hands over streams while the export runs (see
    :meth:`Fetcher.run`). The checkpoint then also holds which streams the
    export has taken, saved with their positions: resumed with the same
    ``streams`` plus any handed over since, it runs those it never took
    (say, handed over just before a crash) from their start, and the others
    from the checkpoint. Without ``more``, a resumed export runs only the
    checkpoint's streams, whatever ``streams`` is now.

    ``gives`` asks the export, while it runs, to give away part of its work
    (work stealing between processes): for each request it splits running
    streams (:meth:`Fetcher.give_away`), commits, and only then passes the
    parts it split off to the request's callback (an empty list when
    nothing could split). The checkpoint keeps every stream given away
    (see :func:`given_streams`), so whoever hands them on can find any it
    had not recorded yet after a crash.
    """
    if max_items is not None and max_items < 0:
        raise ConfigurationError("max items must not be negative")
    state = checkpoint.load(fingerprint) if checkpoint is not None else None
    if state is not None and state.complete:
        return ExportResult(None, state.items_written, True, True, already_complete=True)
    resumed = state is not None
    taken: set[str] | None = None
    if more is not None:
        if state is None:
            taken = set()
        elif "taken" in state.extra:
            taken = set(state.extra["taken"])
        else:
            # Saved by an export that was handed nothing: it took all it had.
            taken = {_key(s) for s in streams}
        keyed = {_key(s): s for s in streams}
        fresh = [s for key, s in keyed.items() if key not in taken]
        taken.update(keyed)
        streams = [*state.streams, *fresh] if state is not None else fresh
        more = _taking(more, taken)
    elif state is not None:
        streams = state.streams
    written = state.items_written if state is not None else 0
    given = given_streams(state) if state is not None else []
    await anyio.to_thread.run_sync(sink.open, state.sink if state is not None else None)
    async with contextlib.AsyncExitStack() as stack:
        if fetcher is None:
            fetcher = await stack.enter_async_context(Fetcher())
        return await _export(
            fetcher, streams, sink, records, checkpoint, fingerprint, max_items,
            commit_interval, written, resumed, on_commit, more, taken, gives, given,
        )  # fmt: skip


#: A request to give work away: called with the streams given (maybe none).
GiveRequest = Callable[[Sequence[Stream]], None]


def given_streams(state: CheckpointState) -> list[Stream]:
    """The streams an export has given away (see ``gives`` of :func:`export`)."""
    return [Stream.from_json(s) for s in state.extra.get("given") or ()]


def _key(stream: Stream) -> str:
    return _fingerprint(stream.to_json())


async def _taking(
    more: AsyncIterable[Sequence[Stream]], taken: set[str]
) -> AsyncIterator[Sequence[Stream]]:
    # A batch counts as taken in the same step as the engine adds it (no
    # await between this yield and the run's add): a commit saves both or
    # neither. A stream taken already (sent twice) is not run twice.
    async for batch in more:
        fresh = []
        for stream in batch:
            key = _key(stream)
            if key not in taken:
                taken.add(key)
                fresh.append(stream)
        yield fresh


def _extra(taken: set[str] | None, given: list[Stream]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if taken is not None:
        extra["taken"] = sorted(taken)
    if given:
        extra["given"] = [s.to_json() for s in given]
    return extra


class _ByteWrite(NamedTuple):
    """A byte sink's ``write`` in parts: ``encode`` records and ``buffer``
    the bytes (both in the event loop's thread, blocking on nothing), and
    ``write`` a full buffer's chunks (in the sink's thread)."""

    encode: Callable[[Sequence[Mapping[str, Any]]], bytes]
    buffer: Callable[[bytes, int], list[bytes] | None]
    write: Callable[[list[bytes]], None]


def _byte_write(sink: Sink) -> _ByteWrite | None:
    """A byte sink's parts, when its class has not changed what ``write``
    or its parts do."""
    from asyncpager.sinks._base import ByteSink

    kind = type(sink)
    if isinstance(sink, ByteSink) and all(
        getattr(kind, name) is getattr(ByteSink, name)
        for name in ("write", "write_encoded", "buffer_encoded", "write_chunks")
    ):
        return _ByteWrite(sink.encode_records, sink.buffer_encoded, sink.write_chunks)
    return None


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _prepare(
    records: Records,
    stream: Stream,
    page: Page,
    limit: int | None,
    encode: Callable[[Sequence[Mapping[str, Any]]], bytes] | None,
) -> tuple[Sequence[Mapping[str, Any]] | bytes, int]:
    """A page's records (at most ``limit``), encoded when ``encode`` is
    given, and how many there are.

    Built with the cyclic collector paused. Converting a page (DynamoDB's
    typed values to plain ones) makes thousands of containers; with the
    collector on, each few hundred triggered a collection, and while the
    export is the slower side the engine's queue is full of pages that every
    older-generation pass walks again: that cost as much as the conversion
    itself. When the sink encodes here, the records are let go of before
    the collector is back on, so they never cost it anything. Paused for
    this one synchronous call (never across an ``await``) and put back as
    it was found, as the compiled parsers do.
    """
    with _collector_paused():
        batch = records(stream, page)
        if isinstance(batch, EncodedLines):
            # Items kept as the text that came, for a JSON Lines sink (the
            # only sink that mode is asked for).
            if encode is not None:
                return batch.encoded(limit)
            batch = batch.records(limit)
        elif isinstance(batch, RecordsView):
            # Read by the sink itself (TypedItems, ObjectColumns), or by an
            # encoder that reads it as its records.
            if limit is not None:
                batch = batch.head(limit)
        else:
            if type(batch) is not list:
                batch = list(batch)
            if limit is not None:
                batch = batch[:limit]
        count = len(batch)
        if encode is None or not count:
            return batch, count
        data = encode(batch)
        del batch  # freed here, while the collector is off
        return data, count


async def _export(
    fetcher: Fetcher,
    streams: Sequence[Stream],
    sink: Sink,
    records: Records,
    checkpoint: Checkpoint | None,
    fingerprint: str,
    max_items: int | None,
    commit_interval: float,
    written: int,
    resumed: bool,
    on_commit: Callable[[CheckpointState], None] | None,
    more: AsyncIterable[Sequence[Stream]] | None = None,
    taken: set[str] | None = None,
    gives: AsyncIterable[GiveRequest] | None = None,
    given: list[Stream] | None = None,
) -> ExportResult:
    clock = fetcher.clock
    given = [] if given is None else given
    # A commit and a page's write never overlap: a commit for a give
    # request waits for the page being written and its acknowledgement.
    writing = anyio.Lock()
    parts = _byte_write(sink)
    encode = parts.encode if parts is not None else None
    # Every use of the sink from here on but encoding and buffering, which
    # block on nothing and stay in this thread.
    calls = SinkThread()
    last_commit = clock.now()
    enough = anyio.CancelScope()
    reached = max_items is not None and written >= max_items

    async def commit(complete: bool = False) -> None:
        nonlocal last_commit
        # A finished sink has nothing left to commit; its final state is "done".
        sink_state = {"closed": True} if complete else await calls.call(sink.commit)
        state = CheckpointState(
            fingerprint=fingerprint,
            streams=[] if complete else fetcher.resume_streams(),
            sink=sink_state,
            items_written=written,
            complete=complete,
            # What was given away stays on record even once complete: the
            # coordinator may not have saved it yet when this worker ends.
            extra=_extra(None if complete else taken, given),
        )
        if checkpoint is not None:
            await anyio.to_thread.run_sync(checkpoint.save, state)
        if on_commit is not None:
            on_commit(state)
        last_commit = clock.now()

    async def consume(stream: Stream, page: Page) -> None:
        # Write and acknowledge as one: a cancellation waits for this page.
        with anyio.CancelScope(shield=True):
            # Taken without a turn of the loop when free (as it nearly always
            # is): ``async with`` yields first, and the consumer then waited
            # behind every answer parsed meanwhile, 1.9 of an S3 export's
            # 2.6 s, while the engine's queue filled.
            try:
                writing.acquire_nowait()
            except anyio.WouldBlock:
                await writing.acquire()
            try:
                await write(stream, page)
            finally:
                writing.release()

    async def write(stream: Stream, page: Page) -> None:
        nonlocal written, reached
        if clock.now() - last_commit >= commit_interval:
            # Every page written so far is acknowledged: a consistent cut.
            await commit()
        limit = None if max_items is None else max(0, max_items - written)
        calls.check()
        batch, count = _prepare(records, stream, page, limit, encode)
        if count:
            if isinstance(batch, bytes):
                assert parts is not None
                # Kept in memory here; a full buffer (a megabyte) goes to the
                # sink's thread. Each call there waits for the interpreter's
                # lock while the loop parses: one a page made that thread
                # the bound (1.7 of an S3 export's 2.5 s waiting on it).
                chunks = parts.buffer(batch, count)
                if chunks is not None:
                    await calls.write(parts.write, chunks)
            else:
                await calls.write(sink.write, batch)
            written += count
        if max_items is not None and written >= max_items:
            reached = True
            enough.cancel()

    async def answer(requests: AsyncIterable[GiveRequest]) -> None:
        async for reply in requests:
            with anyio.CancelScope(shield=True):
                async with writing:
                    parts = fetcher.give_away()
                    if parts:
                        given.extend(parts)
                        # Saved before anyone hears of it: the checkpoint has
                        # the streams narrowed and the parts given away, or neither.
                        await commit()
            reply(parts)

    report: RunReport | None = None
    try:
        if not reached:
            with enough:
                async with anyio.create_task_group() as tg:
                    if gives is not None:
                        tg.start_soon(answer, gives)
                    report = await fetcher.run(streams, consume, more=more)
                    tg.cancel_scope.cancel()
    except BaseException:
        with anyio.CancelScope(shield=True):
            try:
                await commit()
            except Exception:
                # The sink broke on the way (a full disk, a reader that went
                # away): its last commit stands, and the error to tell is
                # the one that stopped the export, not this one.
                pass
            finally:
                await calls.call(sink.abort, check=False)
                calls.close()
        raise
    failed = report is not None and not report.ok
    complete = reached or (report is not None and not failed)
    with anyio.CancelScope(shield=True):
        try:
            if complete:
                await commit()
                await calls.call(sink.close)
                await commit(complete=True)
            else:
                await commit()
                await calls.call(sink.abort)
        except BaseException:
            # A write queued during the run failed (a full disk): its last
            # commit stands.
            with contextlib.suppress(Exception):
                await calls.call(sink.abort, check=False)
            raise
        finally:
            calls.close()
    return ExportResult(report, written, complete, resumed)
