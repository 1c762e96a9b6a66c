"""A sink's calls in a thread of their own: in order, writes not waited for,
failures raised by the next call, nothing abandoned on cancellation."""

from __future__ import annotations

import threading

import anyio
import pytest

from asyncpager.sinks._thread import SinkThread

pytestmark = pytest.mark.anyio


async def test_calls_run_in_order_in_one_thread_of_their_own() -> None:
    calls = SinkThread(pending=2)
    done: list[tuple[str, int]] = []

    def note(name: str) -> None:
        done.append((name, threading.get_ident()))

    for i in range(10):
        await calls.write(note, f"w{i}")
    assert await calls.call(lambda: len(done)) == 10
    calls.close()
    assert [name for name, _ in done] == [f"w{i}" for i in range(10)]
    threads = {ident for _, ident in done}
    assert len(threads) == 1
    assert threading.get_ident() not in threads


async def test_a_write_is_not_waited_for_until_too_many_are_queued() -> None:
    calls = SinkThread(pending=2)
    release = threading.Event()
    ran: list[int] = []

    def slow(i: int) -> None:
        release.wait()
        ran.append(i)

    # Two queued, the first held in the thread: both calls return at once.
    await calls.write(slow, 1)
    await calls.write(slow, 2)
    assert ran == []
    third_queued = anyio.Event()

    async def third() -> None:
        await calls.write(slow, 3)
        third_queued.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(third)
        await anyio.wait_all_tasks_blocked()
        # The third waits for room: the first write is still running.
        assert not third_queued.is_set()
        release.set()
        await third_queued.wait()
    await calls.call(lambda: None)
    calls.close()
    assert ran == [1, 2, 3]


async def test_a_failed_write_is_raised_by_the_next_call() -> None:
    calls = SinkThread()

    def full(data: bytes) -> None:
        raise OSError(28, "No space left on device")

    def after() -> str:
        raise RuntimeError("the sink is broken")

    await calls.write(full, b"x")
    # The write's own error, not what the call on a broken sink raised.
    with pytest.raises(OSError, match="No space") as caught:
        await calls.call(after)
    assert isinstance(caught.value.__context__, RuntimeError)
    # Letting go of the sink: the error to tell is another's.
    await calls.write(full, b"y")
    assert await calls.call(lambda: "aborted", check=False) == "aborted"
    assert await calls.call(lambda: "clean") == "clean"
    calls.close()


async def test_a_write_failure_stops_the_next_write() -> None:
    calls = SinkThread(pending=1)

    def full(data: bytes) -> None:
        raise OSError(28, "No space left on device")

    await calls.write(full, b"x")
    with pytest.raises(OSError, match="No space"):
        # Waits for room behind the failed write, and finds it failed.
        await calls.write(full, b"y")
    calls.close()


async def test_a_cancelled_call_is_still_made_before_the_next() -> None:
    calls = SinkThread()
    release = threading.Event()
    done: list[str] = []

    def commit() -> None:
        release.wait()
        done.append("commit")

    async def cancelled() -> None:
        with anyio.CancelScope() as scope:
            tg.start_soon(_cancel_soon, scope)
            await calls.call(commit)
        assert scope.cancelled_caught or done == ["commit"]

    async def _cancel_soon(scope: anyio.CancelScope) -> None:
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
        release.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(cancelled)
    # Whatever became of the caller, the commit was made, and a later call
    # comes after it.
    await calls.call(lambda: done.append("close"))
    calls.close()
    assert done == ["commit", "close"]


def test_pending_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SinkThread(pending=0)


def test_a_write_stuck_for_good_does_not_keep_the_process_from_exiting() -> None:
    # A reader that stopped reading without closing: the interrupted
    # command must still exit (an executor's thread is joined at exit).
    import subprocess
    import sys

    script = (
        "import threading, anyio\n"
        "from asyncpager.sinks._thread import SinkThread\n"
        "async def main():\n"
        "    calls = SinkThread()\n"
        "    await calls.write(threading.Event().wait)\n"
        "anyio.run(main)\n"
        "print('left')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "left"
