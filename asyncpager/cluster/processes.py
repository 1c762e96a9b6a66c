"""The process backend: shard groups in worker processes of this machine.

Every core of one machine, from a program, without Dask::

    from asyncpager.cluster import ProcessBackend, export_on_cluster

    async with ProcessBackend() as backend:  # one process per core
        result = await export_on_cluster(streams, "export.jsonl", backend=backend)

Each group runs :func:`~asyncpager.cluster.run_group` on the event loop of a
worker process; the driver commits it as with any backend, so a worker
killed mid-group costs a rerun of that group and never a duplicate. The
processes are not forks of the program (a fork of a process with threads,
as an asyncio program has, may copy a lock held by one of them): they are
forked from a fork server, a fresh process that has imported what they run
(:mod:`asyncpager.cluster._warm`), or, where there is none, spawned fresh.
Either way what travels to them must pickle: a ``records`` function is a
module-level function or an object such as
:class:`~asyncpager.cluster.PageRecords`. And, as for any program that
starts processes that way, a script's entry point must sit under
``if __name__ == "__main__":`` (the script is imported again).

Rates are split statically, each running task taking its share of every
limit; one shared bucket (``shared_rate``) needs a Dask cluster.

An export deals one group per process unless told otherwise (``tasks``):
a million S3 keys at 50 ms, two processes, took 3.1-3.9 s dealt in two
groups, 3.9-4.2 s in four and 4.3-5.6 s in eight (the default of other
backends) for a folder tree or flat random names, and 4.8-5.0, 4.8-5.2
and 5.6 s for keys under one hot prefix.
Each group is an engine run of its own, and a process ran its groups one
after another, each ramping its streams up and down again. The price: a
process lost mid-export costs a rerun of half the work, not an eighth.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import pickle
import queue
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import anyio

from asyncpager.cluster._backend import OnDone
from asyncpager.cluster._task import GroupSpec, Reporter, run_group
from asyncpager.errors import ConfigurationError
from asyncpager.pacing import PacerLike, RateLimit

__all__ = ["ProcessBackend"]

#: How long the driver's reader of the tasks' figures waits at a time
#: (seconds): how late it notices the export is over.
_REPORT_WAIT = 0.2
#: How often a group runs again after its process was lost.
LOST_AGAIN = 3


#: What the fork server imports before it forks any worker: the script (as
#: ``spawn`` imports it in every worker) and what a group runs.
PRELOAD = ("__main__", "asyncpager.cluster._warm")


def _context() -> Any:
    """The fork server where the platform has one, else fresh processes."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # One fork server per program; a program that set its own list keeps
    # it, ours added (the list is read when the server starts).
    wanted = list(getattr(_fork_server(), "_preload_modules", ["__main__"]))
    context.set_forkserver_preload(wanted + [m for m in PRELOAD if m not in wanted])
    return context


def _fork_server() -> Any:
    """multiprocessing's one ForkServer (private, as what is read of it
    below: each read has a default, so a Python that renames any of it
    loses only the preloaded modules or the early stop, not the workers)."""
    from multiprocessing import forkserver

    return getattr(forkserver, "_forkserver", None)


def _server_pid() -> int | None:
    pid: int | None = getattr(_fork_server(), "_forkserver_pid", None)
    return pid


def _stop_server() -> None:
    stop = getattr(_fork_server(), "_stop", None)
    if stop is not None:
        with contextlib.suppress(Exception):
            stop()


def _run_in_process(spec: GroupSpec) -> dict[str, Any]:
    """One group, on this worker process's own event loop."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return anyio.run(run_group, spec)
    return anyio.run(run_group, spec, backend_options={"use_uvloop": True})


class _QueueReporter:
    """Figures from a task in a worker process, put on a queue that the
    driver reads (a manager's queue: its proxy pickles)."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    def __call__(self, body: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            # A driver gone (the run is being stopped) is no task's failure.
            self.channel.put_nowait(body)


class ProcessBackend:
    """Runs the groups in ``processes`` worker processes of this machine
    (default: one per core this process may use), without Dask.

    ``retries`` is how often a group whose task raised is run again before
    it is left uncommitted (a rerun with the same checkpoint runs it then);
    a group whose process was lost runs again up to ``LOST_AGAIN`` times.
    """

    name = "processes"
    #: One shard group per process by default (see the module docstring).
    groups_per_slot = 1

    def __init__(self, processes: int | None = None, *, retries: int = 1) -> None:
        if processes is not None and processes < 1:
            raise ConfigurationError("a process backend needs at least one process")
        if retries < 0:
            raise ConfigurationError("retries must not be negative")
        self.processes = processes or len(os.sched_getaffinity(0))
        self.retries = retries
        self._context = _context()
        self._pool: ProcessPoolExecutor | None = None
        self._manager: Any = None
        self._channel: Any = None
        self._on_stats: Callable[[dict[str, Any]], None] | None = None
        self._stops_server = False

    async def __aenter__(self) -> ProcessBackend:
        # A fork server that this backend starts is stopped as it leaves,
        # with the workers: one the program ran already is the program's.
        self._stops_server = self._context.get_start_method() == "forkserver" and (
            _server_pid() is None
        )
        self._pool = self._new_pool()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pool, self._pool = self._pool, None
        with anyio.CancelScope(shield=True):
            if pool is not None:
                await anyio.to_thread.run_sync(_stop, pool)
            manager, self._manager, self._channel = self._manager, None, None
            if manager is not None:
                await anyio.to_thread.run_sync(manager.shutdown)
            if self._stops_server:
                self._stops_server = False
                await anyio.to_thread.run_sync(_stop_server)

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.processes, mp_context=self._context)

    @property
    def slots(self) -> int:
        return self.processes

    async def shared_pacer(self, limits: Sequence[RateLimit]) -> PacerLike:
        raise ConfigurationError(
            "one shared rate needs a Dask cluster: the process backend splits every "
            "rate among its tasks"
        )

    def reporter(self, on_stats: Callable[[dict[str, Any]], None]) -> Reporter:
        if self._manager is None:
            self._manager = self._context.Manager()
            self._channel = self._manager.Queue()
        self._on_stats = on_stats
        return _QueueReporter(self._channel)

    async def run(self, specs: Sequence[GroupSpec], on_done: OnDone) -> None:
        if self._pool is None:
            raise ConfigurationError("enter the ProcessBackend (async with) before running")
        if specs:
            try:
                pickle.dumps(specs[0].records)
            except Exception as exc:
                raise ConfigurationError(
                    f"the records function must pickle to run in worker processes "
                    f"(a module-level function or object): {type(exc).__name__}: {exc}"
                ) from None
        async with anyio.create_task_group() as tg:
            if self._channel is not None:
                tg.start_soon(self._read_figures)
            async with anyio.create_task_group() as groups:
                for spec in specs:
                    groups.start_soon(self._one, spec, on_done)
            tg.cancel_scope.cancel()

    async def _one(self, spec: GroupSpec, on_done: OnDone) -> None:
        raised = lost = 0
        while True:
            pool = self._pool
            assert pool is not None
            try:
                manifest = await self._await(pool.submit(_run_in_process, spec))
            except BrokenProcessPool as exc:
                # A worker process died (killed, out of memory), and every
                # task in the pool with it: one new pool for all of them,
                # and each runs again, as Dask runs a lost worker's tasks
                # (within LOST_AGAIN, for a group that kills its process).
                if self._pool is pool:
                    self._pool = self._new_pool()
                    await anyio.to_thread.run_sync(_stop, pool)
                lost += 1
                if lost <= LOST_AGAIN:
                    continue
                failure: Exception = exc
            except Exception as exc:
                raised += 1
                if raised <= self.retries:
                    continue
                failure = exc
            else:
                break
            # Left uncommitted: a rerun with the checkpoint runs it.
            manifest = {"group": spec.index, "attempt": None, "failed": [str(failure)]}
            break
        await on_done(spec, manifest)

    @staticmethod
    async def _await(future: Future[dict[str, Any]]) -> dict[str, Any]:
        try:
            return await asyncio.wrap_future(future)
        except BaseException:
            # Cancelled, or the pool broke: a task not started never starts.
            future.cancel()
            raise

    async def _read_figures(self) -> None:
        channel, on_stats = self._channel, self._on_stats
        assert channel is not None
        assert on_stats is not None

        def wait() -> dict[str, Any] | None:
            try:
                body: dict[str, Any] = channel.get(timeout=_REPORT_WAIT)
            except queue.Empty:
                return None
            return body

        while True:
            body = await anyio.to_thread.run_sync(wait, abandon_on_cancel=True)
            if body is not None:
                on_stats(body)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop the pool's processes now: a task still running is abandoned
    (its attempt's staging folder is never committed)."""
    # The executor has no way to stop a running task: its processes are
    # terminated, then it is shut down without waiting for them.
    processes = list(getattr(pool, "_processes", {}).values())
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)
