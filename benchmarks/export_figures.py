"""What the export command costs on top of the bare listing, against the local endpoint.

    python -m benchmarks.export_figures [--keys 300000] [--items 100000] [--latency 0.05]
                                        [--rounds 2] [--boto3] [--output jsonl|csv|jsonl.gz ...]
                                        [--only s3|dynamodb] [--workers N]
                                        [--dynamodb-json] [--checksums SHARE]

For S3 (one bucket, keys in a folder tree) and DynamoDB (a parallel scan of
items of a dozen attribute types), each round runs, one after the other:

* ``bare``: the library's ``Fetcher`` over the same streams the CLI plans,
  counting items as pages arrive;
* ``cli``: ``asyncpager s3|dynamodb ... -o FILE --workers 1``;
* optionally (``--workers N``, N > 1) the same command with ``--workers N``,
  not pinned: every core, as a user runs it; its items/s is over the whole
  command's wall time (start-up and the join of the parts included);
* optionally (``--dynamodb-json``) the DynamoDB command writing the typed
  JSON as it came (with ``--workers N`` too);
* optionally (``--boto3``) the sync boto3 paginator, the baseline of the
  issue's targets, on a smaller bucket and table of the same shapes.

``--checksums SHARE`` lists that share of the S3 objects with the checksum
S3 has added to every object written since 2025, as a newer bucket lists
them (1: every object; the default, 0, lists none).

The endpoint runs in its own process on core 0, every other client on core 1.
It keeps the pages it renders (``--endpoint-cache-mb``, by default enough
for the data sets): the first run of each round renders them, the rest are
served from memory. AWS's servers are not on this machine; here the
endpoint shares the two cores with the command's workers, and rendering a
million DynamoDB items took 0.7-0.8 CPU-s a run (about 6% of what the
workers spend), CPU that one process on a core of its own never misses.
CPU is the client process's user + system time (every thread, start-up
included), from ``wait4``; the same run on a one-item bucket or table gives
the fixed cost (imports, clients), which the per-million figure leaves out.
items/s is items over the span from the first request to the last item;
``wall s`` is the whole process, start-up to exit, and with ``--workers N``
the command with one worker is compared with N wall to wall, next to what
the machine gave N CPU-bound processes against one, probed before and after
the runs (:mod:`benchmarks.machine`): the ceiling of that ratio.
The machine is shared: quote ratios of one run, not absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from asyncpager.testing import Bucket, LatencyModel, Table, spawn_endpoint
from benchmarks import checksum_share, compile_asyncpager, machine

SERVER_CPU = 0

_BARE = """
import anyio, json, os, sys, time
from asyncpager import Fetcher, plan_s3
from asyncpager.plan.dynamodb import plan_scan
kind, name, url = sys.argv[1:4]
async def main():
    items = 0
    async with Fetcher() as f:
        if kind == "s3":
            streams, key = plan_s3([f"s3://{name}"], shards=8, endpoint_url=url), "Contents"
        else:
            streams = (await plan_scan(name, endpoint_url=url, fetcher=f)).streams
            key = "Items"
        start = time.perf_counter()
        async for _s, page in f.pages(streams):
            items += len(page.get(key) or ())
        wall = time.perf_counter() - start
    print(json.dumps({"items": items, "span": wall}))
anyio.run(main, backend_options={"use_uvloop": True})
"""

_BOTO3 = """
import boto3, json, sys, time
kind, name, url = sys.argv[1:4]
session = boto3.session.Session()
start = time.perf_counter()
items = 0
if kind == "s3":
    client = session.client("s3", endpoint_url=url)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        items += len(page.get("Contents") or ())
else:
    client = session.client("dynamodb", endpoint_url=url)
    for page in client.get_paginator("scan").paginate(TableName=name):
        items += len(page.get("Items") or ())
print(json.dumps({"items": items, "span": time.perf_counter() - start}))
"""


def _child(command: list[str], *, pin: bool = True) -> tuple[str, float, float]:
    """stdout, wall seconds and CPU seconds (every thread and child process)
    of a child process."""
    before = os.times()
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=machine.pin_client if pin else None,
        text=True,
    )
    out, err = process.communicate(timeout=3600)
    wall = time.perf_counter() - started
    # communicate() reaped it: the children's times now include its own.
    after = os.times()
    if process.returncode != 0:
        raise SystemExit(f"{command[:5]} failed ({process.returncode}):\n{err[-3000:]}")
    cpu = after.children_user - before.children_user
    cpu += after.children_system - before.children_system
    return out, wall, cpu


def _bare(kind: str, name: str, url: str) -> dict[str, Any]:
    out, wall, cpu = _child([sys.executable, "-c", _BARE, kind, name, url])
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return {"items": result["items"], "span": result["span"], "wall": wall, "cpu": cpu}


def _boto3(kind: str, name: str, url: str) -> dict[str, Any]:
    out, wall, cpu = _child([sys.executable, "-c", _BOTO3, kind, name, url])
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return {"items": result["items"], "span": result["span"], "wall": wall, "cpu": cpu}


def _cli(
    kind: str,
    name: str,
    url: str,
    output: str,
    directory: str,
    workers: int = 1,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    target = os.path.join(directory, f"out.{output}")
    stats = os.path.join(directory, "stats.json")
    for path in (target, stats):
        if os.path.exists(path):
            os.unlink(path)
    source = [f"s3://{name}"] if kind == "s3" else [name]
    command = [
        *(sys.executable, "-m", "asyncpager", kind, *source),
        *("-o", target, "--endpoint-url", url, "--workers", str(workers)),
        *("--stats", stats, "--no-progress", *extra),
    ]
    # Several workers get every core (the endpoint keeps its own pinned):
    # the command as a user runs it on this machine.
    _out, wall, cpu = _child(command, pin=workers == 1)
    with open(stats, encoding="utf-8") as handle:
        body = json.load(handle)
    return {
        "items": body["items_written"],
        # The coordinator has no span of its own: the whole command's wall,
        # start-up and the join of the parts included.
        "span": body["elapsed"] if workers == 1 else wall,
        "wall": wall,
        "cpu": cpu,
        "bytes": os.path.getsize(target),
    }


def _summary(label: str, runs: list[dict[str, Any]], fixed: float) -> dict[str, Any]:
    items = runs[0]["items"]
    cpu = statistics.median(r["cpu"] for r in runs)
    span = statistics.median(r["span"] for r in runs)
    return {
        "run": label,
        "items": items,
        "items_per_s": items / span,
        # The whole process, start-up included: what compares one process
        # with several, whose span is their coordinator's wall.
        "wall": statistics.median(r["wall"] for r in runs),
        "cpu": cpu,
        "fixed_cpu": fixed,
        "cpu_per_million": (cpu - fixed) / items * 1e6,
        "cpu_per_million_all": cpu / items * 1e6,
    }


#: Rendered bytes per S3 key and per DynamoDB item, with room to spare: a
#: 1,000-key page of the deep tree is about 220 KB, a 4,310-item page of the
#: mixed table 2.3 MB.
_PAGE_BYTES = {"s3": 400, "dynamodb": 700}


def _cache_bytes(args: argparse.Namespace) -> int:
    if args.endpoint_cache_mb is not None:
        return int(args.endpoint_cache_mb) << 20
    # The listed sets, their tenth for the boto3 runs, and the one-item ones.
    wanted = 1.1 * (args.keys * _PAGE_BYTES["s3"] + args.items * _PAGE_BYTES["dynamodb"])
    return max(64 << 20, min(int(wanted), 8 << 30))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=300_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--boto3", action="store_true", help="also run the sync boto3 baseline")
    parser.add_argument("--output", action="append", help="output suffixes (default: jsonl)")
    parser.add_argument("--only", choices=("s3", "dynamodb"), help="one service only")
    parser.add_argument(
        "--dynamodb-json",
        action="store_true",
        help="also export DynamoDB's typed JSON (the command's --dynamodb-json)",
    )
    parser.add_argument(
        "--endpoint-cache-mb",
        type=int,
        help="pages the endpoint keeps (default: enough for the data sets)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also run the command with this many workers, unpinned (items/s from its wall)",
    )
    parser.add_argument(
        "--checksums",
        type=checksum_share,
        default=0.0,
        help="the share of S3 objects listed with the checksum S3 adds to new ones (0 to 1)",
    )
    args = parser.parse_args(argv)
    compile_asyncpager()
    outputs = args.output or ["jsonl"]
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    small_keys, small_items = max(1, args.keys // 10), max(1, args.items // 10)
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as directory,
        spawn_endpoint(
            buckets=[
                Bucket("bench", args.keys, "deep", checksums=args.checksums),
                Bucket("bench-one", 1, "deep", checksums=args.checksums),
                Bucket("bench-small", small_keys, "deep", checksums=args.checksums),
            ],
            tables=[
                Table("bench", args.items, item_shape="mixed"),
                Table("bench-one", 1, item_shape="mixed"),
                Table("bench-small", small_items, item_shape="mixed"),
            ],
            latency=LatencyModel(fixed=args.latency),
            cache_bytes=_cache_bytes(args),
            cpu=SERVER_CPU if (os.cpu_count() or 1) > 1 else None,
        ) as ep,
    ):
        kinds = [args.only] if args.only else ["s3", "dynamodb"]
        # What the machine itself gives N processes, before and after the
        # runs: the 1 -> N ratio below is read against it.
        probes = [machine.scaling(args.workers)] if args.workers > 1 else []
        for kind in kinds:
            fixed_bare = statistics.median(_bare(kind, "bench-one", ep.url)["cpu"] for _ in "ab")
            bare: list[dict[str, Any]] = []
            cli: dict[str, list[dict[str, Any]]] = {o: [] for o in outputs}
            fixed_cli = {
                o: statistics.median(
                    _cli(kind, "bench-one", ep.url, o, directory)["cpu"] for _ in "ab"
                )
                for o in outputs
            }
            # The first output again, as other commands: (label, workers, options).
            variants: list[tuple[str, int, tuple[str, ...]]] = []
            if args.workers > 1:
                variants.append((f"--workers {args.workers} (wall)", args.workers, ()))
            if kind == "dynamodb" and args.dynamodb_json:
                typed = ("--dynamodb-json",)
                variants.append(("--dynamodb-json", 1, typed))
                if args.workers > 1:
                    label = f"--dynamodb-json, --workers {args.workers} (wall)"
                    variants.append((label, args.workers, typed))
            # Each command's own fixed cost, measured on a one-item source
            # (forked workers share their coordinator's imports, so several
            # processes cost less than as many fresh ones).
            fixed_options = {
                (workers, options): statistics.median(
                    _cli(kind, "bench-one", ep.url, outputs[0], directory, workers, options)["cpu"]
                    for _ in "ab"
                )
                for _label, workers, options in variants
                if options or workers > 1
            }
            fixed_options[(1, ())] = fixed_cli[outputs[0]]
            variant_runs: list[list[dict[str, Any]]] = [[] for _ in variants]
            for _ in range(args.rounds):
                bare.append(_bare(kind, "bench", ep.url))
                for o in outputs:
                    cli[o].append(_cli(kind, "bench", ep.url, o, directory))
                for runs, (_label, workers, options) in zip(variant_runs, variants, strict=True):
                    run = _cli(kind, "bench", ep.url, outputs[0], directory, workers, options)
                    runs.append(run)
            rows.append(_summary(f"{kind} bare Fetcher", bare, fixed_bare))
            for o in outputs:
                row = _summary(f"{kind} CLI -> {o}", cli[o], fixed_cli[o])
                row["bytes"] = cli[o][0]["bytes"]
                rows.append(row)
            for runs, (label, workers, options) in zip(variant_runs, variants, strict=True):
                fixed = fixed_options[(workers, options)]
                rows.append(_summary(f"{kind} CLI -> {outputs[0]}, {label}", runs, fixed))
            if args.boto3:
                runs = [_boto3(kind, "bench-small", ep.url)]
                rows.append(_summary(f"{kind} boto3 paginator", runs, 0.0))
        if probes:
            probes.append(machine.scaling(args.workers))
    base = {r["run"].split()[0]: r for r in rows if r["run"].endswith("bare Fetcher")}
    boto = {r["run"].split()[0]: r for r in rows if r["run"].endswith("boto3 paginator")}
    print(
        "| run | items | items/s | wall s | CPU s | fixed CPU s | CPU s / M items | vs bare "
        "| vs boto3 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        kind = r["run"].split()[0]
        vs_bare = r["cpu_per_million"] / base[kind]["cpu_per_million"]
        vs_boto = f"{r['items_per_s'] / boto[kind]['items_per_s']:.1f}x" if kind in boto else "-"
        print(
            f"| {r['run']} | {r['items']:,} | {r['items_per_s']:,.0f} | {r['wall']:.2f} | "
            f"{r['cpu']:.2f} | "
            f"{r['fixed_cpu']:.2f} | {r['cpu_per_million']:.1f} | {vs_bare:.2f}x | {vs_boto} |"
        )
    if args.workers > 1:
        # One process against N, wall to wall: both counted from start-up
        # to exit (items/s above counts one process's listing span only).
        for kind in dict.fromkeys(r["run"].split()[0] for r in rows):
            one = next((r for r in rows if r["run"] == f"{kind} CLI -> {outputs[0]}"), None)
            label = f"{kind} CLI -> {outputs[0]}, --workers {args.workers} (wall)"
            many = next((r for r in rows if r["run"] == label), None)
            if one is not None and many is not None:
                ratio = one["wall"] / many["wall"]
                print(
                    f"\n{kind}: 1 -> {args.workers} workers, wall to wall: "
                    f"{one['wall']:.2f} s -> {many['wall']:.2f} s, {ratio:.2f}x"
                )
        for when, probe in zip(("before the runs", "after them"), probes, strict=False):
            print(f"{machine.describe(probe)}, {when}")
    print(json.dumps(rows), file=sys.stderr)
    if probes:
        print(json.dumps({"machine": probes}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
