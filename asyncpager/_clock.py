"""Injected time.

Everything in asyncpager that waits for time to pass (pacing, backoff) reads a
:class:`Clock` instead of calling ``anyio.sleep`` directly, so tests can drive a
:class:`FakeClock` and never sleep for real.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Protocol, runtime_checkable

import anyio
import anyio.lowlevel

__all__ = ["Clock", "FakeClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """A source of monotonic time that can also wait."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The event loop's own clock (``anyio.current_time``)."""

    def now(self) -> float:
        return anyio.current_time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))


class FakeClock:
    """A virtual clock for tests.

    Time stands still until every sleeper has waited a few scheduler rounds
    with nothing else to do; then it jumps straight to the earliest deadline
    (trio's ``MockClock(autojump_threshold=0)`` does the same). Pacing and
    backoff code therefore runs at full speed while seeing exactly the waits it
    asked for, and ``now()`` tells how long they would have taken.

    ``advance()`` moves time by hand when a test wants to control it.
    """

    #: Checkpoints a sleeper yields before it concludes the loop is idle.
    #: Tasks doing real I/O are not idle, but a jump only moves virtual time,
    #: so an early jump cannot break a test, only make it see less waiting.
    idle_rounds = 20

    def __init__(self, start: float = 0.0, *, autojump: bool = True) -> None:
        self._now = float(start)
        self._autojump = autojump
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._seq = itertools.count()
        self.slept = 0.0
        """Total of all sleep requests, for assertions on backoff."""

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake every sleeper now due."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        self._now += seconds
        self._wake_due()

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, event = heapq.heappop(self._sleepers)
            event.set()

    async def sleep(self, seconds: float) -> None:
        self.slept += max(0.0, seconds)
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        entry = (self._now + seconds, next(self._seq), event)
        heapq.heappush(self._sleepers, entry)
        try:
            if not self._autojump:
                await event.wait()
                return
            while not event.is_set():
                for _ in range(self.idle_rounds):
                    await anyio.lowlevel.checkpoint()
                    if event.is_set():
                        return
                if self._sleepers:
                    self._now = max(self._now, self._sleepers[0][0])
                    self._wake_due()
        finally:
            # A cancelled sleeper must not pull time forward to its deadline.
            if not event.is_set() and entry in self._sleepers:
                self._sleepers.remove(entry)
                heapq.heapify(self._sleepers)
