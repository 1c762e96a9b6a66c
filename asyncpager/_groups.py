"""Task-group helpers: one exception out of a group, and work that stops
when an interrupt event is set."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

__all__ = ["first_error", "until_interrupted"]

T = TypeVar("T")


def first_error(group: BaseExceptionGroup[Any]) -> BaseException:
    """The one exception a caller should see out of a task group's group."""
    cancelled = anyio.get_cancelled_exc_class()
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for exc in leaves:
        if not isinstance(exc, cancelled):
            return exc
    return leaves[0] if leaves else group


async def until_interrupted(interrupted: anyio.Event, work: Callable[[], Awaitable[T]]) -> T | None:
    """Await ``work()``, cancelled as soon as ``interrupted`` is set (then
    ``None``). The work's own shielded steps (a commit) still finish."""
    result: T | None = None
    with anyio.CancelScope() as scope:

        async def stop_on_interrupt() -> None:
            await interrupted.wait()
            scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_on_interrupt)
            try:
                result = await work()
            finally:
                tg.cancel_scope.cancel()
    return result
