"""The Dask distributed backend.

::

    from asyncpager.cluster import DaskBackend, export_on_cluster

    async with DaskBackend("tcp://scheduler:8786") as backend:      # or DaskBackend(workers=2)
        result = await export_on_cluster(streams, "out/", backend=backend)

A task is an ``async def`` that Dask runs on the worker's own event loop:
asyncpager's engine runs there, with its sink work in threads. A worker lost
in the middle of a task is Dask's to notice; the scheduler runs the task
again elsewhere, in a new staging folder, and the driver commits whichever
attempt comes back first (:mod:`asyncpager.cluster._layout`).

With ``shared_rate``, one actor holds a :class:`~asyncpager.Pacer` with the
whole rate, and every request of every task asks it first: one round trip
to the actor's worker per request, in exchange for a budget that holds
exactly across tasks that come and go. If that worker is lost, the tasks
carry on with their static share of the rate rather than fail.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import anyio

from asyncpager.cluster._backend import OnDone
from asyncpager.cluster._task import GroupSpec, Reporter, run_group
from asyncpager.errors import AsyncPagerError, ConfigurationError
from asyncpager.pacing import Pacer, PacerLike, RateLimit, share_limits

__all__ = ["DaskBackend", "PacerActor", "SharedPacer"]

_MISSING = (
    "a Dask cluster needs the dask extra: pip install 'asyncpager[dask]' "
    "(dask distributed is not installed)"
)


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigurationError(_MISSING) from None
    return distributed


class PacerActor:
    """Holds the one :class:`Pacer` of a shared rate, on one worker. Every
    method is ``async`` so that all of them run on that worker's event loop,
    one at a time, never in the actor's thread pool."""

    def __init__(self, limits: list[RateLimit]) -> None:
        self._pacer = Pacer(limits)

    async def acquire(self, service: str, region: str | None, operation: str | None) -> float:
        return await self._pacer.acquire(service, region, operation)

    async def on_success(self, service: str, region: str | None, operation: str | None) -> None:
        self._pacer.on_success(service, region, operation)

    async def on_throttle(self, service: str, region: str | None, operation: str | None) -> None:
        self._pacer.on_throttle(service, region, operation)

    async def charge(
        self, service: str, region: str | None, operation: str | None, units: float
    ) -> None:
        self._pacer.charge(service, region, operation, units)

    async def granted(self) -> int:
        return self._pacer.granted


class SharedPacer:
    """A task's handle on the :class:`PacerActor` (pickled into each task).

    Should the actor's worker be lost, it paces with ``fallback`` (the
    task's static share of the rate) from then on."""

    def __init__(self, actor: Any, fallback: list[RateLimit]) -> None:
        self._actor = actor
        self._fallback_limits = fallback
        self._fallback: Pacer | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"_actor": self._actor, "_fallback_limits": self._fallback_limits}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._actor = state["_actor"]
        self._fallback_limits = state["_fallback_limits"]
        self._fallback = None

    def _lost(self) -> Pacer:
        if self._fallback is None:
            self._fallback = Pacer(self._fallback_limits)
        return self._fallback

    async def acquire(
        self, service: str, region: str | None = None, operation: str | None = None
    ) -> float:
        if self._fallback is None:
            try:
                return float(await self._actor.acquire(service, region, operation))
            except (OSError, RuntimeError):
                pass  # the actor's worker is gone: pace locally
        return await self._lost().acquire(service, region, operation)

    def _tell(self, method: str, *args: Any) -> None:
        if self._fallback is not None:
            getattr(self._fallback, method)(*args)
            return
        # Fire and forget: feedback must not hold up the response path.
        with contextlib.suppress(OSError, RuntimeError):
            getattr(self._actor, method)(*args)

    def on_success(self, service: str, region: str | None, operation: str | None) -> None:
        self._tell("on_success", service, region, operation)

    def on_throttle(self, service: str, region: str | None, operation: str | None) -> None:
        self._tell("on_throttle", service, region, operation)

    def charge(
        self,
        service: str,
        region: str | None,
        operation: str | None,
        units: float,
        *,
        unit: str | None = None,
    ) -> None:
        self._tell("charge", service, region, operation, units)


class _EventReporter:
    """Sends a task's figures to the driver as Dask worker events."""

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def __call__(self, body: dict[str, Any]) -> None:
        distributed = _distributed()
        with contextlib.suppress(ValueError):  # not on a worker: nowhere to send
            distributed.get_worker().log_event(self.topic, body)


class DaskBackend:
    """Runs the groups as tasks on a Dask cluster.

    ``address`` is a running scheduler (``tcp://host:8786``); without it a
    ``LocalCluster`` of ``workers`` processes (one thread each: a task uses
    its core fully) is started and closed with the backend. ``client`` is
    an asynchronous ``distributed.Client`` of your own, not closed here.
    ``retries`` is how often a task that raised is run again (a worker lost
    mid-task is run again by the scheduler regardless); ``connect_timeout``
    is how long to try reaching the scheduler (default: Dask's setting
    ``distributed.comm.timeouts.connect``).
    """

    name = "dask"

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int | None = None,
        client: Any = None,
        retries: int = 1,
        cluster_options: dict[str, Any] | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        _distributed()
        if address is not None and client is not None:
            raise ConfigurationError("give a scheduler address or a client, not both")
        if workers is not None and workers < 1:
            raise ConfigurationError("a local Dask cluster needs at least one worker")
        self.address = address
        self.workers = workers
        self.retries = retries
        self.connect_timeout = connect_timeout
        self.cluster_options = dict(cluster_options or {})
        self.client: Any = client
        self.cluster: Any = None
        self._own_client = client is None
        self._slots = 0
        self._topic = f"asyncpager-{uuid.uuid4().hex[:12]}"

    async def __aenter__(self) -> DaskBackend:
        distributed = _distributed()
        if self.client is None:
            if self.address is None:
                options: dict[str, Any] = {
                    "n_workers": self.workers or len(os.sched_getaffinity(0)),
                    "threads_per_worker": 1,
                    "processes": True,
                    "dashboard_address": None,
                    "host": "127.0.0.1",
                    **self.cluster_options,
                }
                self.cluster = await distributed.LocalCluster(asynchronous=True, **options)
                target: Any = self.cluster
            else:
                target = self.address
            try:
                timeout = {} if self.connect_timeout is None else {"timeout": self.connect_timeout}
                self.client = await distributed.Client(target, asynchronous=True, **timeout)
            except OSError as exc:
                await self._close_cluster()
                raise AsyncPagerError(f"cannot reach the Dask scheduler {target}: {exc}") from None
        if not getattr(self.client, "asynchronous", False):
            raise ConfigurationError("DaskBackend needs an asynchronous distributed.Client")
        nthreads = await self.client.scheduler.ncores()
        self._slots = max(1, sum(nthreads.values()))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(Exception):
            self.client.unsubscribe_topic(self._topic)
        if self._own_client and self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()
            self.client = None
        await self._close_cluster()

    async def _close_cluster(self) -> None:
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                await self.cluster.close()
            self.cluster = None

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def groups_per_slot(self) -> int:
        """Shard groups per slot an export deals by default: one on the
        local cluster this backend started (its workers are this machine's
        processes, as the process backend's are, and a million S3 keys at
        50 ms on two of them took 5.4-5.9 s in two groups against 7.0-8.0 s
        in eight, Dask's start included); four on any other, where a lost
        worker should cost a small part of the work."""
        from asyncpager.cluster._driver import GROUPS_PER_SLOT

        return 1 if self.cluster is not None else GROUPS_PER_SLOT

    async def worker_pids(self) -> dict[str, int]:
        """The process id of each worker, by address (to watch or kill one)."""
        return dict(await self.client.run(os.getpid))

    async def shared_pacer(self, limits: Sequence[RateLimit]) -> PacerLike:
        future = self.client.submit(PacerActor, list(limits), actor=True, pure=False)
        actor = await future
        return SharedPacer(actor, share_limits(limits, 1.0 / self._slots))

    def reporter(self, on_stats: Callable[[dict[str, Any]], None]) -> Reporter:
        def handler(event: tuple[float, dict[str, Any]]) -> None:
            on_stats(event[1])

        self.client.subscribe_topic(self._topic, handler)
        return _EventReporter(self._topic)

    async def run(self, specs: Sequence[GroupSpec], on_done: OnDone) -> None:
        distributed = _distributed()
        by_key: dict[str, GroupSpec] = {}
        futures = []
        run_id = uuid.uuid4().hex[:8]
        for spec in specs:
            key = f"asyncpager-group-{spec.index:05d}-{run_id}"
            by_key[key] = spec
            futures.append(
                self.client.submit(run_group, spec, key=key, pure=False, retries=self.retries)
            )
        try:
            async for future in distributed.as_completed(futures):
                try:
                    manifest = await future
                except Exception as exc:
                    # A task that raised after its retries: the group stays
                    # uncommitted, a rerun runs it again.
                    spec = by_key[future.key]
                    manifest = {"group": spec.index, "attempt": None, "failed": [str(exc)]}
                await on_done(by_key[future.key], manifest)
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self.client.cancel(futures)
