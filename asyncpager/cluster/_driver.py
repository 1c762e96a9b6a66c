"""The driver of a cluster export: plan the groups, run them, commit the
first manifest of each, join.

The driver is where exactly-once is decided: tasks only ever write under
their own staging folders; the driver commits one attempt per group with
one rename, records the plan in the checkpoint before any task starts, and
on a restart with that checkpoint runs only the groups that have no
committed folder.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from asyncpager.checkpoint import Checkpoint, CheckpointState
from asyncpager.cluster._backend import Backend, LocalBackend
from asyncpager.cluster._layout import (
    clear_staging,
    commit_attempt,
    committed_manifests,
    committed_parts,
    write_final_manifest,
)
from asyncpager.cluster._task import GroupSpec, Records
from asyncpager.errors import ConfigurationError
from asyncpager.pacing import RateLimit, share_limits
from asyncpager.sinks.join import JOINABLE_FORMATS
from asyncpager.streams import Stream

if TYPE_CHECKING:
    from asyncpager.parsers import RawMode

__all__ = ["ClusterResult", "PageRecords", "export_on_cluster"]


class PageRecords:
    """The export command's records (a page's items, or ``query`` results;
    DynamoDB items as plain values; labels), in a form that pickles: it is
    built again on each worker from its three settings."""

    def __init__(
        self,
        query: str | None = None,
        *,
        plain_dynamodb: bool = True,
        label_keys: Sequence[str] = (),
        json_lines: bool = False,
        typed_dynamodb: bool = False,
        object_columns: bool = False,
    ) -> None:
        self.query = query
        self.plain_dynamodb = plain_dynamodb
        self.label_keys = list(label_keys)
        #: Records only written as JSON Lines, or only to Parquet, which
        #: converts DynamoDB items and reads S3 objects' lines itself (see
        #: ``make_records``); set by ``export_on_cluster`` from the output's
        #: format.
        self.json_lines = json_lines
        self.typed_dynamodb = typed_dynamodb
        self.object_columns = object_columns
        self._built: Records | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_built"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._built = None

    def __call__(self, stream: Stream, page: dict[str, Any]) -> Sequence[Mapping[str, Any]]:
        if self._built is None:
            from asyncpager.cli import _compile_query, make_records

            self._built = make_records(
                query=_compile_query(self.query),
                plain_dynamodb=self.plain_dynamodb,
                label_keys=self.label_keys,
                json_lines=self.json_lines,
                typed_dynamodb=self.typed_dynamodb,
                object_columns=self.object_columns,
            )
        return self._built(stream, page)


def raw_services_for(
    streams: Sequence[Stream], records: PageRecords, fmt: str
) -> dict[str, RawMode]:
    """The pages the tasks may take raw, as the command takes them (see
    :func:`asyncpager.cli.raw_services`): S3 when every S3 stream is a key
    range, DynamoDB when every DynamoDB stream is a scan or a query (a raw
    mode holds for every call of its service, and other operations'
    answers would not be written the same)."""
    from asyncpager.cli import raw_services

    out: dict[str, RawMode] = {}
    for service in ("s3", "dynamodb"):
        mine = [s for s in streams if s.service == service]
        if not mine:
            continue
        if service == "s3":
            raw_paged = all(s.kind == "s3-range" for s in mine)
        else:
            raw_paged = all(s.operation in ("Scan", "Query") for s in mine)
        if raw_paged:
            out.update(
                raw_services(
                    service,
                    records.plain_dynamodb,
                    records.query,
                    json_lines=fmt == "jsonl",
                    parquet=fmt == "parquet",
                )
            )
    return out


@dataclass
class ClusterResult:
    """How a cluster export ended."""

    items_written: int
    groups: int
    complete: bool
    #: Group -> the error lines of a group whose task failed (not committed).
    failures: dict[int, list[str]] = field(default_factory=dict)
    #: Attempts that finished after their group was committed, thrown away.
    duplicates: int = 0
    #: Group -> every attempt seen running it (figures or a result).
    attempts: dict[int, set[str]] = field(default_factory=dict)
    #: Group -> its committed manifest.
    manifests: dict[int, dict[str, Any]] = field(default_factory=dict)
    already_complete: bool = False

    @property
    def committed(self) -> int:
        """Groups committed, in this run or before it."""
        return len(self.manifests)


def _layout(output: str, fmt: str | None) -> tuple[Path, bool, str, str]:
    """``(root, joined, format, compression)`` for an output path: a folder
    (a trailing ``/`` or one that exists) keeps its parts; a file is joined
    from parts kept beside it, in ``OUTPUT.cluster/``."""
    from asyncpager.sinks import detect_format

    if output.endswith(("/", os.sep)) or os.path.isdir(output):
        return Path(output), False, (fmt or "jsonl"), "none"
    named, compression = detect_format(output)
    chosen = fmt or named
    if chosen is None:
        raise ConfigurationError(
            f"cannot tell the output format of {output}: name it .jsonl or .parquet, "
            "or end it with / for a folder of parts"
        )
    if chosen not in JOINABLE_FORMATS:
        raise ConfigurationError(
            f"a cluster export joins its parts into jsonl or parquet, not {chosen}; "
            "end the output with / for a folder of parts"
        )
    return Path(f"{output}.cluster"), True, chosen, compression


def _suffix(fmt: str, compression: str) -> str:
    extra = {"gzip": ".gz", "zstd": ".zst"}.get(compression, "")
    return f".{fmt}{extra}"


def _limits_to_json(limits: Sequence[RateLimit]) -> list[dict[str, Any]]:
    out = []
    for limit in limits:
        body = dataclasses.asdict(limit)
        if not isinstance(body.get("adaptive"), str | None):
            raise ConfigurationError("a cluster export takes fixed, cubic or aimd rates only")
        body["per"] = list(body["per"])
        out.append(body)
    return out


def _limits_from_json(bodies: Sequence[Mapping[str, Any]]) -> list[RateLimit]:
    return [RateLimit(**{**b, "per": tuple(b["per"])}) for b in bodies]


#: Groups per slot of a backend that says nothing: a lost worker then
#: costs a small part of the work, and a slot that drew light groups takes
#: more of them.
GROUPS_PER_SLOT = 4


def groups_per_slot(backend: Backend) -> int:
    """How many shard groups per slot an export deals by default: the
    backend's ``groups_per_slot`` if it has one, else ``GROUPS_PER_SLOT``.

    Each group is an engine run of its own, one after another in its slot:
    it starts its streams, splits them to fill its requests and ends them,
    and its short first and last pages are paid again. Where losing a
    worker is rare and every slot is a core of this machine
    (:class:`~asyncpager.cluster.ProcessBackend`), one group per slot lets
    each engine split and balance its share itself."""
    value = getattr(backend, "groups_per_slot", GROUPS_PER_SLOT)
    return max(1, int(value))


def _deal(streams: Sequence[Stream], tasks: int) -> list[list[Stream]]:
    """Streams dealt round-robin into ``tasks`` groups (neighbouring key
    ranges land in different groups, which evens out hot prefixes)."""
    count = max(1, min(tasks, len(streams)))
    return [list(streams[i::count]) for i in range(count)]


async def export_on_cluster(
    streams: Sequence[Stream],
    output: str | os.PathLike[str],
    *,
    backend: Backend | None = None,
    records: Records | None = None,
    format: str | None = None,
    compression: str | None = None,
    tasks: int | None = None,
    rate_limits: Sequence[RateLimit] = (),
    shared_rate: bool = False,
    checkpoint: Checkpoint | str | os.PathLike[str] | None = None,
    fingerprint: str = "",
    fetcher_options: Mapping[str, Any] | None = None,
    sink_options: Mapping[str, Any] | None = None,
    on_stats: Callable[[list[dict[str, Any]]], None] | None = None,
) -> ClusterResult:
    """Export ``streams`` on ``backend`` (an entered :class:`Backend`; a
    one-slot :class:`LocalBackend` by default), exactly once.

    The streams are dealt into ``tasks`` shard groups (default: the
    backend's ``groups_per_slot`` per slot, see :func:`groups_per_slot`); each group
    is one task that runs asyncpager's engine and writes one part. ``output``
    ending in ``/`` is a folder of parts with a ``_manifest.json``; any
    other name is one JSON Lines or Parquet file, joined from the parts at
    the end. ``rate_limits`` are split statically (each running task gets
    its share of every limit) or, with ``shared_rate``, held whole by one
    pacer that every task asks. ``checkpoint`` keeps the plan, so that a
    driver restarted with it runs only the groups not yet committed.
    ``on_stats`` gets the latest figures of every running task, about
    twice a second.
    """
    output = os.fspath(output)
    root, joined, fmt, named_compression = _layout(output, format)
    if compression is None:
        compression = named_compression
    if isinstance(checkpoint, str | os.PathLike):
        checkpoint = Checkpoint(checkpoint)
    if tasks is not None and tasks < 1:
        raise ConfigurationError("tasks must be at least 1")
    if checkpoint is not None:
        checkpoint.check_writable()
    state = checkpoint.load(fingerprint) if checkpoint is not None else None
    if state is not None and state.complete:
        return ClusterResult(state.items_written, 0, True, already_complete=True)
    async with contextlib.AsyncExitStack() as stack:
        if backend is None:
            backend = await stack.enter_async_context(LocalBackend())
        slots = backend.slots
        if state is not None:
            groups = [[Stream.from_json(s) for s in g] for g in state.extra["groups"]]
            limits = _limits_from_json(state.extra.get("rate_limits", []))
            done = committed_manifests(root)
        else:
            if not joined and root.is_dir() and committed_manifests(root):
                raise ConfigurationError(
                    f"{output} holds the parts of another export: resume it with its "
                    "--checkpoint, or write to another folder"
                )
            if joined:
                shutil.rmtree(root, ignore_errors=True)
            limits = list(rate_limits)
            groups = _deal(streams, tasks or groups_per_slot(backend) * slots)
            done = {}
            if checkpoint is not None:
                # The plan is saved before any task runs: a restarted driver
                # deals no differently, so committed groups stay valid.
                checkpoint.save(
                    CheckpointState(
                        fingerprint=fingerprint,
                        streams=[],
                        extra={
                            "cluster": True,
                            "groups": [[s.to_json() for s in g] for g in groups],
                            "rate_limits": _limits_to_json(limits),
                            "root": str(root),
                        },
                    )
                )
        root.mkdir(parents=True, exist_ok=True)
        clear_staging(root)
        todo = [i for i in range(len(groups)) if i not in done]
        result = ClusterResult(
            items_written=sum(int(m["items"]) for m in done.values()),
            groups=len(groups),
            complete=False,
            manifests=dict(done),
        )
        # The latest figures of each group's latest attempt (a rerun starts
        # from zero again), kept once the group is committed, so the totals
        # only grow; the rate is the driver's, over the whole run.
        live: dict[int, dict[str, Any]] = {}
        began = time.monotonic()

        def seen(body: dict[str, Any]) -> None:
            group = int(body.get("group", -1))
            attempt = body.get("attempt")
            if attempt:
                result.attempts.setdefault(group, set()).add(str(attempt))
            if group in result.manifests:
                return  # a late attempt of a committed group
            live[group] = body
            if on_stats is not None:
                elapsed = time.monotonic() - began
                on_stats([{**b, "elapsed": elapsed} for b in live.values()])

        pacer = None
        share: list[RateLimit] = []
        if limits:
            if shared_rate:
                pacer = await backend.shared_pacer(limits)
            else:
                share = share_limits(limits, 1.0 / max(1, min(slots, len(todo) or 1)))
        reporter = backend.reporter(seen)
        base_records = records if records is not None else PageRecords()
        if isinstance(base_records, PageRecords) and fmt in ("jsonl", "parquet"):
            base_records = copy.copy(base_records)
            base_records.json_lines = fmt == "jsonl"
            base_records.typed_dynamodb = fmt == "parquet"
            base_records.object_columns = fmt == "parquet" and base_records.query is None
        options = dict(fetcher_options or {})
        if "raw_services" not in options and isinstance(base_records, PageRecords):
            raw = raw_services_for([s for g in groups for s in g], base_records, fmt)
            if raw:
                options["raw_services"] = raw
        specs = [
            GroupSpec(
                index=i,
                streams=[s.to_json() for s in groups[i]],
                root=str(root.resolve()),
                format=fmt,
                suffix=_suffix(fmt, compression),
                records=base_records,
                sink_options={**(sink_options or {}), "compression": compression},
                fetcher_options=options,
                rate_limits=share,
                pacer=pacer,
                report=reporter,
            )
            for i in todo
        ]

        async def on_done(spec: GroupSpec, manifest: dict[str, Any]) -> None:
            attempt = manifest.get("attempt")
            if attempt:
                result.attempts.setdefault(spec.index, set()).add(str(attempt))
            if "failed" in manifest:
                result.failures[spec.index] = list(manifest["failed"])
                return
            if await anyio.to_thread.run_sync(commit_attempt, root, manifest):
                # The rename is the commit: a restart reads the committed
                # folders, so the checkpoint is not written again here.
                result.manifests[spec.index] = manifest
                result.items_written += int(manifest["items"])
            else:
                result.duplicates += 1

        if specs:
            await backend.run(specs, on_done)
    if result.committed < result.groups:
        return result
    await anyio.to_thread.run_sync(_finish, root, joined, output, fmt, result.manifests)
    result.complete = True
    if checkpoint is not None:
        checkpoint.save(
            CheckpointState(
                fingerprint=fingerprint,
                streams=[],
                items_written=result.items_written,
                complete=True,
            )
        )
    if joined:
        shutil.rmtree(root, ignore_errors=True)
    return result


def _finish(
    root: Path, joined: bool, output: str, fmt: str, manifests: dict[int, dict[str, Any]]
) -> None:
    from asyncpager.sinks.join import join_parts

    clear_staging(root)
    if joined:
        join_parts(committed_parts(root, manifests), output, fmt)
    else:
        write_final_manifest(root, manifests)
