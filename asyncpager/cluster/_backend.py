"""The backend interface, and the local backend (this process)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Protocol

import anyio

from asyncpager._groups import first_error
from asyncpager.cluster._task import GroupSpec, Reporter, run_group
from asyncpager.errors import ConfigurationError
from asyncpager.pacing import Pacer, PacerLike, RateLimit

__all__ = ["Backend", "LocalBackend", "OnDone"]

OnDone = Callable[[GroupSpec, dict[str, Any]], Awaitable[None]]


class Backend(Protocol):
    """Where the shard groups of a cluster export run.

    Entered once per export. ``slots`` is how many tasks run at once (it
    sets each task's static share of every rate). A backend may say how
    many shard groups per slot an export deals by default with a
    ``groups_per_slot`` attribute (else four; see
    :func:`~asyncpager.cluster._driver.groups_per_slot`). ``run`` runs every group
    and awaits ``on_done(spec, manifest)`` for each result as it arrives, in
    the driver; a task lost with its worker is the backend's to run again.
    """

    name: str

    async def __aenter__(self) -> Backend: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    @property
    def slots(self) -> int: ...

    async def shared_pacer(self, limits: Sequence[RateLimit]) -> PacerLike:
        """One pacer every task goes through (``shared_rate=True``)."""
        ...

    def reporter(self, on_stats: Callable[[dict[str, Any]], None]) -> Reporter:
        """A picklable callable that brings a task's figures to ``on_stats``."""
        ...

    async def run(self, specs: Sequence[GroupSpec], on_done: OnDone) -> None: ...


class _DirectReporter:
    """Figures from tasks in this process: a plain call."""

    def __init__(self, on_stats: Callable[[dict[str, Any]], None]) -> None:
        self._on_stats = on_stats

    def __call__(self, body: dict[str, Any]) -> None:
        self._on_stats(body)


class LocalBackend:
    """Runs the groups in this process, ``slots`` at a time, on the current
    event loop: today's in-process export, on the cluster's commit model
    (and the reference the other backends are tested against)."""

    name = "local"

    def __init__(self, slots: int = 1) -> None:
        if slots < 1:
            raise ConfigurationError("a local backend needs at least one slot")
        self._slots = slots

    async def __aenter__(self) -> LocalBackend:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    @property
    def slots(self) -> int:
        return self._slots

    async def shared_pacer(self, limits: Sequence[RateLimit]) -> PacerLike:
        # One process: one Pacer object shared by every task is exact.
        return Pacer(limits)

    def reporter(self, on_stats: Callable[[dict[str, Any]], None]) -> Reporter:
        return _DirectReporter(on_stats)

    async def run(self, specs: Sequence[GroupSpec], on_done: OnDone) -> None:
        limiter = anyio.CapacityLimiter(self._slots)

        async def one(spec: GroupSpec) -> None:
            async with limiter:
                manifest = await run_group(spec)
            await on_done(spec, manifest)

        try:
            async with anyio.create_task_group() as tg:
                for spec in specs:
                    tg.start_soon(one, spec)
        except BaseExceptionGroup as group:
            raise first_error(group) from None
