"""The engine's byte budget: what a request reserves before it is sent."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from asyncpager.engine import _ByteBudget

pytestmark = pytest.mark.anyio


async def test_waiters_reserve_what_is_expected_when_they_go() -> None:
    budget = _ByteBudget(100)
    expected = {"size": 80}
    granted: list[int] = []
    assert await budget.acquire(lambda: expected["size"]) == 80

    async def request() -> None:
        granted.append(await budget.acquire(lambda: expected["size"]))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(request)
        await anyio.wait_all_tasks_blocked()
        assert granted == []
        # The first page came back small: the waiters now reserve that.
        expected["size"] = 30
        budget.release(80)
    assert granted == [30, 30, 30]
    assert budget.used == 90


async def test_a_page_larger_than_the_budget_goes_alone() -> None:
    budget = _ByteBudget(100)
    assert await budget.acquire(lambda: 500) == 500
    done = anyio.Event()

    async def second() -> None:
        await budget.acquire(lambda: 10)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await anyio.wait_all_tasks_blocked()
        assert not done.is_set()
        budget.release(500)
    assert budget.used == 10


async def test_take_never_waits() -> None:
    budget = _ByteBudget(100)
    await budget.acquire(lambda: 90)
    budget.take(50)
    assert budget.used == 140
    budget.release(140)
    assert budget.used == 0


async def _request(budget: _ByteBudget, amount: int, scope: anyio.CancelScope) -> None:
    # As the engine's turn does: what acquire() returned is released when
    # the request ends, cancelled or not.
    with scope:
        got = await budget.acquire(lambda: amount)
        try:
            await anyio.sleep_forever()
        finally:
            budget.release(got)


async def test_a_cancelled_waiter_takes_nothing() -> None:
    budget = _ByteBudget(100)
    await budget.acquire(lambda: 100)
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()
        tg.start_soon(_request, budget, 50, scope)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
    assert budget.used == 100
    budget.release(100)
    assert budget.used == 0
    # Nobody is left waiting: the next request goes at once.
    assert await budget.acquire(lambda: 60) == 60


async def test_granted_and_cancelled_in_one_step_leaves_nothing_taken() -> None:
    # What acquire() granted but could not return (the cancellation came
    # first) it gives back itself.
    budget = _ByteBudget(100)
    await budget.acquire(lambda: 100)
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()
        tg.start_soon(_request, budget, 40, scope)
        await anyio.wait_all_tasks_blocked()
        budget.release(100)
        scope.cancel()
    assert budget.used == 0
