"""How busy a run's consumers and its event loop are: what says whether one
more stream would help."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable

__all__ = ["WINDOW", "ConsumerLoad", "LoopLoad"]

#: Seconds over which the share is measured: the last one to two of these.
WINDOW = 0.25

#: Streams kept in flight beyond those that would just keep the loop busy:
#: turns vary, and a stream ends with a short page.
ENOUGH_MARGIN = 1.25


class _Rate:
    """How fast a running total grew over the last one to two windows: long
    enough that one long page does not decide alone, short enough that an
    old spell is forgotten."""

    __slots__ = ("_marks", "window")

    def __init__(self, now: float, total: float, window: float) -> None:
        self.window = window
        # (time, total) where the previous and the current window began.
        self._marks = ((now, total), (now, total))

    def over(self, now: float, total: float) -> float:
        previous, current = self._marks
        if now - current[0] >= self.window:
            self._marks = previous, current = current, (now, total)
        span = now - previous[0]
        return (total - previous[1]) / span if span > 0 else 0.0


class ConsumerLoad:
    """The share of recent time the consumers spent holding pages.

    A page is held from when a consumer takes it until it is acknowledged
    (``consume`` returned; with ``pages()``, the next page was asked for).
    A share near 1 means the consumers are the bound: pages wait because
    they cannot keep up. Pages waiting while the share is low only arrived
    together (a loop turn in which many answers were parsed) and are taken
    as soon as the consumer runs.

    Times are the caller's clock (the fetcher's); the share is over the last
    one to two windows of ``window`` seconds.
    """

    __slots__ = ("_done", "_held", "_rate", "_since", "consumers")

    def __init__(self, consumers: int, now: float, window: float = WINDOW) -> None:
        self.consumers = max(1, consumers)
        self._held = 0  # pages in consumers' hands
        self._since = 0.0  # the sum of the times they were taken
        self._done = 0.0  # time spent on pages already returned
        self._rate = _Rate(now, 0.0, window)

    def busy(self, now: float) -> float:
        """Seconds spent holding pages since the start, the held ones included."""
        return self._done + self._held * now - self._since

    def took(self, now: float) -> None:
        self._held += 1
        self._since += now

    def returned(self, taken: float, now: float) -> None:
        self._held -= 1
        self._since -= taken
        self._done += now - taken

    def share(self, now: float) -> float:
        """Busy time per consumer over the last one to two windows (0 to 1;
        above 1 when more tasks consume than were declared)."""
        return self._rate.over(now, self.busy(now)) / self.consumers


def _thread_busy() -> tuple[Callable[[], float], Callable[[], None]]:
    """How long this thread has been busy (seconds), and what lets go of
    what that reads.

    Its CPU time, plus, where Linux tells it, the time it waited for a core
    while ready to run: a loop that always has work is the bound even when
    other processes share its core (two ``--workers`` with the endpoint and
    the coordinator on two cores read 0.8-0.9 of their time on CPU, and
    split as if idle: 690-780 splits for a million keys where one worker,
    on a core of its own, made 130).
    """
    try:
        fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
    except OSError:
        return time.thread_time, lambda: None

    def busy() -> float:
        # "<ns on CPU> <ns waiting on a run queue> <time slices>". The time
        # on CPU there moves at the scheduler's ticks; the thread's clock
        # is exact (a window of a few milliseconds read 1.9 of its wall).
        waited = os.pread(fd, 128, 0).split()[1]
        return time.thread_time() + int(waited) / 1e9

    def close() -> None:
        with contextlib.suppress(OSError):
            os.close(fd)

    try:
        busy()
    except (OSError, ValueError, IndexError):
        close()
        return time.thread_time, lambda: None
    return busy, close


class LoopLoad:
    """The share of recent wall time the event loop's thread spent on CPU,
    or ready for it and waiting for a core (see :func:`_thread_busy`).

    Near 1, the loop is the bound: another stream adds a request's CPU (and
    a page read past a split's bound) without adding pages per second. This
    measures the machine, not a wait, so it reads real time (and the thread's
    CPU time), not the fetcher's injected clock. Over the last one to two
    windows, as :class:`ConsumerLoad`, the first from the first time it is
    asked (the first page): the wait for the first answers is no evidence of
    spare CPU, and counted it let a listing of 20 buckets that is CPU-bound
    from its first pages split 50-53 times in its first half second (6% more
    requests; 13-21 times measured from the first page).

    It also tells how many streams keep the loop that busy (:meth:`enough`),
    from the pages' turns (:meth:`turned`): a share measured over a window
    still reads 1 a while after streams ended and left the loop waiting.
    """

    __slots__ = (
        "_close",
        "_cpu",
        "_fastest",
        "_paged",
        "_pages",
        "_per_second",
        "_rate",
        "_share",
        "_wall",
        "window",
    )

    def __init__(
        self,
        window: float = WINDOW,
        wall: Callable[[], float] = time.perf_counter,
        cpu: Callable[[], float] | None = None,
    ) -> None:
        """``cpu``: the thread's busy time (default: its CPU time and its
        wait for a core where Linux tells it; read from the thread that
        makes this)."""
        self.window = window
        self._wall = wall
        self._close: Callable[[], None] = lambda: None
        if cpu is None:
            cpu, self._close = _thread_busy()
        self._cpu = cpu
        self._rate: _Rate | None = None
        self._paged: _Rate | None = None
        self._pages = 0
        # What the last share() measured: the busy share and pages a second.
        self._share = 0.0
        self._per_second = 0.0
        # The fastest turn so far: the round trip and a parse. Not over a
        # window: while the loop is the bound, every turn also waits for it
        # (at 0 ms a stream's turn then takes as long as all of the others'
        # parses), and a recent fastest turn would call for as many streams
        # as there are.
        self._fastest = math.inf

    def close(self) -> None:
        """Let go of what the busy time is read from."""
        self._close()

    def now(self) -> float:
        """The real time a turn is measured in."""
        return self._wall()

    def turned(self, started: float) -> None:
        """A page came from a turn begun at ``started`` (:meth:`now`): its
        request, its answer and its parse."""
        self._pages += 1
        self._fastest = min(self._fastest, self._wall() - started)

    def share(self) -> float:
        now, used = self._wall(), self._cpu()
        if self._rate is None:
            self._rate = _Rate(now, used, self.window)
            self._paged = _Rate(now, self._pages, self.window)
            return 0.0
        assert self._paged is not None
        # Both rates roll their windows at the same moments: pages and CPU
        # over the same span.
        self._per_second = self._paged.over(now, self._pages)
        self._share = self._rate.over(now, used)
        return self._share

    @property
    def last_share(self) -> float:
        """What the last :meth:`share` measured (0 before the first)."""
        return self._share

    def enough(self) -> int:
        """Streams in flight that keep the loop as busy as it was over the
        last :meth:`share`'s span, with a quarter to spare (Little's law: the
        pages per second the loop's CPU allows, times the fastest turn so
        far); 0 before a page is known. Read from what the last
        :meth:`share` measured: no clock is read again."""
        fastest, busy, pages = self._fastest, self._share, self._per_second
        if math.isinf(fastest) or busy <= 0 or pages <= 0:
            return 0
        # pages / busy: pages per second of CPU.
        return math.ceil(ENOUGH_MARGIN * fastest * pages / busy)
