"""How ``--workers`` hands out work: the first deal, and shares of what is left
saved before a worker hears of them."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.abc
import pytest

from asyncpager import parallel
from asyncpager._clock import FakeClock
from asyncpager.checkpoint import Checkpoint, CheckpointState
from asyncpager.engine import Stats
from asyncpager.parallel import ASK_AGAIN, WATCH, _Deal, _hand_out, _wait_to_ask_again, first_deal
from asyncpager.streams import Stream

pytestmark = pytest.mark.anyio


def shards(n: int) -> list[Stream]:
    return [Stream("s3", "ListObjectsV2", {"Bucket": "b"}, shape={"lo": str(i)}) for i in range(n)]


def names(streams: list[Stream]) -> list[str]:
    return [s.shape["lo"] for s in streams]


def test_first_deal_is_half_the_plan_round_robin() -> None:
    groups, pool = first_deal(shards(10), 2)
    assert [names(g) for g in groups] == [["0", "2", "4"], ["1", "3"]]
    assert names(pool) == ["5", "6", "7", "8", "9"]


def test_first_deal_gives_every_worker_a_stream_where_it_can() -> None:
    groups, pool = first_deal(shards(3), 3)
    assert [names(g) for g in groups] == [["0"], ["1"], ["2"]]
    assert pool == []
    groups, pool = first_deal(shards(1), 2)
    assert [names(g) for g in groups] == [["0"], []]


async def test_shares_shrink_and_are_saved_before_they_are_given(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path / "main.ckpt")
    groups, pool = first_deal(shards(20), 2)
    deal = _Deal(groups, pool, checkpoint, "fp")
    deal.save()
    sizes = []
    while True:
        given = await deal.give(1)
        if not given:
            break
        sizes.append(len(given))
        state = checkpoint.load("fp")
        assert state is not None
        saved_groups = state.extra["groups"]
        saved_pool = [Stream.from_json(s) for s in state.extra["pool"]]
        # What was given is in the saved group, and no longer in the pool.
        saved_given = [Stream.from_json(s) for s in saved_groups[1][-len(given) :]]
        assert [s.to_json() for s in saved_given] == [s.to_json() for s in given]
        assert not set(names(saved_pool)) & set(names(given))
    assert sizes == [2, 2, 1, 1, 1, 1, 1, 1]
    assert sum(sizes) == 10
    assert await deal.give(0) == []
    dealt = [s for g in deal.groups for s in g]
    assert sorted(names(dealt), key=int) == [str(i) for i in range(20)]


class Pipe:
    """What a worker's standard input is to the coordinator, read back."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.lines.append(data)
        return len(data)

    def flush(self) -> None:
        pass


async def test_with_nothing_left_a_part_of_a_busier_worker_is_taken(tmp_path: Path) -> None:
    checkpoint = Checkpoint(tmp_path / "main.ckpt")
    deal = _Deal([shards(1), shards(3)], [], checkpoint, "fp", load=lambda index: 3)
    pipes = [Pipe(), Pipe()]
    deal.inputs = {0: pipes[0], 1: pipes[1]}  # type: ignore[dict-item]
    part = Stream("s3", "ListObjectsV2", {"Bucket": "b"}, shape={"lo": "m"})
    async with anyio.create_task_group() as tg:

        async def ask() -> None:
            got.extend(await deal.give(0, left=0))

        got: list[Stream] = []
        tg.start_soon(ask)
        with anyio.fail_after(5):
            while not pipes[1].lines:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert pipes[1].lines == [b'{"give": true}\n']
        assert got == []  # nothing until worker 1 has saved and sent its part
        await deal.received(1, [part])
    assert [s.to_json() for s in got] == [part.to_json()]
    # Saved as worker 0's before it hears of it.
    state = checkpoint.load("fp")
    assert state is not None
    assert state.extra["groups"][0][-1] == part.to_json()
    assert pipes[0].lines == []


async def test_workers_running_as_low_or_gone_are_not_asked_to_give(tmp_path: Path) -> None:
    # Worker 1 has two streams left, as its figures say.
    deal = _Deal([shards(2), shards(2)], [], None, "fp", load=lambda index: 2)
    pipes = [Pipe(), Pipe()]
    deal.inputs = {0: pipes[0], 1: pipes[1]}  # type: ignore[dict-item]
    assert await deal.give(0, left=2) == []
    assert pipes[1].lines == []
    deal.gone(1)
    assert await deal.give(0, left=0) == []
    assert pipes[1].lines == []


async def test_a_worker_that_exits_instead_of_giving_gives_nothing(tmp_path: Path) -> None:
    deal = _Deal([shards(1), shards(3)], [], None, "fp", load=lambda index: 3)
    deal.inputs = {0: Pipe(), 1: Pipe()}  # type: ignore[dict-item]
    async with anyio.create_task_group() as tg:
        got: list[list[Stream]] = []

        async def ask() -> None:
            got.append(await deal.give(0, left=0))

        tg.start_soon(ask)
        await anyio.wait_all_tasks_blocked()
        deal.gone(1)
    assert got == [[]]


async def test_parts_given_away_that_the_deal_never_saved_are_handed_out_again(
    tmp_path: Path,
) -> None:
    # A worker saved its stream narrowed and the part given away; the
    # coordinator was killed before it saved the part as anyone's.
    groups, pool = first_deal(shards(4), 2)
    deal = _Deal(groups, list(pool), None, "fp")
    lost = Stream("s3", "ListObjectsV2", {"Bucket": "b"}, shape={"lo": "0m", "hi": "1"})
    saved = groups[1][0]
    part = tmp_path / "part-0000.ckpt"
    given = {"given": [lost.to_json(), saved.to_json()]}
    Checkpoint(part).save(CheckpointState("worker-fp", [], extra=given))
    deal.recover_given([part, tmp_path / "part-0001.ckpt"])  # the second was never written
    assert [s.to_json() for s in deal.pool] == [s.to_json() for s in pool] + [lost.to_json()]
    deal.recover_given([part])  # once only
    assert len(deal.pool) == len(pool) + 1


def _reply(pipe: Pipe) -> object:
    """The last answer written to a worker."""
    return json.loads(pipe.lines[-1])


def _two_workers(load: int) -> tuple[_Deal, list[Pipe]]:
    """A deal between worker 0 (one shard) and worker 1 (three), each with
    ``load`` streams left as its figures say, and their inputs."""
    deal = _Deal([shards(1), shards(3)], [], None, "fp", load=lambda index: load)
    pipes = [Pipe(), Pipe()]
    deal.inputs = {0: pipes[0], 1: pipes[1]}  # type: ignore[dict-item]
    return deal, pipes


async def test_a_worker_out_of_work_waits_for_part_of_a_busy_ones() -> None:
    # Worker 1 cannot split just now (its streams split on their last page),
    # then can: worker 0, with nothing left, is not let go in between.
    deal, pipes = _two_workers(3)
    part = Stream("s3", "ListObjectsV2", {"Bucket": "b"}, shape={"lo": "m"})
    async with anyio.create_task_group() as tg:
        tg.start_soon(_hand_out, deal, 0, pipes[0], anyio.Event(), 0)
        with anyio.fail_after(5):
            answered = 0
            while answered < 2:
                if len(pipes[1].lines) > answered:
                    answered += 1
                    await deal.received(1, [] if answered == 1 else [part])
                await anyio.sleep(0.01)
    assert _reply(pipes[0]) == {"streams": [part.to_json()]}
    assert len(pipes[0].lines) == 1


async def test_workers_out_of_work_are_let_go_together_or_when_the_busy_one_goes() -> None:
    # Both out of work: neither waits for the other.
    deal, pipes = _two_workers(0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_hand_out, deal, 0, pipes[0], anyio.Event(), 0)
        tg.start_soon(_hand_out, deal, 1, pipes[1], anyio.Event(), 0)
    assert [_reply(p) for p in pipes] == [{"last": True}, {"last": True}]
    # One out of work while the other lists and gives nothing: let go once
    # the other exits.
    deal, pipes = _two_workers(3)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_hand_out, deal, 0, pipes[0], anyio.Event(), 0)
        with anyio.fail_after(5):
            while len(pipes[1].lines) < 2:
                if pipes[1].lines and 1 in deal._asked:
                    await deal.received(1, [])
                await anyio.sleep(0.01)
        assert pipes[0].lines == []  # still waiting: worker 1 still runs
        deal.gone(1)
    assert _reply(pipes[0]) == {"last": True}


async def test_a_waiting_worker_is_let_go_when_the_run_is_interrupted() -> None:
    deal, pipes = _two_workers(3)
    interrupted = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_hand_out, deal, 0, pipes[0], interrupted, 0)
        with anyio.fail_after(5):
            while not pipes[1].lines:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        await deal.received(1, [])
        interrupted.set()
    assert _reply(pipes[0]) == {"last": True}
    assert deal.idle == set()


@contextlib.asynccontextmanager
async def _worker_0_waiting() -> AsyncIterator[tuple[_Deal, list[Pipe], anyio.abc.TaskGroup]]:
    """Worker 0, out of work, asks; worker 1, asked to give, gives nothing:
    worker 0 then waits for part of its work, in the task group yielded,
    which must end within 5 s."""
    deal, pipes = _two_workers(3)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_hand_out, deal, 0, pipes[0], anyio.Event(), 0)
            while not pipes[1].lines:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            await deal.received(1, [])
            await anyio.wait_all_tasks_blocked()
            assert pipes[0].lines == []  # still waiting: worker 1 still lists
            yield deal, pipes, tg


@pytest.fixture
def no_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """A waiting worker asks again only after an hour: only what wakes it
    lets it go within a test's deadline."""
    monkeypatch.setattr(parallel, "ASK_POLL", 3600.0)


@pytest.mark.usefixtures("no_poll")
async def test_a_waiting_worker_is_let_go_as_soon_as_the_other_is_out_of_work() -> None:
    # Worker 1 lists and gives nothing; worker 0, out of work, waits. Once
    # worker 1 runs out too, both go at once, not on the next poll.
    async with _worker_0_waiting() as (deal, pipes, tg):
        deal.load = lambda index: 0
        tg.start_soon(_hand_out, deal, 1, pipes[1], anyio.Event(), 0)
    assert [_reply(p) for p in pipes] == [{"last": True}, {"last": True}]
    assert deal.running == set()


class WorkerFetcher:
    """What _wait_to_ask_again reads of a worker's fetcher."""

    def __init__(self, streams: int) -> None:
        self.clock = FakeClock()
        self.stats = Stats(started=0.0)
        self.stats.streams_total = streams


async def test_a_worker_told_to_wait_asks_again_at_once_when_its_streams_run_out() -> None:
    worker = WorkerFetcher(streams=2)
    worker.stats.streams_done = 1

    async def last_stream_ends() -> None:
        await worker.clock.sleep(0.05)
        worker.stats.streams_done = 2

    async with anyio.create_task_group() as tg:
        tg.start_soon(last_stream_ends)
        await _wait_to_ask_again(worker)
    assert 0.05 <= worker.clock.now() <= 0.05 + WATCH
    # With streams left, it waits the whole ASK_AGAIN.
    busy = WorkerFetcher(streams=3)
    await _wait_to_ask_again(busy)
    assert busy.clock.now() == pytest.approx(ASK_AGAIN)


@pytest.mark.usefixtures("no_poll")
async def test_a_waiting_worker_cancelled_leaves_nothing_behind() -> None:
    # Its answer cancelled (the run is being torn down), a waiting worker is
    # no longer counted idle, and what waits on the deal's changes hears of it.
    async with _worker_0_waiting() as (deal, pipes, tg):
        changed = deal.changed
        assert deal.idle == {0}
        tg.cancel_scope.cancel()
    assert deal.idle == set()
    assert changed.is_set()
    assert pipes[0].lines == []  # cancelled before any answer


def _config(scratch: bool, *extra: str) -> dict[str, object]:
    return {
        "argv": ["s3", "s3://b", "-o", "out.jsonl", "--workers", "2", *extra],
        "output": "out.jsonl.workers/part-0000.jsonl",
        "checkpoint": "out.jsonl.workers/part-0000.ckpt",
        "stats": "out.jsonl.workers/part-0000.stats.json",
        "scratch": scratch,
    }


def test_a_scratch_part_is_committed_as_often_as_it_is_gathered() -> None:
    gathered_every = parallel.GATHER_TICKS * parallel.TICK
    scratch = parallel.worker_args(_config(True, "--commit-interval", "60"))
    assert scratch.scratch_part
    assert scratch.commit_interval == gathered_every
    assert parallel.worker_args(_config(True, "--commit-interval", "0.1")).commit_interval == 0.1
    # A part a checkpoint resumes commits as the command line says: each
    # commit waits for the disk.
    kept = parallel.worker_args(_config(False, "--commit-interval", "60"))
    assert not kept.scratch_part
    assert kept.commit_interval == 60
    assert (kept.output, kept.workers, kept.progress) == (
        "out.jsonl.workers/part-0000.jsonl",
        1,
        False,
    )


class AskingFetcher:
    """What _ask_below reads of a worker's fetcher."""

    def __init__(self, concurrency: int, enough: int | None) -> None:
        self.concurrency = concurrency
        self.enough = enough

    def _streams_enough(self) -> int | None:
        return self.enough


def test_a_worker_whose_loop_is_the_bound_asks_only_when_nearly_out() -> None:
    # Latency the bound (or nothing measured yet): ASK_BELOW, or fewer
    # when the worker runs fewer streams at once.
    assert parallel._ask_below(AskingFetcher(64, None)) == parallel.ASK_BELOW
    assert parallel._ask_below(AskingFetcher(4, None)) == 4
    # The loop the bound: only the streams that keep it busy, at least two,
    # so that what it holds when nothing is left to hand out is little.
    assert parallel._ask_below(AskingFetcher(64, 3)) == 3
    assert parallel._ask_below(AskingFetcher(64, 1)) == 2
    assert parallel._ask_below(AskingFetcher(64, 40)) == parallel.ASK_BELOW
