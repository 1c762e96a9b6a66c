"""Starting the worker processes of ``--workers N``, before anything else.

Each worker imports botocore, aiobotocore, aiohttp and the sinks: about a
second of CPU, three times over for two workers and their coordinator, which
on a two-core machine was a fifth of a 400,000-item export's CPU. On Linux
the coordinator imports them once and forks its workers right after
(:func:`start_workers`), before any thread or event loop exists; each child
runs :func:`asyncpager.parallel.worker_main` on pipes, as a spawned worker
does. Elsewhere (or with ``ASYNCPAGER_WORKERS_SPAWN=1``), workers are fresh
interpreters (``python -m asyncpager.parallel``), started right after the
arguments are read so that they import while the coordinator does.

Both kinds look the same to the coordinator: ``poll``, ``wait``,
``send_signal``, ``kill`` and the three pipes of :class:`subprocess.Popen`.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from typing import IO, Protocol

__all__ = ["Worker", "start_workers", "stop_workers"]


class Worker(Protocol):
    """What the coordinator uses of a worker process."""

    @property
    def pid(self) -> int: ...
    @property
    def stdin(self) -> IO[bytes] | None: ...
    @property
    def stdout(self) -> IO[bytes] | None: ...
    @property
    def stderr(self) -> IO[bytes] | None: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def send_signal(self, sig: int) -> None: ...
    def kill(self) -> None: ...


def start_workers(count: int, services: Sequence[str] = ()) -> list[Worker]:
    """``count`` idle workers, each waiting for its first share of the plan
    on its standard input. Forked workers share botocore's data for
    ``services``, decoded once before the fork."""
    if _can_fork():
        return _fork_workers(count, services)
    return [_spawn_worker() for _ in range(count)]


def _can_fork() -> bool:
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "fork")
        and os.environ.get("ASYNCPAGER_WORKERS_SPAWN") != "1"
        # A fork copies one thread: with others running, a lock one of them
        # holds would stay held in the child.
        and threading.active_count() == 1
    )


def _spawn_worker() -> Worker:
    return subprocess.Popen(
        [sys.executable, "-m", "asyncpager.parallel"],
        stdin=subprocess.PIPE,
        # Its requests for work (never output: that goes to its part).
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Ctrl-C goes to the coordinator only; it forwards it.
        start_new_session=True,
    )


def _fork_workers(count: int, services: Sequence[str]) -> list[Worker]:
    # What every worker runs, imported once, here.
    from asyncpager import parallel

    parallel.warm_up(services)
    sys.stdout.flush()
    sys.stderr.flush()
    # The imported modules' objects stay shared with the children: the
    # collector would otherwise write to every one of them (copying their
    # pages) the first time it walks them in a child.
    gc.freeze()
    workers: list[Worker] = []
    parent_ends: list[int] = []
    for _ in range(count):
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; its behaviour is tested end to end
            try:
                # Other workers' pipes: holding their ends would keep the
                # coordinator from ever seeing their EOF.
                for fd in (*parent_ends, stdin_w, stdout_r, stderr_r):
                    os.close(fd)
                os.dup2(stdin_r, 0)
                os.dup2(stdout_w, 1)
                os.dup2(stderr_w, 2)
                for fd in (stdin_r, stdout_w, stderr_w):
                    os.close(fd)
                sys.stdin = os.fdopen(0, "r", closefd=False)
                sys.stdout = os.fdopen(1, "w", closefd=False)
                sys.stderr = os.fdopen(2, "w", closefd=False)
                os.setsid()  # Ctrl-C goes to the coordinator only; it forwards it
                signal.signal(signal.SIGINT, signal.default_int_handler)
                # The modules stay frozen here: nothing walks (and copies)
                # their pages, and they live as long as the process anyway.
                code = parallel.worker_main()
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException:
                with contextlib.suppress(BaseException):
                    traceback.print_exc()
                    sys.stderr.flush()
                code = 1
            # Never back into the coordinator's code, its finally blocks or
            # its atexit handlers.
            os._exit(code)
        for fd in (stdin_r, stdout_w, stderr_w):
            os.close(fd)
        parent_ends += [stdin_w, stdout_r, stderr_r]
        workers.append(_Forked(pid, stdin_w, stdout_r, stderr_r))
    gc.unfreeze()
    return workers


class _Forked:
    """A forked worker, as :class:`subprocess.Popen` shows a spawned one."""

    def __init__(self, pid: int, stdin: int, stdout: int, stderr: int) -> None:
        self.pid = pid
        self.stdin: IO[bytes] | None = os.fdopen(stdin, "wb")
        self.stdout: IO[bytes] | None = os.fdopen(stdout, "rb")
        self.stderr: IO[bytes] | None = os.fdopen(stderr, "rb")
        self.returncode: int | None = None
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        with self._lock:
            if self.returncode is None:
                try:
                    pid, status = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:
                    return self.returncode
                if pid == self.pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0)
            time.sleep(0.01)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __repr__(self) -> str:
        return f"<forked worker {self.pid} returncode={self.returncode}>"


def stop_workers(processes: list[Worker], timeout: float = 5) -> None:
    """Stop workers that were never given work: EOF on their input ends
    them quietly; one that does not end in ``timeout`` seconds is killed."""
    for process in processes:
        if process.poll() is None and process.stdin is not None and not process.stdin.closed:
            with contextlib.suppress(OSError):
                process.stdin.close()
    for process in processes:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()
