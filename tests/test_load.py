"""What says whether one more stream would help: the consumers' and the loop's load."""

from __future__ import annotations

import time

import pytest

from asyncpager._load import ConsumerLoad, LoopLoad


def test_a_consumer_holding_pages_all_the_time_is_fully_busy() -> None:
    load = ConsumerLoad(1, now=0.0, window=0.25)
    load.took(0.0)
    load.returned(0.0, 0.2)
    load.took(0.2)
    assert load.share(0.5) == pytest.approx(1.0)
    # Still holding: held time counts before it is returned.
    assert load.share(1.0) == pytest.approx(1.0)


def test_idle_spells_lower_the_share_and_old_ones_are_forgotten() -> None:
    load = ConsumerLoad(1, now=0.0, window=0.25)
    load.took(0.0)
    load.returned(0.0, 0.1)
    # 0.1 s of 0.3 s.
    assert load.share(0.3) == pytest.approx(1 / 3)
    # Busy from 0.3 on; asked once per window, each share covers the last.
    load.took(0.3)
    assert load.share(0.6) == pytest.approx(1.0)
    assert load.share(0.9) == pytest.approx(1.0)
    load.returned(0.3, 0.9)
    # Asked within a window, the share reaches back to the previous mark
    # (0.6): busy 0.3 s of 0.4 s.
    assert load.share(1.0) == pytest.approx(0.75)
    # The next window begins at 0.9: idle since, the busy spell forgotten.
    assert load.share(1.2) == pytest.approx(0.0)


def test_the_share_is_per_declared_consumer() -> None:
    load = ConsumerLoad(4, now=0.0, window=0.25)
    load.took(0.0)
    load.took(0.0)
    assert load.share(1.0) == pytest.approx(0.5)


def test_no_time_passed_reads_as_idle() -> None:
    load = ConsumerLoad(1, now=5.0)
    load.took(5.0)
    assert load.share(5.0) == 0.0


class _Times:
    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def run(self, wall: float, cpu: float) -> None:
        self.wall += wall
        self.cpu += cpu


def test_loop_load_is_cpu_time_over_wall_time() -> None:
    t = _Times()
    load = LoopLoad(window=0.25, wall=lambda: t.wall, cpu=lambda: t.cpu)
    assert load.share() == 0.0
    t.run(0.3, 0.3)
    assert load.share() == pytest.approx(1.0)
    t.run(0.1, 0.01)
    # Within the window: 0.31 s of CPU over 0.0 to 0.4.
    assert load.share() == pytest.approx(0.775)
    t.run(0.2, 0.02)
    # A new window from 0.3: the busy first 0.3 s are forgotten.
    assert load.share() == pytest.approx(0.1)


def test_loop_load_counts_from_the_first_time_it_is_asked() -> None:
    # The wait for the first answers (idle) is not counted as spare CPU.
    t = _Times()
    load = LoopLoad(window=0.25, wall=lambda: t.wall, cpu=lambda: t.cpu)
    t.run(1.0, 0.0)
    assert load.share() == 0.0
    t.run(0.3, 0.3)
    assert load.share() == pytest.approx(1.0)


def test_loop_load_reads_the_threads_own_cpu_time() -> None:
    load = LoopLoad(window=0.0)
    assert load.share() == 0.0
    spin = sum(range(200_000))
    assert spin > 0
    assert 0.0 < load.share() <= 1.5


def test_enough_streams_fill_the_loop_by_littles_law() -> None:
    t = _Times()
    load = LoopLoad(window=0.25, wall=lambda: t.wall, cpu=lambda: t.cpu)
    # Nothing known before the first page.
    assert load.enough() == 0
    load.share()
    assert load.enough() == 0
    # Twenty turns of 50 ms round trips and 2 ms parses each, one after the
    # other: 2 ms of CPU a page, so 500 pages a second of CPU, and a stream
    # makes one every 52 ms: 26 streams fill the loop, 33 with a quarter to
    # spare.
    for _ in range(20):
        started = load.now()
        t.run(0.05, 0.0)
        t.run(0.002, 0.002)
        load.turned(started)
    assert load.share() == pytest.approx(0.002 / 0.052)
    assert load.enough() == 33
    # Turns that wait for a busy loop do not raise it: the fastest so far
    # counts (waiting for the loop is not a round trip another stream hides).
    started = load.now()
    t.run(0.5, 0.002)
    load.turned(started)
    load.share()  # as the engine asks, before enough()
    assert load.enough() <= 33
    # Costlier pages make fewer streams enough.
    for _ in range(20):
        started = load.now()
        t.run(0.05, 0.0)
        t.run(0.004, 0.004)
        load.turned(started)
    load.share()
    assert load.enough() == 17


def test_busy_time_is_at_least_the_threads_cpu_time() -> None:
    from asyncpager._load import _thread_busy

    busy, close = _thread_busy()
    try:
        before, cpu_before = busy(), time.thread_time()
        spin = sum(range(300_000))
        assert spin > 0
        after, cpu_after = busy(), time.thread_time()
    finally:
        close()
    # CPU time, plus any wait for a core where the system tells it.
    assert after > before
    assert after - before >= (cpu_after - cpu_before) * 0.9


def test_busy_time_falls_back_to_cpu_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from asyncpager._load import _thread_busy

    def refused(*args: object, **kwargs: object) -> int:
        raise OSError("no such file")

    monkeypatch.setattr(os, "open", refused)
    busy, close = _thread_busy()
    close()
    assert busy is time.thread_time
