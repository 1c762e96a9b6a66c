"""``--workers N``: one export on every core.

One Python process tops out at what one core can parse (about 15 S3 pages
per second with botocore's parser), however many requests are in flight. So
the coordinator plans once, deals the streams round-robin to ``N`` worker
processes, and each worker runs the ordinary crash-safe export of its share
(its own event loop, its own engine, ``1/N`` of every rate limit) into a part
file with a checkpoint of its own. Shards that turn out large still split,
inside their worker. When every worker is done, the coordinator joins the
parts into the output (JSON Lines parts are concatenated byte for byte, gzip
members and zstd frames included; Parquet parts are merged) with one atomic
rename, and marks the main checkpoint complete.

The workers are started first, so that their start-up (imports, most of a
second of CPU each) runs while the coordinator plans; each gets its share of
the plan as the first line on its standard input.

Crash safety is each worker's: kill anything at any moment, run the same
command again, and every worker resumes its own part from its own checkpoint
(the deal of streams to workers is saved in the main checkpoint before any
work starts, and a different ``--workers`` is refused). Workers die with the
coordinator (``PR_SET_PDEATHSIG`` on Linux, and they also stop when their
standard input closes), so a killed run leaves no orphan writing to a part.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from asyncpager.checkpoint import Checkpoint, CheckpointState, fingerprint
from asyncpager.errors import ConfigurationError
from asyncpager.sinks.join import JOINABLE_FORMATS, join_parts
from asyncpager.streams import Stream

__all__ = ["run_parallel"]


def _output_format(args: argparse.Namespace) -> str:
    from asyncpager.sinks import detect_format

    fmt = args.format or (detect_format(args.output)[0] if args.output else None) or "jsonl"
    return str(fmt)


async def run_parallel(args: argparse.Namespace, argv: list[str], interrupted: anyio.Event) -> int:
    """The coordinator of ``--workers N`` (N > 1)."""
    workers = int(args.workers)
    processes = _start_workers(workers)
    try:
        return await _coordinate(args, argv, interrupted, processes)
    finally:
        for p in processes:
            if p.poll() is None:
                # Never given work (a bad argument, already complete): EOF
                # on its input ends it quietly; anything else is killed.
                if p.stdin is not None and not p.stdin.closed:
                    p.stdin.close()
                try:
                    await anyio.to_thread.run_sync(p.wait, 5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            if p.stderr is not None and not p.stderr.closed:
                p.stderr.close()


def _start_workers(count: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [sys.executable, "-m", "asyncpager.parallel"],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Ctrl-C goes to the coordinator only; it forwards it.
            start_new_session=True,
        )
        for _ in range(count)
    ]


async def _coordinate(
    args: argparse.Namespace,
    argv: list[str],
    interrupted: anyio.Event,
    processes: list[subprocess.Popen[bytes]],
) -> int:
    from asyncpager.cli import (
        EXIT_FAILED,
        EXIT_INTERRUPTED,
        EXIT_OK,
        _plan,
        _plan_fingerprint,
        check_export_args,
    )
    from asyncpager.progress import Progress, describe_many

    workers = len(processes)
    # The same checks as one process makes, once, before any worker works.
    check_export_args(args)
    fmt = _output_format(args)
    if fmt not in JOINABLE_FORMATS:
        raise ConfigurationError(f"--workers needs jsonl or parquet output, not {fmt}")
    if fmt == "parquet" and not args.output:
        raise ConfigurationError("parquet output needs -o/--output")
    if args.max_items is not None:
        raise ConfigurationError("--max-items counts across all items: use --workers 1")
    main_fp = fingerprint({**_plan_fingerprint(args), "workers": workers})
    checkpoint = Checkpoint(args.checkpoint) if args.checkpoint else None
    if checkpoint is not None:
        checkpoint.check_writable()
        try:
            state = checkpoint.load(main_fp)
        except ConfigurationError as exc:
            if "another command" in str(exc):
                raise ConfigurationError(
                    f"checkpoint {args.checkpoint} was written for another command, plan or "
                    "number of --workers; use another --checkpoint path or delete it"
                ) from None
            raise
    else:
        state = None
    if state is not None and state.complete:
        if args.progress:
            print(f"asyncpager: already complete ({state.items_written} items)", file=sys.stderr)
        return EXIT_OK
    if args.output:
        parts_dir = Path(f"{args.output}.workers")
    else:
        parts_dir = Path(tempfile.mkdtemp(prefix="asyncpager-workers-"))
    if state is not None:
        groups = [[Stream.from_json(s) for s in g] for g in state.extra["groups"]]
    else:
        streams, _labels, _limits, _total = await _plan(args)
        groups = [streams[i::workers] for i in range(workers)]
        if checkpoint is not None:
            # The deal is saved before any work: a resumed run gives every
            # worker the same streams, so its part checkpoint still applies.
            checkpoint.save(
                CheckpointState(
                    fingerprint=main_fp,
                    streams=[],
                    extra={
                        "workers": workers,
                        "groups": [[s.to_json() for s in g] for g in groups],
                    },
                )
            )
    parts_dir.mkdir(parents=True, exist_ok=True)
    suffix = "".join(Path(args.output).suffixes) if args.output else ".jsonl"
    stats_files: list[Path] = []
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    progress = Progress(enabled=show)
    code = EXIT_OK
    with progress:
        try:
            for index, group in enumerate(groups):
                config: dict[str, Any] = {
                    "argv": argv,
                    "index": index,
                    "workers": workers,
                    "output": str(parts_dir / f"part-{index:04d}{suffix}"),
                    "checkpoint": str(parts_dir / f"part-{index:04d}.ckpt"),
                    "stats": str(parts_dir / f"part-{index:04d}.stats.json"),
                    "streams": [s.to_json() for s in group],
                }
                stats_files.append(Path(config["stats"]))
                # Its share, as one line; the input then stays open until
                # the coordinator exits (the worker stops on EOF).
                stdin = processes[index].stdin
                assert stdin is not None
                try:
                    stdin.write(json.dumps(config).encode() + b"\n")
                    stdin.flush()
                except BrokenPipeError:
                    pass  # it died starting: its exit code says so below
            while any(p.poll() is None for p in processes):
                if interrupted.is_set():
                    for p in processes:
                        if p.poll() is None:
                            p.send_signal(signal.SIGINT)
                    break
                progress.update_many(describe_many(_read_stats(stats_files)))
                await anyio.sleep(0.25)
            codes = [await anyio.to_thread.run_sync(p.wait) for p in processes]
        finally:
            for p in processes:
                if p.poll() is None:
                    p.kill()
                    p.wait()
                if p.stdin is not None:
                    p.stdin.close()
    errors = [p.stderr.read().decode("utf-8", "replace") if p.stderr else "" for p in processes]
    for p in processes:
        if p.stderr is not None:
            p.stderr.close()
    if interrupted.is_set() or any(c == EXIT_INTERRUPTED for c in codes):
        print("asyncpager: interrupted; progress saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    if any(c != EXIT_OK for c in codes):
        seen: set[str] = set()
        for text in errors:
            for line in text.splitlines():
                # Workers that fail alike say it once.
                if line.strip() and line not in seen:
                    seen.add(line)
                    print(line, file=sys.stderr)
        worst = max(codes, key=lambda c: (c == 2, c != 0))
        return worst if worst in (1, 2) else EXIT_FAILED
    parts = [parts_dir / f"part-{i:04d}{suffix}" for i in range(workers)]
    written = sum(_items_written(f) for f in stats_files)
    # Read before the parts' folder (where they are) is removed.
    totals = _read_stats(stats_files)
    await anyio.to_thread.run_sync(join_parts, parts, args.output, fmt)
    if checkpoint is not None:
        checkpoint.save(
            CheckpointState(fingerprint=main_fp, streams=[], items_written=written, complete=True)
        )
    shutil.rmtree(parts_dir, ignore_errors=True)
    if args.stats:
        body = {"workers": workers, "items_written": written, "per_worker": totals}
        with contextlib.suppress(OSError):
            await anyio.Path(args.stats).write_text(json.dumps(body, indent=2), encoding="utf-8")
    if show:
        print(f"asyncpager: wrote {written:,} items with {workers} workers", file=sys.stderr)
    return code


def _read_stats(files: list[Path]) -> list[dict[str, Any]]:
    out = []
    for path in files:
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            out.append({})
    return out


def _items_written(path: Path) -> int:
    try:
        return int(json.loads(path.read_text(encoding="utf-8")).get("items_written") or 0)
    except (OSError, ValueError):
        return 0


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def _warm_up() -> None:
    """What every export imports, imported while the coordinator plans."""
    import aiobotocore.session  # noqa: F401
    import botocore.loaders  # noqa: F401

    import asyncpager.engine
    import asyncpager.export
    import asyncpager.parsers
    import asyncpager.sinks  # noqa: F401


def worker_main() -> int:
    """One worker: the ordinary export of the streams it was dealt, which
    come as the first line on its standard input."""
    _die_with_parent()
    from asyncpager.cli import build_parser, main_guarded

    _warm_up()
    line = sys.stdin.buffer.readline()
    if not line.strip():
        return 0  # the coordinator stopped before dealing any work
    config = json.loads(line)
    args = build_parser().parse_args(config["argv"])
    args.output = config["output"]
    args.checkpoint = config["checkpoint"]
    args.stats = config["stats"]
    args.progress = False
    args.workers = 1
    assigned = [Stream.from_json(s) for s in config["streams"]]
    stats_path = Path(config["stats"])

    def live(stats: Any) -> None:
        body = stats.as_dict()
        tmp = stats_path.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(body), encoding="utf-8")
            os.replace(tmp, stats_path)

    async def entry(interrupted: anyio.Event) -> int:
        from asyncpager.cli import _run_export

        async def parent_gone() -> None:
            # The coordinator holds our stdin open; EOF means it is gone.
            await anyio.to_thread.run_sync(sys.stdin.buffer.read, abandon_on_cancel=True)
            interrupted.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(parent_gone)
            try:
                code = await _run_export(
                    args,
                    interrupted,
                    assigned=assigned,
                    rate_share=1.0 / int(config["workers"]),
                    live_stats=live,
                )
            finally:
                tg.cancel_scope.cancel()
        return code

    return main_guarded(args, entry)


if __name__ == "__main__":
    exit_code = worker_main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The thread that watches stdin for the coordinator's exit may still be
    # blocked in read(); everything is saved, so leave without joining it.
    os._exit(exit_code)
