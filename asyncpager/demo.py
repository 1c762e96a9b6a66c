"""``asyncpager demo``: the main job with nothing to set up.

It starts the local AWS endpoint (:mod:`asyncpager.testing`) with a generated
bucket and table and a per-request latency like AWS's, exports both with
asyncpager (the same code path as ``asyncpager s3`` and ``asyncpager
dynamodb``, live progress included), then does the same exports with the
sync boto3 paginator, and prints the times side by side.

The endpoint runs in its own process, started and stopped by the demo: in the
demo's own interpreter it would compete for the GIL with the client being
measured, and the comparison would measure the server as much as the client.
Credentials are dummies set for this process only: the demo never reads (and
never sends) the user's real ones.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

__all__ = ["run_demo"]

BUCKET = "asyncpager-demo"
TABLE = "asyncpager-demo"


def _dummy_credentials() -> None:
    os.environ["AWS_ACCESS_KEY_ID"] = "asyncpager-demo"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "asyncpager-demo"
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def _boto3_s3(url: str, path: Path) -> int:
    import boto3

    from asyncpager.sinks import open_sink

    client = boto3.client("s3", region_name="us-east-1", endpoint_url=url)
    sink = open_sink(str(path), None)
    sink.open(None)
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        items = page.get("Contents", [])
        sink.write(items)
        count += len(items)
    sink.close()
    return count


def _boto3_dynamodb(url: str, path: Path) -> int:
    import boto3

    from asyncpager.convert import dynamodb_to_plain
    from asyncpager.sinks import open_sink

    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=url)
    sink = open_sink(str(path), None)
    sink.open(None)
    count = 0
    for page in client.get_paginator("scan").paginate(TableName=TABLE):
        items = [dynamodb_to_plain(item) for item in page.get("Items", [])]
        sink.write(items)
        count += len(items)
    sink.close()
    return count


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


async def run_demo(args: argparse.Namespace) -> int:
    from asyncpager.cli import _run_export, build_parser
    from asyncpager.testing import Bucket, LatencyModel, Table, spawn_endpoint

    _dummy_credentials()
    out = Path(args.output_dir) if args.output_dir else Path(tempfile.mkdtemp(prefix="asyncpager-"))
    out.mkdir(parents=True, exist_ok=True)
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    say = print
    say(
        f"asyncpager demo: a local endpoint with {args.keys:,} objects and {args.items:,} "
        f"items, {args.latency * 1000:.0f} ms per request; output in {out}"
    )
    results: list[dict[str, Any]] = []
    with spawn_endpoint(
        buckets=[Bucket(BUCKET, args.keys, "deep")],
        tables=[Table(TABLE, args.items)],
        latency=LatencyModel(fixed=args.latency) if args.latency > 0 else (),
    ) as endpoint:
        url = endpoint.url
        progress = ["--progress" if show else "--no-progress"]
        loop = ["--loop", args.loop] if args.loop else []
        jobs = [
            (
                "S3 ListObjectsV2",
                ["s3", f"s3://{BUCKET}", "--concurrency", "64"],
                "s3",
                _boto3_s3,
            ),
            (
                "DynamoDB Scan",
                ["dynamodb", TABLE, "--segments", "16", "--concurrency", "32"],
                "dynamodb",
                _boto3_dynamodb,
            ),
        ]
        for title, argv, name, baseline in jobs:
            ours = out / f"{name}.asyncpager.jsonl"
            theirs = out / f"{name}.boto3.jsonl"
            for stale in (ours, theirs):
                stale.unlink(missing_ok=True)
            command = [
                *argv,
                "--endpoint-url",
                url,
                "--region",
                "us-east-1",
                "-o",
                str(ours),
                *progress,
                *loop,
            ]
            ns = build_parser().parse_args(command)
            say(f"\n{title}: asyncpager {' '.join(argv)}")
            start = time.perf_counter()
            code = await _run_export(ns, anyio.Event())
            ours_seconds = time.perf_counter() - start
            if code != 0:
                return code
            ours_count = _lines(ours)
            say(f"  asyncpager: {ours_count:,} items in {ours_seconds:.2f} s")
            say(f"{title}: the sync boto3 paginator, one stream")
            start = time.perf_counter()
            theirs_count = await anyio.to_thread.run_sync(baseline, url, theirs)
            theirs_seconds = time.perf_counter() - start
            say(f"  boto3:      {theirs_count:,} items in {theirs_seconds:.2f} s")
            if theirs_count != ours_count:
                print(
                    f"asyncpager demo: {title}: {ours_count} items against boto3's {theirs_count}",
                    file=sys.stderr,
                )
                return 1
            results.append(
                {
                    "job": title,
                    "items": ours_count,
                    "asyncpager_seconds": round(ours_seconds, 3),
                    "boto3_seconds": round(theirs_seconds, 3),
                    "speedup": round(theirs_seconds / ours_seconds, 2) if ours_seconds else None,
                }
            )
    say("\n| job | items | asyncpager | sync boto3 | speed-up |")
    say("|---|---:|---:|---:|---:|")
    for row in results:
        say(
            f"| {row['job']} | {row['items']:,} | {row['asyncpager_seconds']:.2f} s | "
            f"{row['boto3_seconds']:.2f} s | {row['speedup']}x |"
        )
    (out / "demo.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0
