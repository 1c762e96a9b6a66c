"""One task of a cluster export: a group of shards, run by asyncpager's own
engine wherever the backend puts it.

A task is not a page: it is a whole group of streams (S3 key ranges,
DynamoDB segments, regions) exported by a :class:`~asyncpager.Fetcher` into
a part file of its own, under a staging folder that belongs to this attempt
alone. Its last act is to write the manifest; the driver commits it (see
:mod:`asyncpager.cluster._layout`). Sink work (encoding, compression,
Parquet) runs in threads, off the event loop the task runs on, which on a
Dask worker is the worker's own.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncpager.cluster._layout import MANIFEST, attempt_dir, part_name, write_json_durably
from asyncpager.pacing import PacerLike, RateLimit
from asyncpager.streams import Stream

__all__ = ["GroupSpec", "run_group"]

Records = Callable[[Stream, dict[str, Any]], Sequence[Mapping[str, Any]]]
Reporter = Callable[[dict[str, Any]], None]


@dataclass
class GroupSpec:
    """Everything one task needs; it travels to the worker (pickled)."""

    index: int
    streams: list[dict[str, Any]]
    root: str
    format: str
    suffix: str
    records: Records
    sink_options: dict[str, Any] = field(default_factory=dict)
    fetcher_options: dict[str, Any] = field(default_factory=dict)
    rate_limits: list[RateLimit] = field(default_factory=list)
    #: A pacer shared by every task (an actor's proxy), instead of rate_limits.
    pacer: PacerLike | None = None
    #: Where live figures go (the backend's channel to the driver).
    report: Reporter | None = None


_SESSION: Any = None


def _process_session() -> Any:
    """One botocore session per worker process, shared by its tasks: a new
    session loads service models and endpoint rules again, which cost a
    short task most of its time (0.3 s of CPU against 0.1 s, measured)."""
    global _SESSION
    if _SESSION is None:
        from aiobotocore.session import AioSession

        from asyncpager._clients import share_loader

        _SESSION = AioSession()
        share_loader(_SESSION)
    return _SESSION


def _figures(stats: Any) -> dict[str, Any]:
    """A run's numeric figures: what Dask's events and the manifest carry."""
    return {k: v for k, v in stats.as_dict().items() if isinstance(v, int | float)}


async def run_group(spec: GroupSpec) -> dict[str, Any]:
    """Export the group's streams into a fresh staging folder; return the
    manifest (or, when streams failed, what failed: nothing to commit)."""
    from asyncpager.engine import Fetcher
    from asyncpager.export import export
    from asyncpager.sinks import open_sink

    # A new folder per attempt: a task run twice never writes where another
    # run of it wrote, so whichever attempt is committed is whole.
    attempt = f"{os.getpid()}-{uuid.uuid4().hex[:10]}"
    root = Path(spec.root)
    folder = attempt_dir(root, spec.index, attempt)
    folder.mkdir(parents=True)
    part = folder / part_name(spec.index, spec.suffix)
    where = f"{socket.gethostname()}:{os.getpid()}"
    started = time.monotonic()
    report = spec.report

    def live(stats: Any) -> None:
        if report is not None:
            report({**_figures(stats), "group": spec.index, "attempt": attempt, "process": where})

    streams = [Stream.from_json(s) for s in spec.streams]
    sink = open_sink(str(part), spec.format, **spec.sink_options)
    options = {"session": _process_session(), **spec.fetcher_options}
    fetcher = Fetcher(
        **options,
        rate_limits=spec.rate_limits,
        pacer=spec.pacer,
        on_stats=live,
        on_error="continue",
    )
    async with fetcher:
        result = await export(streams, sink, spec.records, fetcher=fetcher)
    live(fetcher.stats)
    base = {"group": spec.index, "attempt": attempt, "process": where}
    if result.report is not None and result.report.failures:
        return {
            **base,
            "failed": [f"{s.stream.name}: {s.error}" for s in result.report.failures],
        }
    manifest = {
        **base,
        "parts": [
            {
                "path": part.name,
                "items": result.items_written,
                "bytes": part.stat().st_size if part.exists() else 0,
            }
        ],
        "items": result.items_written,
        "streams": len(streams),
        "seconds": round(time.monotonic() - started, 3),
        "stats": {k: v for k, v in fetcher.stats.as_dict().items() if isinstance(v, int | float)},
    }
    write_json_durably(folder / MANIFEST, manifest)
    return manifest
