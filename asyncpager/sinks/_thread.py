"""A sink's calls in one thread of its own, in order, writes not waited for.

The exporter used to hand every write that would reach the file to a worker
thread and wait for it, a page held all the while. The thread's round trip
is short on an idle machine, but while the event loop parses it waits for
the interpreter's lock at each step: 13 ms a time measured in an S3 export
(a million keys at 50 ms, 140 writes of a megabyte), 1.8 of its 2.6 s. The
consumer held pages most of the time, the engine's queue filled, and with
two ``--workers`` streams stopped splitting for a consumer that looked busy.

Here a write is queued and the consumer goes on: it waits only when
``pending`` writes are still queued (memory stays bounded), and any other
call (a commit, the close) waits for its result, which comes after every
write queued before it. One thread makes every call, so the sink is never
used from two at once; a write's failure is raised by the next call, before
anything is committed on top of it.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import anyio.to_thread

__all__ = ["SinkThread"]

T = TypeVar("T")


class SinkThread:
    """Calls on one sink, made in order in a thread of their own."""

    def __init__(self, pending: int = 4) -> None:
        if pending < 1:
            raise ValueError("pending must be at least 1")
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._queued: deque[concurrent.futures.Future[Any]] = deque()
        self._limit = pending
        # A daemon, unlike an executor's thread, which the interpreter joins
        # on its way out: a write stuck on a reader that stopped reading
        # would keep an interrupted command from ever exiting.
        self._thread = threading.Thread(target=_serve, args=(self._jobs,), daemon=True)
        self._thread.name = "asyncpager-sink"
        self._thread.start()

    async def write(self, fn: Callable[..., None], *args: Any) -> None:
        """Queue ``fn(*args)``; wait only while ``pending`` are queued."""
        self._collect()
        while len(self._queued) >= self._limit:
            await _wait(self._queued[0])
            self._collect()
        self._queued.append(self._submit(fn, *args))

    async def call(self, fn: Callable[..., T], *args: Any, check: bool = True) -> T:
        """``fn(*args)``, once every write queued before it is done. A write
        that failed is raised instead of its result (what ``fn`` raised
        then comes as its context), or with ``check=False`` forgotten: the
        sink is being let go of and the error to tell is another."""
        future = self._submit(fn, *args)
        try:
            return await _wait(future)
        finally:
            if check:
                self._collect()
            else:
                self._queued.clear()

    def check(self) -> None:
        """Raise what a write that is done raised, if any: before the
        caller's own thread uses the sink again (a sink broken by it would
        tell only that it is broken)."""
        self._collect()

    def close(self) -> None:
        """Let the thread go once what is queued is done."""
        self._jobs.put(None)

    def _submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put(_Job(future, fn, args))
        return future

    def _collect(self) -> None:
        # Writes are done in order: the done ones are at the front.
        while self._queued and self._queued[0].done():
            self._queued.popleft().result()  # raises what the write raised


class _Job(NamedTuple):
    future: concurrent.futures.Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]


def _serve(jobs: queue.SimpleQueue[_Job | None]) -> None:
    while (job := jobs.get()) is not None:
        if not job.future.set_running_or_notify_cancel():
            continue
        try:
            result = job.fn(*job.args)
        except BaseException as exc:  # handed to whoever waits on it
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)


async def _wait(future: concurrent.futures.Future[T]) -> T:
    # A worker thread of anyio's blocks on it: any event loop, no callback
    # into it from the sink's thread. Not abandoned on cancellation: what
    # was asked of the sink is done before the caller goes on.
    return await anyio.to_thread.run_sync(future.result)
