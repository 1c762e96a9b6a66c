"""The engine: many pagination streams at once, paced, through bounded queues.

::

    streams ─► runnable queue ─► N fetch workers ─► pacer ─► aiobotocore
                    ▲   (one page per turn)    │
                    └── stream goes back ◄─────┤
                                               ▼
                         bounded page queue (pages and bytes)
                                               ▼
                        consumers / ``pages()`` ─► ack ─► committed position

* **Workers, not a task per stream.** ``concurrency`` workers take a stream
  from the runnable queue, fetch exactly one page, hand it on and put the
  stream back at the end of the queue. That caps requests in flight, keeps a
  stream's pages sequential (a stream is in at most one worker), and is fair:
  with ten thousand streams and 64 slots every stream gets its turn in
  round-robin order. A thousand streams cost a thousand small records, not a
  thousand tasks.
* **Backpressure.** A request first reserves the bytes its page is expected
  to take (the largest page of its operation so far, else a prior: DynamoDB
  pages hold up to 1 MB of data) in the byte budget
  (``queue_bytes``), which the page keeps until it is acknowledged; a page
  then waits for room in the page queue (``queue_pages``). So the workers
  stop fetching when consumers fall behind, and the pages in flight count
  as well as the queued ones: memory depends on the budget and the page
  size, not on the size of the listing nor on ``concurrency`` (a DynamoDB
  export with 32 segments held all 32 parsed pages in flight: 1.45 GB).
  Pages are counted at what they hold in memory once parsed, not at their
  bytes on the wire (:mod:`asyncpager._footprint`): a parsed DynamoDB page
  is about twelve times its JSON, and a library scan counted by the wire
  held 1.9 GB at a 256 MB budget.
* **Acknowledgement.** A page is acknowledged when its consumer returns (or,
  in ``pages()``, when the caller asks for the next page). A stream's
  committed position advances only over an unbroken run of acknowledged
  pages, so a checkpoint taken at any moment never skips a page that some
  slow consumer still holds.
* **Work stealing.** When workers would go idle (fewer runnable streams than
  workers), a splittable cursor (an S3 key-range shard) gives away the upper
  part of its remaining range as a new stream; not while pages already wait
  for the consumers, who are then the bound.
* **Errors.** By default the first stream that fails for good cancels the
  run, which raises one :class:`StreamFailedError` naming the stream and its
  last committed position. With ``on_error="continue"`` the others finish and
  the report lists every failure.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import weakref
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from asyncpager._clients import ClientSharing, share_loader
from asyncpager._clock import Clock, SystemClock
from asyncpager._footprint import PageSizer, wire_size
from asyncpager._groups import first_error
from asyncpager._load import ConsumerLoad, LoopLoad
from asyncpager.errors import AsyncPagerError, ConfigurationError, StreamFailedError
from asyncpager.pacing import Pacer, PacerLike, RateLimit
from asyncpager.retry import Failure, RetryPolicy, translate
from asyncpager.streams import Cursor, OperationCursor, Stream

if TYPE_CHECKING:
    from asyncpager.parsers import RawMode

__all__ = [
    "CursorFactory",
    "Fetcher",
    "PageFlow",
    "RunReport",
    "Stats",
    "StreamStats",
]

Page = dict[str, Any]
CursorFactory = Callable[..., Cursor]
Consume = Callable[[Stream, Page], Awaitable[None]]

#: Cursor factories by ``Stream.kind``; planners register theirs.
_CURSOR_KINDS: dict[str, CursorFactory] = {"operation": OperationCursor}
#: Where the built-in planners register their kinds.
_CURSOR_MODULES = {"s3-range": "asyncpager.plan.s3", "s3-walk": "asyncpager.plan.s3"}


def register_cursor(kind: str, factory: CursorFactory) -> None:
    """Make ``Stream(kind=kind)`` walk with ``factory(stream, client, hooks=,
    retry=, clock=)``."""
    _CURSOR_KINDS[kind] = factory


@dataclass
class StreamStats:
    """Figures of one stream."""

    stream: Stream
    pages: int = 0
    items: int = 0
    bytes: int = 0
    requests: int = 0
    retries: int = 0
    throttles: int = 0
    status: Literal["waiting", "running", "done", "failed", "cancelled"] = "waiting"
    #: Pages handed to consumers and not yet acknowledged. A stream whose
    #: last page was fetched is "done", but it is settled only when this is 0.
    outstanding: int = 0
    error: AsyncPagerError | None = None
    #: Where a new run would resume: the stream at its committed position.
    committed: Stream | None = None


@dataclass
class Stats:
    """Live and final figures of a run (the progress display reads these)."""

    started: float = 0.0
    elapsed: float = 0.0
    streams_total: int = 0
    streams_done: int = 0
    streams_failed: int = 0
    pages: int = 0
    items: int = 0
    bytes: int = 0
    requests: int = 0
    retries: int = 0
    throttles: int = 0
    waited_on_buckets: float = 0.0
    queue_depth: int = 0
    queue_bytes: int = 0
    peak_queue_depth: int = 0
    splits: int = 0
    #: Streams split off for other processes (``Fetcher.give_away``).
    given: int = 0

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def items_per_second(self) -> float:
        return self.items / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items()}
        out["pages_per_second"] = round(self.pages_per_second, 3)
        out["items_per_second"] = round(self.items_per_second, 3)
        return out


@dataclass
class RunReport:
    """What a run did: totals, each stream's figures, and the failures."""

    stats: Stats
    streams: list[StreamStats]
    failures: list[StreamStats] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def resume_streams(self) -> list[Stream]:
        """The streams that would finish the work: every stream not done, at
        its committed position."""
        # A stream whose last page was fetched but not yet acknowledged is
        # not finished: leaving it out would lose the pages still queued.
        return [
            s.committed or s.stream
            for s in self.streams
            if (s.status != "done" or s.outstanding > 0) and (s.committed or s.stream) is not None
        ]


async def _next_delivery(receive: MemoryObjectReceiveStream[_Delivery]) -> _Delivery:
    """The next page, without a turn of the loop when one is queued.

    anyio's ``receive()`` yields first, so a consumer took one page per turn
    of the loop while every answer that had come meanwhile was parsed in that
    turn: with DynamoDB pages (tens of milliseconds each) the queue filled to
    its bound although the consumer only counted items. Queued pages are now
    taken at once, as ``asyncio.Queue.get`` does; cancellation is still seen.
    """
    await anyio.lowlevel.checkpoint_if_cancelled()
    try:
        return receive.receive_nowait()
    except anyio.WouldBlock:
        return await receive.receive()


class _ByteBudget:
    """A semaphore counted in bytes. A page larger than the whole budget is let
    through alone, so one huge page cannot wedge the run."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiters: deque[_BudgetWaiter] = deque()

    async def acquire(self, amount: Callable[[], int]) -> int:
        """Wait for room for ``amount()`` bytes and take them; return how
        many. The amount is asked for when room is looked for, so a request
        that waited reserves what is expected by the time it goes (the
        first page of its operation may have come back meanwhile)."""
        wanted = amount()
        if not self._waiters and (self.used == 0 or self.used + wanted <= self.limit):
            # No yield to the loop on the way to a request: other streams'
            # answers wait in the ready queue, and each of them is a page to
            # parse (milliseconds), so every yield here delayed the next
            # request by several of those.
            await anyio.lowlevel.checkpoint_if_cancelled()
            self.used += wanted
            return wanted
        waiter = _BudgetWaiter(amount)
        self._waiters.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.event.is_set():
                # Granted while being cancelled: give it back.
                self.release(waiter.granted)
            raise
        return waiter.granted

    def take(self, amount: int) -> None:
        """``amount`` more, at once: a page that came out larger than its
        reservation. Waiting here could wedge the run (every worker holding
        a reservation and waiting for more, nothing queued to free any)."""
        self.used += amount

    def release(self, amount: int) -> None:
        self.used -= amount
        while self._waiters:
            waiter = self._waiters[0]
            wanted = waiter.amount()
            if self.used == 0 or self.used + wanted <= self.limit:
                self._waiters.popleft()
                self.used += wanted
                waiter.granted = wanted
                waiter.event.set()
            else:
                break


class _BudgetWaiter:
    __slots__ = ("amount", "event", "granted")

    def __init__(self, amount: Callable[[], int]) -> None:
        self.amount = amount
        self.event = anyio.Event()
        self.granted = 0


class _StreamRun:
    """The engine's record of one stream while it runs."""

    __slots__ = (
        "acked",
        "cursor",
        "next_seq",
        "pending",
        "positions",
        "shape",
        "stats",
    )

    def __init__(self, stream: Stream) -> None:
        self.shape = stream
        self.cursor: Cursor | None = None
        self.next_seq = 0
        self.acked = 0  # every page below this seq is acknowledged
        self.pending: set[int] = set()  # acknowledged out of order
        self.positions: dict[int, Any] = {}  # seq -> position after that page
        self.stats = StreamStats(stream=stream, committed=stream)


@dataclass
class _Delivery:
    run: _StreamRun
    seq: int
    page: Page
    size: int
    #: When a consumer took it (the fetcher's clock).
    taken: float = 0.0


class _Hooks:
    """Pacing and figures around each request of one stream."""

    __slots__ = ("_fetcher", "_run")

    def __init__(self, fetcher: Fetcher, run: _StreamRun) -> None:
        self._fetcher = fetcher
        self._run = run

    async def before_request(self, operation: str) -> None:
        stream = self._run.shape
        pacer = self._fetcher.pacer
        if pacer is not None:
            waited = await pacer.acquire(stream.service, stream.region, operation)
            self._fetcher.stats.waited_on_buckets += waited
        self._run.stats.requests += 1
        self._fetcher.stats.requests += 1

    def after_response(self, operation: str, page: Page) -> None:
        stream = self._run.shape
        pacer = self._fetcher.pacer
        if pacer is None:
            return
        pacer.on_success(stream.service, stream.region, operation)
        capacity = page.get("ConsumedCapacity")
        if isinstance(capacity, Mapping):
            units = capacity.get("ReadCapacityUnits", capacity.get("CapacityUnits"))
            if isinstance(units, int | float) and units > 0:
                pacer.charge(stream.service, stream.region, operation, float(units))

    def on_failure(self, operation: str, failure: Failure, exc: BaseException) -> None:
        stream = self._run.shape
        if failure is Failure.THROTTLED:
            self._run.stats.throttles += 1
            self._fetcher.stats.throttles += 1
            if self._fetcher.pacer is not None:
                self._fetcher.pacer.on_throttle(stream.service, stream.region, operation)

    def on_retry(self, operation: str) -> None:
        self._run.stats.retries += 1
        self._fetcher.stats.retries += 1


#: Pages waiting for the consumers at which streams stop being split, if
#: the consumers are also busy at least CONSUMERS_BOUND of the time.
SPLIT_WAITING = 2
CONSUMERS_BOUND = 0.8
#: The share of wall time on CPU at which the loop counts as the bound
#: (no stream splits then).
LOOP_BOUND = 0.9

#: What a request of a stream with no page yet reserves in memory, before
#: any page of its operation is seen: DynamoDB's pages hold up to 1 MB of
#: data, which its typed JSON makes two to three times larger on the wire
#: and parsed items twelve times larger again; an S3 page of 1,000 keys is
#: about half a megabyte of dicts.
_PRIOR_PAGE_BYTES = {"dynamodb": 24 * 1024 * 1024}
_DEFAULT_PAGE_BYTES = 1024 * 1024


class Fetcher:
    """Runs many :class:`Stream` s at once, paced, through bounded queues.

    ::

        async with asyncpager.Fetcher(concurrency=64, rate_limits=[RateLimit(200)]) as f:
            async for stream, page in f.pages(streams):
                ...
            report = await f.run(streams, consume, consumers=8)

    Clients: one aiobotocore client per (service, region, profile, endpoint),
    created on first use with botocore's own retries and adaptive limiter off
    (asyncpager retries and paces) and with compiled response parsers
    (``fast_parse``; identical pages, several times less CPU), sending their
    requests through :class:`asyncpager.LeanHTTPSession` (``lean_http``; the
    same requests and answers without aiohttp's machinery, 6-10% less CPU
    per page; ``None`` follows ``ASYNCPAGER_LEAN_HTTP``, on unless
    it says ``0``), and built, signed and answered without botocore's
    per-request events and objects where that changes nothing (``direct``;
    see :mod:`asyncpager._direct`: the same requests, a one-key S3 page
    for 0.25 ms of CPU instead of 0.48; ``None`` follows
    ``ASYNCPAGER_DIRECT``), all closed on exit. While the fetcher is open,
    large parsed pages are kept out of the cyclic collector's walks
    (``freeze_pages``; see :func:`asyncpager.parsers.freeze_pages`): the
    collections that walk every new page were 40% of the CPU of a DynamoDB
    scan of many-attribute items, which then took 0.6 of the time. It works
    on the whole process's collector (``gc.freeze()`` after a parse that
    left 20,000 tracked objects or more, a full collection now and then,
    everything unfrozen on exit), so by default (``None``) it stays off in a
    process that keeps frozen objects of its own (``gc.freeze()`` before a
    fork) or has its collector disabled; ``False`` leaves the collector
    alone, ``True`` freezes regardless. For the services in
    ``raw_services`` the pages skip conversions a writer does not need (see
    :func:`asyncpager.parsers.install`'s ``raw``): DynamoDB items keep
    their blobs as the base64 text that was sent. Give
    service names, or a mapping from service to mode (``{"s3": "json"}``:
    timestamps as the ISO 8601 text the JSON writers would make;
    ``{"dynamodb": "lines"}``: a ``Scan`` or ``Query`` page's ``Items`` is an
    :class:`asyncpager.item_lines.ItemLines`, the text that came, whose
    ``encoded()`` is plain JSON Lines). Pass ``clients`` to
    use your own: a mapping from ``service`` or ``(service, region)`` to a
    client (aiobotocore or aioboto3); those are not closed.

    Pacing: ``rate_limits`` builds this fetcher's own :class:`Pacer`; or pass
    ``pacer``, one shared with other fetchers (a :class:`Pacer` used by
    several in one process, or a cluster's shared budget).

    Memory: at most ``queue_pages`` pages wait for the consumers, and the
    pages fetched and not yet acknowledged (waiting, held, or on their way)
    take about ``queue_bytes`` at most, counted as they sit in memory once
    parsed (learnt from the first pages of each operation); a request
    reserves the largest page of its operation so far, so only pages larger
    than any before go past it.
    """

    def __init__(
        self,
        *,
        concurrency: int = 64,
        rate_limits: Iterable[RateLimit] = (),
        queue_pages: int = 128,
        queue_bytes: int = 256 * 1024 * 1024,
        clients: Mapping[Any, Any] | None = None,
        session: Any = None,
        client_config: Any = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        on_error: Literal["raise", "continue"] = "raise",
        on_stats: Callable[[Stats], None] | None = None,
        stats_interval: float = 0.5,
        split: bool = True,
        verify_ssl: bool = True,
        fast_parse: bool | None = None,
        raw_services: Iterable[str] | Mapping[str, RawMode] = (),
        pacer: PacerLike | None = None,
        lean_http: bool | None = None,
        freeze_pages: bool | None = None,
        direct: bool | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError("concurrency must be at least 1")
        if queue_pages < 1 or queue_bytes < 1:
            raise ConfigurationError("queue_pages and queue_bytes must be at least 1")
        if on_error not in ("raise", "continue"):
            raise ConfigurationError("on_error must be 'raise' or 'continue'")
        self.concurrency = concurrency
        self.queue_pages = queue_pages
        self.queue_bytes = queue_bytes
        self.clock = clock or SystemClock()
        limits = list(rate_limits)
        if pacer is not None and limits:
            raise ConfigurationError("give rate_limits or a pacer, not both")
        self.pacer: PacerLike | None = pacer
        if limits:
            self.pacer = Pacer(limits, clock=self.clock)
        self.retry = retry
        self.on_error = on_error
        self.on_stats = on_stats
        self.stats_interval = stats_interval
        self.split_enabled = split
        self.verify_ssl = verify_ssl
        self.fast_parse = fast_parse
        self.lean_http = lean_http
        self.direct = direct
        self.freeze_pages = freeze_pages
        # Memory per wire byte of each operation's pages, learnt once for
        # every flow of this fetcher: the walk of a 4,000-item DynamoDB page
        # costs about as much as its parse (86 ms).
        self._sizer = PageSizer()
        self.raw_services: dict[str, RawMode] = (
            dict(raw_services)
            if isinstance(raw_services, Mapping)
            else dict.fromkeys(raw_services, True)
        )
        self.stats = Stats()
        self._given_clients = dict(clients or {})
        self._session = session
        self._client_config = client_config
        self._clients: dict[tuple[str, str | None, str | None, str | None], Any] = {}
        self._sessions: dict[str | None, Any] = {}
        self._sharing = ClientSharing()
        self._client_lock = anyio.Lock()
        self._stack: AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._entered = False
        self._active: _Run | None = None

    # -- lifetime --------------------------------------------------------

    def _freezes(self) -> bool:
        if self.freeze_pages is not None:
            return self.freeze_pages
        from asyncpager.parsers._install import freezing, heap_frozen

        # On by default, unless the process keeps frozen objects of its own
        # (a server that froze its heap before forking, to share it copy on
        # write: the freezer's full collections unfreeze everything) or runs
        # with its collector off. A freezer already on (another fetcher's)
        # is held too, so that it stays on while this one runs.
        return freezing() or (gc.isenabled() and not heap_frozen())

    async def __aenter__(self) -> Fetcher:
        if self._entered:
            raise ConfigurationError("a Fetcher can be entered only once at a time")
        self._entered = True
        self._stack = AsyncExitStack()
        if self._freezes():
            from asyncpager.parsers import hold_frozen_pages

            # Let go on the way out, whatever way that is (the stack is
            # closed even when the block is cancelled).
            self._stack.callback(hold_frozen_pages())
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        tg, self._tg = self._tg, None
        self._entered = False
        try:
            if tg is not None:
                # Flows still running belong to this block: stop them.
                tg.cancel_scope.cancel()
                try:
                    await tg.__aexit__(exc_type, exc, tb)
                except BaseExceptionGroup as group:
                    # The task group wraps an error of the block's own (a
                    # failed stream out of ``pages()``, say) in a group: the
                    # caller gets the error itself.
                    error = first_error(group)
                    if error is exc:
                        return
                    raise error from None
        finally:
            self._clients.clear()
            if stack is not None:
                await self._close_clients(stack)

    @staticmethod
    async def _close_clients(stack: AsyncExitStack) -> None:
        # Closing clients awaits; it must finish even when the caller is
        # being cancelled, or connections leak. Bounded, in case a peer hangs.
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await stack.aclose()

    async def client_for(self, stream: Stream) -> Any:
        """The client that serves ``stream`` (created on first use)."""
        for key in (
            (stream.service, stream.region, stream.profile, stream.endpoint_url),
            (stream.service, stream.region),
            stream.service,
        ):
            if key in self._given_clients:
                return self._given_clients[key]
        key4 = (stream.service, stream.region, stream.profile, stream.endpoint_url)
        client = self._clients.get(key4)
        if client is not None:
            return client
        if self._stack is None:
            raise ConfigurationError("use the Fetcher inside 'async with'")
        async with self._client_lock:
            client = self._clients.get(key4)
            if client is None:
                client = await self._create_client(stream)
                self._clients[key4] = client
        return client

    async def _create_client(self, stream: Stream) -> Any:
        from aiobotocore.session import AioSession
        from botocore.config import Config

        assert self._stack is not None
        # One session per profile: a session loads the endpoint and service
        # data once, and making one per client costs a quarter second each.
        session = self._session if stream.profile is None else None
        if session is None:
            session = self._sessions.get(stream.profile)
            if session is None:
                session = self._sessions[stream.profile] = AioSession(profile=stream.profile)
                share_loader(session)
        options: dict[str, Any] = {
            "retries": {"total_max_attempts": 1, "mode": "standard"},
            "max_pool_connections": max(10, self.concurrency),
            "tcp_keepalive": True,
        }
        config = Config(**options)
        from asyncpager._http import lean_config, lean_http_enabled

        if self.lean_http if self.lean_http is not None else lean_http_enabled():
            config = lean_config(options) or config
        if self._client_config is not None:
            config = config.merge(self._client_config)
        from asyncpager.parsers import install as install_parsers

        # What clients can share, they share (see _clients).
        with self._sharing.creating(session):
            client = await self._stack.enter_async_context(
                session.create_client(
                    stream.service,
                    region_name=stream.region,
                    endpoint_url=stream.endpoint_url,
                    config=config,
                    verify=None if self.verify_ssl else False,
                )
            )
        # Parsing, not the network, caps a core (about 15 S3 pages a second
        # with botocore's parser): clients the fetcher makes parse with the
        # compiled parsers unless told not to (ASYNCPAGER_FAST_PARSE=0).
        install_parsers(
            client, enabled=self.fast_parse, raw=self.raw_services.get(stream.service, False)
        )
        self._sharing.made(client)
        from asyncpager._direct import direct_enabled
        from asyncpager._direct import install as install_direct

        if self.direct if self.direct is not None else direct_enabled():
            install_direct(client)
        return client

    # -- running ---------------------------------------------------------

    def resume_streams(self) -> list[Stream]:
        """Now, during a run: every stream not yet done, at its committed
        position. Saved together with what the consumers have written, this
        is a checkpoint that resumes exactly."""
        run = self._active
        if run is None:
            return []
        return run.report().resume_streams()

    def _streams_enough(self) -> int | None:
        """Now, during a run whose event loop is the bound (on CPU at least
        ``LOOP_BOUND`` of the time, as last measured): the streams in flight
        that keep it that busy. ``None`` while latency is the bound, before
        anything is measured, or with nothing running."""
        run = self._active
        return None if run is None else run.streams_enough()

    def give_away(self) -> list[Stream]:
        """Now, during a run: part of the remaining work, for another
        process to run (work stealing): half of each of the running streams
        that have fetched the most pages, half of them at most. Empty when
        none can split (or nothing runs). Each stream keeps the rest (a
        resume state taken from now on has it narrowed), and this run will
        not fetch what is given away."""
        run = self._active
        return [] if run is None else run.give_away()

    def pages(
        self, streams: Iterable[Stream], *, more: AsyncIterable[Sequence[Stream]] | None = None
    ) -> PageFlow:
        """One merged, bounded flow of ``(stream, page)`` from every stream.

        The page you hold is acknowledged when you ask for the next one.
        Leave early with ``break``: the producers stop. ``async with
        fetcher.pages(streams) as flow`` stops them deterministically at the
        block's end; ``flow.report`` has the figures when it is over.

        ``more`` hands over streams while the flow runs (work dealt by a
        coordinator, say): each batch it yields joins the flow, and the flow
        ends only once ``more`` is exhausted and every stream is done.
        """
        return PageFlow(self, list(streams), more)

    async def run(
        self,
        streams: Iterable[Stream],
        consume: Consume,
        *,
        consumers: int = 1,
        more: AsyncIterable[Sequence[Stream]] | None = None,
    ) -> RunReport:
        """Feed every page to ``consume(stream, page)`` in ``consumers`` tasks.

        A page is acknowledged when ``consume`` returns. Raises
        :class:`StreamFailedError` on the first stream that fails for good
        (``on_error="raise"``), or the consumer's own exception. ``more``: as
        for :meth:`pages`.
        """
        if consumers < 1:
            raise ConfigurationError("consumers must be at least 1")
        async with _Run(self, list(streams), more, consumers=consumers) as run:

            async def consumer(receive: MemoryObjectReceiveStream[_Delivery]) -> None:
                async with receive:
                    while True:
                        try:
                            delivery = await _next_delivery(receive)
                        except anyio.EndOfStream:
                            return
                        run.took(delivery)
                        await consume(delivery.run.shape, delivery.page)
                        run.ack(delivery)

            try:
                async with anyio.create_task_group() as tg:
                    for _ in range(consumers):
                        tg.start_soon(consumer, run.receive.clone())
                    run.receive.close()
            except BaseExceptionGroup as group:
                raise first_error(group) from None
        return run.report()


class _Run:
    """One run of a set of streams: its workers, queues and bookkeeping."""

    def __init__(
        self,
        fetcher: Fetcher,
        streams: Sequence[Stream],
        more: AsyncIterable[Sequence[Stream]] | None = None,
        consumers: int = 1,
    ) -> None:
        if not fetcher._entered:
            raise ConfigurationError("use the Fetcher inside 'async with'")
        self.fetcher = fetcher
        self.stats = fetcher.stats = Stats(started=fetcher.clock.now())
        self.runs = [_StreamRun(s) for s in streams]
        self.stats.streams_total = len(self.runs)
        self.runnable: deque[_StreamRun] = deque(self.runs)
        self.active = len(self.runs)  # streams not yet done or failed
        self.busy = 0  # workers fetching right now
        self.consumer_load = ConsumerLoad(consumers, fetcher.clock.now())
        self.loop_load = LoopLoad()
        self.wakeup = anyio.Event()
        self.budget = _ByteBudget(fetcher.queue_bytes)
        # (service, operation) -> bytes in memory of its largest page so far.
        self._sizes: dict[tuple[str, str], int] = {}
        self.send: MemoryObjectSendStream[_Delivery]
        self.receive: MemoryObjectReceiveStream[_Delivery]
        self.send, self.receive = anyio.create_memory_object_stream[_Delivery](fetcher.queue_pages)
        self.failure: StreamFailedError | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._cursors: set[Cursor] = set()
        self._stats_scope = anyio.CancelScope()
        self._workers_left = 0
        # While ``more`` may still hand over streams, the run is not over
        # when its streams are: workers wait for the next batch.
        self._more = more
        self._held = more is not None

    async def __aenter__(self) -> _Run:
        self.fetcher._active = self
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        workers = min(self.fetcher.concurrency, max(1, len(self.runs)))
        if self.fetcher.split_enabled or self._more is not None:
            workers = self.fetcher.concurrency
        if self._more is not None:
            self._tg.start_soon(self._feed, self._more)
        senders = [self.send.clone() for _ in range(workers)]
        self._workers_left = workers
        self.send.close()
        for sender in senders:
            self._tg.start_soon(self._worker, sender)
        if self.fetcher.on_stats is not None:
            self._tg.start_soon(self._report_stats)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        assert self._tg is not None
        if exc is not None or self.failure is not None:
            self._tg.cancel_scope.cancel()
        try:
            await self._tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        finally:
            await self._close_cursors()
            self.loop_load.close()
            self._finish()
        if self.failure is not None and (
            exc is None or isinstance(exc, anyio.get_cancelled_exc_class())
        ):
            raise self.failure
        return False

    def cancel(self) -> None:
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def _close_cursors(self) -> None:
        with anyio.CancelScope(shield=True):
            for cursor in list(self._cursors):
                with contextlib.suppress(Exception):
                    await cursor.aclose()
            self._cursors.clear()

    def _finish(self) -> None:
        now = self.fetcher.clock.now()
        self.stats.elapsed = now - self.stats.started
        for run in self.runs:
            if run.stats.status in ("waiting", "running"):
                run.stats.status = "cancelled"
        if self.fetcher.on_stats is not None:
            self.fetcher.on_stats(self.stats)

    async def _report_stats(self) -> None:
        assert self.fetcher.on_stats is not None
        # Stopped by the last worker: the run must not wait for this loop.
        with self._stats_scope:
            while True:
                await self.fetcher.clock.sleep(self.fetcher.stats_interval)
                self.stats.elapsed = self.fetcher.clock.now() - self.stats.started
                self.fetcher.on_stats(self.stats)

    # -- workers ---------------------------------------------------------

    async def _next_runnable(self) -> _StreamRun | None:
        while True:
            if self.runnable:
                return self.runnable.popleft()
            if self.active == 0 and not self._held:
                return None
            await self.wakeup.wait()

    async def _feed(self, more: AsyncIterable[Sequence[Stream]]) -> None:
        try:
            async for batch in more:
                self.add(batch)
        finally:
            self._held = False
            self._wake()

    def add(self, streams: Sequence[Stream]) -> None:
        """More streams for this run, started as workers come free."""
        for stream in streams:
            run = _StreamRun(stream)
            self.runs.append(run)
            self.runnable.append(run)
            self.active += 1
            self.stats.streams_total += 1
        self._wake()

    def _wake(self) -> None:
        self.wakeup.set()
        self.wakeup = anyio.Event()

    async def _worker(self, send: MemoryObjectSendStream[_Delivery]) -> None:
        try:
            await self._work(send)
        finally:
            self._workers_left -= 1
            if self._workers_left == 0:
                self._stats_scope.cancel()

    async def _work(self, send: MemoryObjectSendStream[_Delivery]) -> None:
        async with send:
            while True:
                run = await self._next_runnable()
                if run is None:
                    self._wake()
                    return
                self.busy += 1
                try:
                    more = await self._turn(run, send)
                finally:
                    self.busy -= 1
                if more:
                    self.runnable.append(run)
                    self._wake()
                else:
                    self.active -= 1
                    self._wake()

    async def _cursor(self, run: _StreamRun) -> Cursor:
        if run.cursor is None:
            stream = run.shape
            factory = _CURSOR_KINDS.get(stream.kind)
            if factory is None and stream.kind in _CURSOR_MODULES:
                # A stream read back from a checkpoint, before its planner was imported.
                importlib.import_module(_CURSOR_MODULES[stream.kind])
                factory = _CURSOR_KINDS.get(stream.kind)
            if factory is None:
                raise ConfigurationError(f"no cursor for stream kind {stream.kind!r}")
            client = await self.fetcher.client_for(stream)
            run.cursor = factory(
                stream,
                client,
                hooks=_Hooks(self.fetcher, run),
                retry=self.fetcher.retry,
                clock=self.fetcher.clock,
            )
            self._cursors.add(run.cursor)
        return run.cursor

    def _expected_size(self, run: _StreamRun) -> int:
        # The largest page of the operation so far: the last page of a
        # stream is often nearly empty (a scan segment's end, a probe), and
        # reserving that for the others' full pages would let them all go.
        shape = run.shape
        known = self._sizes.get((shape.service, shape.operation))
        if known is not None:
            return known
        return _PRIOR_PAGE_BYTES.get(shape.service, _DEFAULT_PAGE_BYTES)

    async def _turn(self, run: _StreamRun, send: MemoryObjectSendStream[_Delivery]) -> bool:
        """Fetch one page of ``run``; tell whether the stream has more."""
        run.stats.status = "running"
        reserved = await self.budget.acquire(lambda: self._expected_size(run))
        try:
            cursor = await self._cursor(run)
            started = self.loop_load.now()
            page = await cursor.next_page()
        except Exception as exc:
            self.budget.release(reserved)
            self._fail(run, exc)
            return False
        except BaseException:
            self.budget.release(reserved)
            raise
        if page is None:
            self.budget.release(reserved)
            await self._end(run, cursor)
            return False
        self.loop_load.turned(started)
        seq = run.next_seq
        run.next_seq += 1
        run.positions[seq] = cursor.position
        wire = wire_size(page)
        kind = (run.shape.service, run.shape.operation)
        size = self.fetcher._sizer.size(kind, page, wire)
        if size > self._sizes.get(kind, 0):
            self._sizes[kind] = size
        if size > reserved:
            self.budget.take(size - reserved)
        elif size < reserved:
            self.budget.release(reserved - size)
        items = cursor.count_items(page)
        run.stats.pages += 1
        run.stats.items += items
        run.stats.bytes += wire
        self.stats.pages += 1
        self.stats.items += items
        self.stats.bytes += wire
        self._maybe_split(run, cursor, send.statistics().current_buffer_used)
        try:
            self.stats.queue_bytes = self.budget.used
            run.stats.outstanding += 1
            delivery = _Delivery(run, seq, page, size)
            # Queued without a yield when there is room (see
            # _ByteBudget.acquire); send() yields even then.
            await anyio.lowlevel.checkpoint_if_cancelled()
            try:
                send.send_nowait(delivery)
            except anyio.WouldBlock:
                await send.send(delivery)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            # Every consumer is gone (it failed or the flow was closed); the
            # run is ending and its owner reports why.
            run.stats.outstanding -= 1
            self.budget.release(size)
            self.cancel()
            return False
        except BaseException:
            # Never handed over: not outstanding, and never acknowledged.
            run.stats.outstanding -= 1
            self.budget.release(size)
            raise
        depth = send.statistics().current_buffer_used
        self.stats.queue_depth = depth
        self.stats.peak_queue_depth = max(self.stats.peak_queue_depth, depth)
        if cursor.finished:
            # Its last page is handed over: the stream ends now. Left running
            # until a worker came back to find nothing more, it was held by
            # any checkpoint taken once that page was acknowledged, at its
            # position after the last page: for a pageable operation the
            # token None, which reads as its start.
            await self._end(run, cursor)
            return False
        return True

    async def _end(self, run: _StreamRun, cursor: Cursor) -> None:
        run.cursor = None
        self._cursors.discard(cursor)
        await cursor.aclose()
        run.stats.status = "done"
        self.stats.streams_done += 1
        self._commit(run)

    def _maybe_split(self, run: _StreamRun, cursor: Cursor, waiting: int) -> None:
        if not self.fetcher.split_enabled:
            return
        # A new stream helps only where latency is the bound: it is worth a
        # request (the narrowed stream's last page runs past its new bound,
        # the new one starts with a short page) and pages in memory. So a
        # stream splits after each of its pages while a slot is idle, unless
        # what takes the pages is the bound instead:
        # - the loop, on CPU most of the time: at 0 ms, splits then grew the
        #   answers in flight with the listing's size (peak RSS 73 MiB at 1M
        #   keys, 84 at 10M; without them, 67 and 68, and 20% faster);
        # - the consumers, busy most of the time while pages wait for them.
        #   Pages waiting alone do not say so: answers that arrive in one turn
        #   of the loop wait together for a consumer idle the rest of the
        #   time (the export's, busy half its time, saw two or more waiting
        #   at half the pages; held back then, its S3 listing kept 10 to 20
        #   of its 32 requests in flight at 50 ms).
        # Splitting every 4 pages once half the slots were busy, as before,
        # kept 15 of 32 in flight listing a tree of folders at 100 ms (the
        # loop at 55%), 31 of 32 on every page. The shares are measured at
        # every page, so that their windows stay recent.
        # The loop's share, though, lags: measured over a window, it reads
        # 1 for a while after streams ended and left it waiting (at 50 ms a
        # million keys fell to 15 streams in flight, half the pages per
        # second, and did not split for a third of a second). So while it
        # reads bound, streams still split up to as many as keep it busy.
        consumers = self.consumer_load.share(self.fetcher.clock.now())
        if waiting >= SPLIT_WAITING and consumers >= CONSUMERS_BOUND:
            return
        limit = self.fetcher.concurrency
        if self.loop_load.share() >= LOOP_BOUND:
            limit = min(limit, self.loop_load.enough())
        # A cursor whose splits cost nothing (a folder walk gives away
        # folders not yet started) may fill every idle slot at once; a key
        # range splits at most once per page (S3RangeCursor.split).
        while self.busy + len(self.runnable) < limit:
            outcome = cursor.split()
            if outcome is None:
                return
            narrowed, new = outcome
            run.shape = narrowed
            child = _StreamRun(new)
            self.runs.append(child)
            self.runnable.append(child)
            self.active += 1
            self.stats.streams_total += 1
            self.stats.splits += 1
            self._commit(run)
            self._wake()

    def streams_enough(self) -> int | None:
        # Measured at every page (see _maybe_split), whether or not streams
        # split; not once the run's workers are gone.
        if (
            self._workers_left == 0
            or not self.fetcher.split_enabled
            or self.loop_load.last_share < LOOP_BOUND
        ):
            return None
        return self.loop_load.enough() or None

    def give_away(self) -> list[Stream]:
        # The streams that gave the most pages are likely the largest left
        # (shards the plan cut too wide): they are cut first. Half of the
        # streams, each halved, is about a quarter of the work: asked again
        # once that is done, the split stays even as the work runs out,
        # and each cut costs its stream a page read past the new bound.
        running = [r for r in self.runs if r.cursor is not None and r.stats.status == "running"]
        running.sort(key=lambda r: r.stats.pages, reverse=True)
        given: list[Stream] = []
        for run in running:
            if given and len(given) >= len(running) // 2:
                break
            assert run.cursor is not None
            # Again, though it split on its last page: streams split here
            # whenever a slot is idle, and an idle worker elsewhere asking
            # for work was told "none" every time (0 of 19 asks at the end
            # of a million keys, while the other worker listed alone).
            outcome = run.cursor.split(again=True)
            if outcome is None:
                continue
            run.shape, part = outcome
            self._commit(run)
            given.append(part)
        self.stats.given += len(given)
        return given

    def _fail(self, run: _StreamRun, exc: Exception) -> None:
        error = translate(exc, operation=run.shape.operation, last_token=None)
        if error is None:
            error = AsyncPagerError(f"{type(exc).__name__}: {exc}", operation=run.shape.operation)
            error.__cause__ = exc
        committed = run.stats.committed
        position = committed.position if committed is not None else None
        run.stats.status = "failed"
        run.stats.error = error
        self.stats.streams_failed += 1
        if run.cursor is not None:
            self._cursors.discard(run.cursor)
            run.cursor = None
        failure = StreamFailedError(
            f"stream {run.shape.name} failed: {error.message}",
            stream=committed or run.shape,
            operation=run.shape.operation,
            last_token=position if isinstance(position, str) else None,
        )
        failure.__cause__ = exc
        if self.fetcher.on_error == "raise" and self.failure is None:
            self.failure = failure
            self.cancel()

    # -- acknowledgement -------------------------------------------------

    def took(self, delivery: _Delivery) -> None:
        """A consumer has the page from now until it is acknowledged."""
        delivery.taken = now = self.fetcher.clock.now()
        self.consumer_load.took(now)

    def ack(self, delivery: _Delivery) -> None:
        self.consumer_load.returned(delivery.taken, self.fetcher.clock.now())
        run = delivery.run
        run.stats.outstanding -= 1
        self.budget.release(delivery.size)
        self.stats.queue_bytes = self.budget.used
        if delivery.seq == run.acked:
            run.acked += 1
            while run.acked in run.pending:
                run.pending.discard(run.acked)
                run.acked += 1
        else:
            run.pending.add(delivery.seq)
        self._commit(run)

    def _commit(self, run: _StreamRun) -> None:
        last = run.acked - 1
        if last >= 0 and last in run.positions:
            position = run.positions[last]
            for seq in [s for s in run.positions if s <= last]:
                del run.positions[seq]
            run.stats.committed = run.shape.at(position)
        elif run.stats.committed is not None:
            # Keep the committed position but adopt the current shape (a split
            # narrowed it): resuming must not overlap the new stream.
            run.stats.committed = run.shape.at(run.stats.committed.position)

    def report(self) -> RunReport:
        streams = [r.stats for r in self.runs]
        return RunReport(
            stats=self.stats,
            streams=streams,
            failures=[s for s in streams if s.status == "failed"],
        )


def _cancel_quietly(scope: anyio.CancelScope) -> None:
    # Runs from a finaliser, possibly after the loop is gone: nothing to stop then.
    with contextlib.suppress(RuntimeError):
        scope.cancel()


class PageFlow:
    """The ``(stream, page)`` flow of :meth:`Fetcher.pages`.

    An async iterator and an async context manager. Its workers run in the
    fetcher's task group (entered by ``async with Fetcher(...)``), not in the
    caller's task, so leaving the loop early cannot cancel the caller: the
    flow stops its workers when it is exhausted, when its ``async with`` block
    ends, on ``aclose()``, or when it is dropped after a ``break``.
    """

    def __init__(
        self,
        fetcher: Fetcher,
        streams: list[Stream],
        more: AsyncIterable[Sequence[Stream]] | None = None,
    ) -> None:
        self._fetcher = fetcher
        self._streams = streams
        self._more = more
        self._run: _Run | None = None
        self._held: _Delivery | None = None
        self._closed = False
        self._scope = anyio.CancelScope()
        self._stopped = anyio.Event()
        self._error: BaseException | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self.report: RunReport | None = None

    async def _start(self) -> _Run:
        if self._run is None:
            tg = self._fetcher._tg
            if tg is None:
                raise ConfigurationError("use the Fetcher inside 'async with'")
            run = _Run(self._fetcher, self._streams, self._more)
            self._run = run
            tg.start_soon(self._drive, run)
            # A flow dropped after ``break`` stops its workers: the finaliser
            # runs synchronously when the last reference goes.
            self._finalizer = weakref.finalize(self, _cancel_quietly, self._scope)
            self._finalizer.atexit = False
        return self._run

    async def _drive(self, run: _Run) -> None:
        try:
            with self._scope:
                async with run:
                    pass
        except Exception as exc:
            self._error = exc
        except BaseException:
            # Cancelled with the fetcher: nobody will read what is queued.
            run.receive.close()
            raise
        finally:
            self.report = run.report()
            if self._scope.cancel_called:
                # Stopped by the flow: nobody will read what is queued.
                run.receive.close()
            self._stopped.set()
            if self._finalizer is not None:
                self._finalizer.detach()

    async def __aenter__(self) -> PageFlow:
        await self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the workers now and wait until they are gone."""
        if self._closed:
            return
        self._closed = True
        self._held = None
        self._scope.cancel()
        if self._run is not None:
            self._run.receive.close()
            with anyio.CancelScope(shield=True):
                await self._stopped.wait()

    def __aiter__(self) -> PageFlow:
        return self

    async def __anext__(self) -> tuple[Stream, Page]:
        if self._closed:
            raise StopAsyncIteration
        run = await self._start()
        if self._held is not None:
            run.ack(self._held)
            self._held = None
        try:
            delivery = await _next_delivery(run.receive)
        except anyio.EndOfStream:
            with anyio.CancelScope(shield=True):
                await self._stopped.wait()
            self._closed = True
            run.receive.close()
            if self._error is not None:
                # Keep its __cause__ (the service's error); hide EndOfStream.
                self._error.__suppress_context__ = True
                raise self._error  # noqa: B904
            raise StopAsyncIteration from None
        except BaseException:
            await self.aclose()
            raise
        run.took(delivery)
        self._held = delivery
        return delivery.run.shape, delivery.page
