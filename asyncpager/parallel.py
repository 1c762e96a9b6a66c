"""``--workers N``: one export on every core.

One Python process tops out at what one core can parse (about 15 S3 pages
per second with botocore's parser), however many requests are in flight. So
the coordinator plans once and hands the streams out as work to ``N`` worker
processes, and each worker runs the ordinary crash-safe export of what it
was given (its own event loop, its own engine, ``1/N`` of every rate limit)
into a part file with a checkpoint of its own. Shards that turn out large
still split, inside their worker. JSON Lines parts are gathered into the
output while the workers write them, a commit at a time (byte for byte, gzip
members and zstd frames included; see ``PartGatherer``); Parquet parts are
merged once every worker is done. Either way the output appears with one
atomic rename, and then the main checkpoint is marked complete. Without a
main checkpoint nothing resumes the parts: workers commit them without
waiting for the disk, and the coordinator frees what it has copied of them.

Work is handed out, not dealt once: shards are cut before anyone knows where
the keys are, and a round-robin deal of a million-key bucket's 8 shards gave
one worker 44,000 keys and the other 256,000. Half of the plan is dealt
round-robin at the start; a worker whose streams run low (fewer than
``ASK_BELOW`` left, or than its concurrency; while its event loop is the
bound, fewer than keep it busy) asks for more on its standard output, and
gets a share of what is left (half of it divided among the workers: large
shares first, small ones at the end). Once nothing is left, it takes part of a busier
worker's work instead (see ``_Deal``: work stealing, saved on both sides in
an order that loses nothing), or, with no worker busier than itself, is
told to ask again later; a worker with no streams of its own left waits
for part of another's, and is told that nothing more will come once no
other worker runs.

The workers are started before the coordinator plans (see
:mod:`asyncpager._spawn`: on Linux, forked once the coordinator has imported
what they run; elsewhere, fresh interpreters that import while it plans);
each gets its first share as the first line on its standard input, later
shares as later lines.

Crash safety is each worker's: kill anything at any moment, run the same
command again, and every worker resumes its own part from its own checkpoint.
The coordinator saves who was given what, and what is left, in the main
checkpoint before a worker hears of it; a worker's checkpoint says which of
the streams it was given it has taken, so a stream given just before a crash
runs from its start on the rerun (and a different ``--workers`` is refused).
Workers die with the coordinator (``PR_SET_PDEATHSIG`` on Linux, and they also
stop when their standard input closes), so a killed run leaves no orphan
writing to a part.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.abc
import anyio.to_thread

from asyncpager._spawn import Worker, start_workers, stop_workers
from asyncpager.checkpoint import Checkpoint, CheckpointState, fingerprint
from asyncpager.errors import ConfigurationError
from asyncpager.export import GiveRequest, given_streams
from asyncpager.sinks.join import JOINABLE_FORMATS, PartGatherer, join_parts
from asyncpager.streams import Stream

__all__ = ["run_parallel"]

#: A worker asks for more work when fewer of its streams than this (or
#: than its concurrency) are left. At 4, a worker of an S3 export ran dry
#: several times a run before its next share came (its streams going 30 ->
#: 2 while it ran 120 pages a second instead of 300): 4.26-4.39 s for a
#: million keys at 50 ms with two workers, 3.13-3.56 s at 16; ten million,
#: 19.5-22.5 s against 17.9-18.8 (21.8 once).
ASK_BELOW = 16
#: How often a worker looks at how many streams it has left (seconds).
ASK_POLL = 0.05
#: How long a worker waits to ask again when nothing could be given
#: (seconds), unless its own streams run out first.
ASK_AGAIN = 0.2
#: How often a worker waiting to ask again looks whether its streams ran
#: out (seconds). Asked only once ASK_AGAIN had passed, a worker whose last
#: stream ended meanwhile idled for the rest of it: 0.15-0.2 s at the end
#: of a million keys, out of 2.9.
WATCH = 0.01
#: The coordinator's loop wakes every this many seconds.
TICK = 0.05
#: The coordinator gathers committed parts into the output every this many
#: ticks (see PartGatherer).
GATHER_TICKS = 10


def _output_format(args: argparse.Namespace) -> str:
    from asyncpager.sinks import detect_format

    fmt = args.format or (detect_format(args.output)[0] if args.output else None) or "jsonl"
    return str(fmt)


async def run_parallel(
    args: argparse.Namespace,
    argv: list[str],
    interrupted: anyio.Event,
    processes: list[Worker] | None = None,
) -> int:
    """The coordinator of ``--workers N`` (N > 1), with the worker processes
    the command started before anything else (or started here)."""
    own = processes is None
    if processes is None:
        processes = start_workers(int(args.workers))
    # Parts written for standard output live in a folder of their own, gone
    # however the run ends (nothing resumes them: a checkpoint needs -o).
    scratch = None if args.output else Path(tempfile.mkdtemp(prefix="asyncpager-workers-"))
    try:
        return await _coordinate(args, argv, interrupted, processes, scratch)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        if own:
            # Any never given work (a bad argument, already complete) ends
            # on EOF; anything else is killed. Workers the command started
            # are stopped by the command, whether or not this ran.
            await anyio.to_thread.run_sync(stop_workers, processes)


async def _coordinate(
    args: argparse.Namespace,
    argv: list[str],
    interrupted: anyio.Event,
    processes: list[Worker],
    scratch: Path | None,
) -> int:
    from asyncpager.cli import (
        EXIT_FAILED,
        EXIT_INTERRUPTED,
        EXIT_OK,
        _plan,
        _plan_fingerprint,
        check_export_args,
        failure_lines,
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
    parts_dir = Path(f"{args.output}.workers") if args.output else scratch
    assert parts_dir is not None
    if state is not None:
        groups = [[Stream.from_json(s) for s in g] for g in state.extra["groups"]]
        pool = [Stream.from_json(s) for s in state.extra.get("pool") or ()]
    else:
        streams, _labels, _limits, _total = await _plan(args)
        groups, pool = first_deal(streams, workers)
    suffix = "".join(Path(args.output).suffixes) if args.output else ".jsonl"
    parts = [parts_dir / f"part-{i:04d}{suffix}" for i in range(workers)]
    part_checkpoints = [parts_dir / f"part-{i:04d}.ckpt" for i in range(workers)]
    stats_files = [parts_dir / f"part-{i:04d}.stats.json" for i in range(workers)]

    def load(index: int) -> int:
        stats = _read_stats([stats_files[index]])[0]
        done = int(stats.get("streams_done") or 0) + int(stats.get("streams_failed") or 0)
        return int(stats.get("streams_total") or 0) - done

    deal = _Deal(groups, pool, checkpoint, main_fp, load)
    if state is not None:
        deal.recover_given(part_checkpoints)
    # Saved before any work: a resumed run gives every worker the same
    # streams, so its part checkpoint still applies.
    deal.save()
    # Without a checkpoint nothing resumes the parts: they are only what the
    # output is gathered from (see PartGatherer's scratch).
    scratch_parts = checkpoint is None
    if state is None and args.output:
        # Starting over: parts left by a run without a checkpoint (killed,
        # or stopped before it could clean up) are not this run's, and
        # what was gathered of them is gone.
        shutil.rmtree(parts_dir, ignore_errors=True)
    parts_dir.mkdir(parents=True, exist_ok=True)
    # JSON Lines are gathered into the output file (or standard output) as
    # the parts are committed (see PartGatherer); Parquet parts are merged
    # once every worker is done.
    gatherer = (
        PartGatherer(
            parts,
            part_checkpoints,
            parts_dir / "gathering.tmp" if args.output else None,
            scratch=scratch_parts,
        )
        if fmt == "jsonl"
        else None
    )
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
                    "output": str(parts[index]),
                    "checkpoint": str(part_checkpoints[index]),
                    "stats": str(stats_files[index]),
                    "streams": [s.to_json() for s in group],
                    "more": True,
                    "scratch": scratch_parts,
                }
                # Its share, as one line; the input then stays open until
                # the coordinator exits (the worker stops on EOF).
                stdin = processes[index].stdin
                assert stdin is not None
                try:
                    stdin.write(json.dumps(config).encode() + b"\n")
                    stdin.flush()
                except BrokenPipeError:
                    pass  # it died starting: its exit code says so below
            async with anyio.create_task_group() as tg:
                # Set once every worker's output is closed: each is exiting.
                closed = anyio.Event()

                async def answer_all() -> None:
                    async with anyio.create_task_group() as answers:
                        for index, process in enumerate(processes):
                            answers.start_soon(_answer, deal, index, process, interrupted)
                    closed.set()

                tg.start_soon(answer_all)
                gathering = anyio.Event()
                gathering.set()
                ticks = 0
                while any(p.poll() is None for p in processes):
                    if interrupted.is_set():
                        for p in processes:
                            if p.poll() is None:
                                p.send_signal(signal.SIGINT)
                        break
                    if closed.is_set():
                        # Exiting, output closed: its exit is seen within a
                        # millisecond, not on the next tick of 50 ms.
                        await anyio.sleep(0.001)
                        continue
                    if ticks % 5 == 0:
                        progress.update_many(describe_many(_read_stats(stats_files)))
                    if gatherer is not None and ticks % GATHER_TICKS == 0 and gathering.is_set():
                        gathering = anyio.Event()
                        tg.start_soon(_gather, gatherer, gathering)
                    ticks += 1
                    with anyio.move_on_after(TICK):
                        await closed.wait()
                await gathering.wait()
                tg.cancel_scope.cancel()
            codes = [await anyio.to_thread.run_sync(p.wait) for p in processes]
        except BaseException:
            if gatherer is not None:
                gatherer.close()
            raise
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
    # Streams that failed end their workers with 1 once the rest of their
    # work is written: the output then holds it, as from one process.
    ran_out = all(c in (EXIT_OK, EXIT_FAILED) for c in codes) and not interrupted.is_set()
    if gatherer is not None and not ran_out:
        gatherer.close()
    if interrupted.is_set() or any(c == EXIT_INTERRUPTED for c in codes):
        if scratch_parts:
            shutil.rmtree(parts_dir, ignore_errors=True)
            print("asyncpager: interrupted", file=sys.stderr)
        else:
            print("asyncpager: interrupted; progress saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    if any(c != EXIT_OK for c in codes):
        # Failed streams once for all the workers (a missing bucket's
        # ranges were dealt to each), then whatever else they said.
        bodies = _read_stats(stats_files)
        merged = [f"asyncpager: {line}" for line in failure_lines(
            [f for body in bodies for f in body.get("failures") or ()]
        )]  # fmt: skip
        for line in merged:
            print(line, file=sys.stderr)
        seen = set(merged)
        for body in bodies:
            seen.update(f"asyncpager: {line}" for line in failure_lines(body.get("failures") or []))
        for text in errors:
            for line in text.splitlines():
                # Workers that fail alike say it once.
                if line.strip() and line not in seen:
                    seen.add(line)
                    print(line, file=sys.stderr)
        worst = max(codes, key=lambda c: (c == 2, c != 0))
        await _write_totals(args.stats, workers, bodies)
        if ran_out:
            await _put_together(gatherer, parts, args.output, fmt)
            if scratch_parts:
                # Nothing resumes from the parts: they would only take room.
                shutil.rmtree(parts_dir, ignore_errors=True)
            # The parts stay beside a checkpoint: a rerun goes on in them, and
            # gathers the output afresh.
        return worst if worst in (1, 2) else EXIT_FAILED
    # Read before the parts' folder (where they are) is removed.
    totals = _read_stats(stats_files)
    written = sum(int(t.get("items_written") or 0) for t in totals)
    await _write_totals(args.stats, workers, totals)
    await _put_together(gatherer, parts, args.output, fmt)
    if checkpoint is not None:
        checkpoint.save(
            CheckpointState(fingerprint=main_fp, streams=[], items_written=written, complete=True)
        )
    shutil.rmtree(parts_dir, ignore_errors=True)
    if show:
        print(f"asyncpager: wrote {written:,} items with {workers} workers", file=sys.stderr)
    return code


async def _put_together(
    gatherer: PartGatherer | None, parts: list[Path], output: str | None, fmt: str
) -> None:
    """The parts, each worker done with its own, as the output."""
    if gatherer is not None:
        try:
            await anyio.to_thread.run_sync(gatherer.finish, output)
        finally:
            gatherer.close()
    else:
        await anyio.to_thread.run_sync(join_parts, parts, output, fmt)


async def _write_totals(path: str | None, workers: int, totals: list[dict[str, Any]]) -> None:
    """``--stats``: every worker's figures (as read from their stats files),
    and their failed streams."""
    if not path:
        return
    written = sum(int(t.get("items_written") or 0) for t in totals)
    body = {
        "workers": workers,
        "items_written": written,
        "failures": [f for t in totals for f in t.get("failures") or ()],
        "per_worker": totals,
    }
    with contextlib.suppress(OSError):
        await anyio.Path(path).write_text(json.dumps(body, indent=2), encoding="utf-8")


def first_deal(streams: list[Stream], workers: int) -> tuple[list[list[Stream]], list[Stream]]:
    """What each worker starts with (half the plan, round-robin, at least
    a stream each where there are enough) and what is left to hand out."""
    dealt = max(workers, (len(streams) + 1) // 2)
    return [streams[:dealt][i::workers] for i in range(workers)], streams[dealt:]


class _Deal:
    """Who was given what, and what is left; saved in the main checkpoint
    before any worker hears of it.

    Once nothing is left, a worker that asks for more gets part of another
    worker's work: that worker halves some of its running streams, saves
    them in its own checkpoint (narrowed, and the parts given away listed),
    and only then sends the parts here, which saves them as the asker's
    before the asker hears of them. A crash between the two saves leaves
    the parts in the giver's checkpoint alone; the next run finds them
    there (``recover_given``)."""

    def __init__(
        self,
        groups: list[list[Stream]],
        pool: list[Stream],
        checkpoint: Checkpoint | None,
        fingerprint: str,
        load: Callable[[int], int] = lambda index: 0,
    ) -> None:
        self.groups = groups
        self.pool = pool
        self.checkpoint = checkpoint
        self.fingerprint = fingerprint
        self.lock = anyio.Lock()
        #: How much work worker ``index`` has in hand: its streams left, as
        #: its live figures last said.
        self.load = load
        self.inputs: dict[int, IO[bytes]] = {}
        self.running: set[int] = set(range(len(groups)))
        #: Workers with no streams left, waiting for part of another's.
        self.idle: set[int] = set()
        #: Set (and replaced) whenever a worker goes idle, stops being idle,
        #: is let go or exits: what a worker waiting for part of another's
        #: work waits on.
        self.changed = anyio.Event()
        self._steal = anyio.Lock()
        self._asked: dict[int, tuple[anyio.Event, list[Stream]]] = {}

    def touch(self) -> None:
        """Wake whoever waits on :attr:`changed`."""
        self.changed.set()
        self.changed = anyio.Event()

    def set_idle(self, index: int, idle: bool) -> None:
        """Worker ``index`` waits for part of another's work, or no longer."""
        if idle:
            self.idle.add(index)
        else:
            self.idle.discard(index)
        self.touch()

    def let_go(self, index: int) -> None:
        """Worker ``index`` is told nothing more will come (or has exited)."""
        self.running.discard(index)
        self.touch()

    def save(self) -> None:
        if self.checkpoint is None:
            return
        self.checkpoint.save(
            CheckpointState(
                fingerprint=self.fingerprint,
                streams=[],
                extra={
                    "workers": len(self.groups),
                    "groups": [[s.to_json() for s in g] for g in self.groups],
                    "pool": [s.to_json() for s in self.pool],
                },
            )
        )

    async def give(self, index: int, left: int = 0) -> list[Stream]:
        """The next share for worker ``index``, which has ``left`` streams
        of its own left (empty: nothing to give it now)."""
        async with self.lock:
            share = max(1, len(self.pool) // (2 * len(self.groups)))
            given, self.pool = self.pool[:share], self.pool[share:]
            if given:
                await self._assign(index, given)
                return given
        return await self._take_from_others(index, left)

    async def _assign(self, index: int, streams: list[Stream]) -> None:
        self.groups[index] = [*self.groups[index], *streams]
        await anyio.to_thread.run_sync(self.save)

    async def _take_from_others(self, index: int, left: int) -> list[Stream]:
        # Only from workers with more streams in hand than the asker: two
        # workers both running low would otherwise cut each other's
        # streams back and forth, a commit and a short page each time.
        async with self._steal:
            loads = {i: self.load(i) for i in self.running - {index}}
            others = [i for i, load in loads.items() if load > left]
            for other in sorted(others, key=loads.__getitem__, reverse=True):
                given = await self._ask_to_give(other)
                if given:
                    async with self.lock:
                        await self._assign(index, given)
                    return given
        return []

    async def _ask_to_give(self, index: int) -> list[Stream]:
        into = self.inputs.get(index)
        if into is None or index not in self.running:
            return []
        done = anyio.Event()
        given: list[Stream] = []
        self._asked[index] = (done, given)
        try:
            into.write(b'{"give": true}\n')
            into.flush()
        except (BrokenPipeError, ValueError):
            del self._asked[index]
            return []  # it exited (or its input was closed)
        await done.wait()
        return given

    async def received(self, index: int, streams: list[Stream]) -> None:
        """Worker ``index`` gave ``streams`` away (saved on its side)."""
        asked = self._asked.pop(index, None)
        if asked is not None:
            asked[1].extend(streams)
            asked[0].set()
        elif streams:
            # Unasked for: nothing may be lost, so it joins what is left.
            async with self.lock:
                self.pool.extend(streams)
                await anyio.to_thread.run_sync(self.save)

    def gone(self, index: int) -> None:
        """Worker ``index`` exited: it gives nothing more."""
        asked = self._asked.pop(index, None)
        if asked is not None:
            asked[0].set()
        self.let_go(index)

    def recover_given(self, checkpoints: list[Path]) -> None:
        """Streams the workers' checkpoints say were given away that the
        deal never saved (a crash came between the two saves): left to
        hand out again."""
        known = {fingerprint(s.to_json()) for s in self.pool}
        known.update(fingerprint(s.to_json()) for group in self.groups for s in group)
        for path in checkpoints:
            state = Checkpoint(path).peek()
            for stream in given_streams(state) if state is not None else ():
                key = fingerprint(stream.to_json())
                if key not in known:
                    known.add(key)
                    self.pool.append(stream)


async def _answer(deal: _Deal, index: int, process: Worker, interrupted: anyio.Event) -> None:
    """Read worker ``index``'s requests for work (each answered in a task
    of its own, since answering may wait on another worker) and the work it
    gives away, until it exits."""
    out, into = process.stdout, process.stdin
    assert out is not None
    assert into is not None
    deal.inputs[index] = into
    async with anyio.create_task_group() as tg:
        try:
            while True:
                line = await anyio.to_thread.run_sync(out.readline, abandon_on_cancel=True)
                if not line:
                    return  # it exited
                text = line.strip()
                if text.startswith(b"more"):
                    # "more N": it has N streams left.
                    left = int(text[4:] or 0)
                    tg.start_soon(_hand_out, deal, index, into, interrupted, left)
                elif text.startswith(b"{"):
                    given = json.loads(text).get("given") or ()
                    await deal.received(index, [Stream.from_json(s) for s in given])
        finally:
            deal.gone(index)


async def _hand_out(
    deal: _Deal, index: int, into: IO[bytes], interrupted: anyio.Event, left: int
) -> None:
    given = [] if interrupted.is_set() else await deal.give(index, left)
    if not given and left == 0:
        # Out of work while another worker still lists: nothing could be
        # split off just now (a stream splits once it has a page since its
        # last split). Told "last" at once, a worker that ran out at 0.4 s
        # went while the other listed alone for 0.9 s more; so it waits
        # while any other worker has streams of its own, and tries again.
        # Woken as soon as the others are all idle or gone (polled every
        # 50 ms, both workers waited up to that long at the end of a run),
        # and asks again every ASK_POLL meanwhile.
        deal.set_idle(index, True)
        try:
            while not given and not interrupted.is_set() and deal.running - deal.idle:
                changed = deal.changed
                with anyio.move_on_after(ASK_POLL):
                    await changed.wait()
                if deal.running - deal.idle and not interrupted.is_set():
                    given = await deal.give(index, left)
        finally:
            deal.set_idle(index, False)
    reply: dict[str, Any] = {"streams": [s.to_json() for s in given]}
    if not given and (interrupted.is_set() or left == 0 or not deal.running - {index}):
        reply = {"last": True}
        # It goes: no other waiting worker waits for it.
        deal.let_go(index)
    # Otherwise an empty share: nothing could be split off just now (a
    # stream splits once it has a page); the worker, which still has
    # streams of its own, asks again later.
    with contextlib.suppress(BrokenPipeError, ValueError):  # it exited
        into.write(json.dumps(reply).encode() + b"\n")
        into.flush()


async def _gather(gatherer: PartGatherer, done: anyio.Event) -> None:
    try:
        await anyio.to_thread.run_sync(gatherer.gather)
    finally:
        done.set()


def _read_stats(files: list[Path]) -> list[dict[str, Any]]:
    out = []
    for path in files:
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            out.append({})
    return out


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def warm_up(services: Sequence[str] = ()) -> None:
    """What every export imports, and botocore's data for ``services``,
    made ready before the workers are forked (they share it)."""
    import aiobotocore.session  # noqa: F401
    import botocore.loaders  # noqa: F401

    import asyncpager.engine
    import asyncpager.export
    import asyncpager.parsers
    import asyncpager.sinks  # noqa: F401
    from asyncpager._clients import preload_service_data

    for service in services:
        preload_service_data(service)


def _before_the_share() -> None:
    """What a worker imports while it waits for its share: the event loop
    and its backend, the stream kinds' cursors, the HTTP session and
    progress. Imported once the share came, they took 40-60 ms of the
    worker's start on the way to its first request; imported here, in each
    worker at once, they overlap with the coordinator's plan."""
    import anyio._backends._asyncio
    import anyio._core._signals  # noqa: F401

    import asyncpager._http
    import asyncpager.plan.dynamodb
    import asyncpager.plan.regions
    import asyncpager.plan.s3
    import asyncpager.progress  # noqa: F401

    with contextlib.suppress(ImportError):
        import uvloop  # noqa: F401


async def _ask_for_work(
    fetcher: Any, replies: anyio.abc.ObjectReceiveStream[dict[str, Any]]
) -> AsyncIterator[list[Stream]]:
    """The streams a worker is handed while it runs: asked for whenever
    fewer of its streams than :func:`_ask_below` says are left, until the
    coordinator says nothing is."""
    while True:
        while True:
            left = _left(fetcher)
            if left < _ask_below(fetcher):
                break
            await fetcher.clock.sleep(ASK_POLL)
        sys.stdout.buffer.write(b"more %d\n" % left)
        sys.stdout.buffer.flush()
        try:
            reply = await replies.receive()
        except anyio.EndOfStream:
            return  # the coordinator is gone: the run is being stopped
        if reply.get("last"):
            return
        if not reply["streams"]:
            await _wait_to_ask_again(fetcher)
            continue
        yield [Stream.from_json(s) for s in reply["streams"]]


def _ask_below(fetcher: Any) -> int:
    """How few streams left make a worker ask for more: ``ASK_BELOW`` (or
    its concurrency), or, while its event loop is the bound, the streams
    that keep it busy (at least 2). Streams beyond those only wait for the
    loop, all at once, and what a worker holds when nothing is left to hand
    out is what it runs alone at the end: a DynamoDB scan's segments cannot
    be split and given away, and two workers holding 16-32 segments each
    ended 0.4-1.0 s apart (a million items, 6.9-7.1 s in all)."""
    below = min(ASK_BELOW, max(1, int(fetcher.concurrency)))
    enough = fetcher._streams_enough()
    if enough is not None:
        below = min(below, max(2, enough))
    return below


def _left(fetcher: Any) -> int:
    stats = fetcher.stats
    return int(stats.streams_total - stats.streams_done - stats.streams_failed)


async def _wait_to_ask_again(fetcher: Any) -> None:
    """ASK_AGAIN, or less if the worker's streams run out meanwhile."""
    clock = fetcher.clock
    until = clock.now() + ASK_AGAIN
    while _left(fetcher) > 0 and clock.now() < until:
        await clock.sleep(min(WATCH, until - clock.now()))


def worker_args(config: dict[str, Any]) -> argparse.Namespace:
    """A worker's command line: the coordinator's, with its own part,
    checkpoint and figures, from the first line it is sent."""
    from asyncpager.cli import build_parser

    args = build_parser().parse_args(config["argv"])
    args.output = config["output"]
    args.checkpoint = config["checkpoint"]
    args.stats = config["stats"]
    args.scratch_part = bool(config.get("scratch"))
    if args.scratch_part:
        # A commit of a scratch part only tells the coordinator how far it
        # may copy (no fsync: about a millisecond). Every 5 s, a DynamoDB
        # export's last 80 MB were left to copy and write back after the
        # workers were done; committed as often as they are gathered, the
        # output keeps up with the parts.
        args.commit_interval = min(args.commit_interval, GATHER_TICKS * TICK)
    args.progress = False
    args.workers = 1
    return args


def worker_main() -> int:
    """One worker: the ordinary export of the streams it was dealt, which
    come as the first line on its standard input."""
    _die_with_parent()
    from asyncpager.cli import main_guarded

    warm_up()
    _before_the_share()
    line = sys.stdin.buffer.readline()
    if not line.strip():
        return 0  # the coordinator stopped before dealing any work
    config = json.loads(line)
    args = worker_args(config)
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

        send, replies = anyio.create_memory_object_stream[dict[str, Any]](1)
        ask, gives = anyio.create_memory_object_stream[GiveRequest](8)

        def give_back(streams: Sequence[Stream]) -> None:
            body = {"given": [s.to_json() for s in streams]}
            sys.stdout.buffer.write(json.dumps(body).encode() + b"\n")
            sys.stdout.buffer.flush()

        async def read_coordinator() -> None:
            # The coordinator holds our stdin open and answers on it (and
            # asks us to give work away); EOF means it is gone.
            async with send, ask:
                while True:
                    line = await anyio.to_thread.run_sync(
                        sys.stdin.buffer.readline, abandon_on_cancel=True
                    )
                    if not line:
                        interrupted.set()
                        return
                    message = json.loads(line)
                    if message.get("give"):
                        await ask.send(give_back)
                    else:
                        await send.send(message)

        def more(fetcher: Any) -> AsyncIterator[list[Stream]]:
            return _ask_for_work(fetcher, replies)

        async with anyio.create_task_group() as tg:
            tg.start_soon(read_coordinator)
            try:
                code = await _run_export(
                    args,
                    interrupted,
                    assigned=assigned,
                    rate_share=1.0 / int(config["workers"]),
                    live_stats=live,
                    more=more if config.get("more") else None,
                    gives=gives,
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
