"""``--scheduler ADDRESS`` / ``--cluster local[:N]``: the export command on Dask."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

import anyio

from asyncpager.errors import ConfigurationError

__all__ = ["run_cluster"]


def _check(args: argparse.Namespace) -> None:
    if args.scheduler and args.cluster is not None:
        raise ConfigurationError("give --scheduler or --cluster, not both")
    if args.workers is not None and args.workers > 1:
        raise ConfigurationError(
            "--workers applies without a cluster; on a cluster, its worker processes run the tasks"
        )
    if not args.output:
        raise ConfigurationError(
            "a cluster export needs -o/--output: a .jsonl or .parquet file, or a folder ending in /"
        )
    if args.max_items is not None:
        raise ConfigurationError("--max-items counts across all items: run without a cluster")
    if args.csv_raw_formulas:
        raise ConfigurationError("--csv-raw-formulas applies to CSV output, not on a cluster")


async def run_cluster(args: argparse.Namespace, interrupted: anyio.Event) -> int:
    """Plan (once: a resumed run takes the plan from its checkpoint), run the
    shard groups on Dask, commit, join."""
    from asyncpager._groups import until_interrupted
    from asyncpager.checkpoint import Checkpoint, fingerprint
    from asyncpager.cli import (
        EXIT_FAILED,
        EXIT_INTERRUPTED,
        EXIT_OK,
        _compile_query,
        _plan,
        _plan_fingerprint,
        label_keys,
        raw_services,
    )
    from asyncpager.cluster._driver import PageRecords, _layout, export_on_cluster
    from asyncpager.cluster.dask import DaskBackend
    from asyncpager.progress import Progress, describe_many

    _check(args)
    _compile_query(args.query)
    # Before any request: without Dask, say so rather than plan first.
    backend = DaskBackend(args.scheduler, workers=args.cluster or None)
    checkpoint = Checkpoint(args.checkpoint) if args.checkpoint else None
    # The same command on another number of tasks deals streams otherwise:
    # its checkpoint is refused rather than mixed.
    plan_fp = fingerprint({**_plan_fingerprint(args), "cluster": True, "tasks": args.tasks})
    if checkpoint is not None:
        checkpoint.check_writable()
        state = checkpoint.load(plan_fp)
    else:
        state = None
    streams: list[Any] = []
    limits: list[Any] = []
    total = None
    if state is None:
        streams, _labels, limits, total = await _plan(args)
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    progress = Progress(enabled=show, total_items=total)
    plain_dynamodb = args.command == "dynamodb" and not args.dynamodb_json
    fmt = _layout(args.output, args.format)[2]
    records = PageRecords(args.query, plain_dynamodb=plain_dynamodb, label_keys=label_keys(args))
    with progress:
        async with backend:
            result = await until_interrupted(
                interrupted,
                lambda: export_on_cluster(
                    streams,
                    args.output,
                    backend=backend,
                    records=records,
                    format=args.format,
                    tasks=args.tasks,
                    rate_limits=limits,
                    shared_rate=args.shared_rate,
                    checkpoint=checkpoint,
                    fingerprint=plan_fp,
                    fetcher_options={
                        "concurrency": args.concurrency,
                        "verify_ssl": not args.no_verify_ssl,
                        "fast_parse": False if args.no_fast_parse else None,
                        "lean_http": False if args.no_lean_http else None,
                        "direct": False if args.no_direct else None,
                        # As in one process (see raw_services).
                        "raw_services": raw_services(
                            args.command,
                            plain_dynamodb,
                            args.query,
                            json_lines=fmt == "jsonl",
                            parquet=fmt == "parquet",
                        ),
                    },
                    on_stats=lambda bodies: progress.update_many(describe_many(bodies)),
                ),
            )
    if args.stats and result is not None:
        body = {
            "backend": "dask",
            "scheduler": args.scheduler or "local",
            "tasks": result.groups,
            "committed": result.committed,
            "duplicates": result.duplicates,
            "attempts": {str(g): len(a) for g, a in sorted(result.attempts.items())},
            "items_written": result.items_written,
            "complete": result.complete,
            "per_task": {str(g): m.get("stats", {}) for g, m in sorted(result.manifests.items())},
        }
        with contextlib.suppress(OSError):
            await anyio.Path(args.stats).write_text(json.dumps(body, indent=2), encoding="utf-8")
    if interrupted.is_set():
        print("asyncpager: interrupted; committed tasks are kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    assert result is not None
    if result.already_complete:
        progress.say(f"asyncpager: already complete ({result.items_written} items)")
        return EXIT_OK
    if result.failures:
        seen: set[str] = set()
        for lines in result.failures.values():
            for line in lines:
                if line not in seen:
                    seen.add(line)
                    print(f"asyncpager: task failed: {line}", file=sys.stderr)
        return EXIT_FAILED
    progress.say(
        f"asyncpager: wrote {result.items_written:,} items in {result.groups} tasks "
        f"on {backend.slots} Dask worker threads"
    )
    return EXIT_OK
