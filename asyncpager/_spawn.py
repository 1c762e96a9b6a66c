"""Starting the worker processes of ``--workers N``, before anything else.

Kept apart from :mod:`asyncpager.parallel`, whose imports (botocore, aiohttp,
the sinks) take most of a second: the command starts its workers right after
reading its arguments, so that they import while it does.
"""

from __future__ import annotations

import subprocess
import sys

__all__ = ["start_workers", "stop_workers"]


def start_workers(count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` idle workers, each waiting for its first share of the plan
    on its standard input."""
    return [
        subprocess.Popen(
            [sys.executable, "-m", "asyncpager.parallel"],
            stdin=subprocess.PIPE,
            # Its requests for work (never output: that goes to its part).
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Ctrl-C goes to the coordinator only; it forwards it.
            start_new_session=True,
        )
        for _ in range(count)
    ]


def stop_workers(processes: list[subprocess.Popen[bytes]], timeout: float = 5) -> None:
    """Stop workers that were never given work: EOF on their input ends
    them quietly; one that does not end in ``timeout`` seconds is killed."""
    for process in processes:
        if process.poll() is None and process.stdin is not None and not process.stdin.closed:
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
