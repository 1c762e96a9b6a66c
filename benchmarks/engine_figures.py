"""Figures for the engine and the planners, against the local endpoint.

    python -m benchmarks.engine_figures [--keys 200000] [--latency 0.02] [--only memory]

1. pacing: requests per second the endpoint saw against a configured rate;
2. memory: peak RSS listing N and 10 N keys at the same queue size;
3. sharding: wall time of a sharded listing against one stream, same bucket;
4. parsing: the same sharded listing with botocore's parser.

Each measurement runs in a child process so its peak RSS and CPU are its own.
Ratios are what to quote: absolute times depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

from asyncpager.testing import Bucket, LatencyModel, spawn_endpoint
from benchmarks import compile_asyncpager


def _child(kind: str, url: str, bucket: str, extra: dict[str, Any]) -> dict[str, Any]:
    code = f"""
import anyio, json, resource, time, os
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
from asyncpager import Fetcher, RateLimit, plan_s3
extra = json.loads({json.dumps(json.dumps(extra))})
async def main():
    limits = [RateLimit(extra["rate"], burst=extra.get("burst"))] if extra.get("rate") else []
    streams = plan_s3(["s3://{bucket}"], shards=extra.get("shards", 16), region="us-east-1",
                      endpoint_url="{url}", page_size=extra.get("page_size"))
    items = 0
    start = time.perf_counter()
    async with Fetcher(concurrency=extra.get("concurrency", 32), queue_pages=extra.get("queue", 32),
                       rate_limits=limits, split=extra.get("split", True),
                       fast_parse=extra.get("fast_parse")) as f:
        with anyio.move_on_after(extra.get("seconds", 1e9)):
            async for _s, page in f.pages(streams):
                items += len(page.get("Contents", []))
        stats = f.stats
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({{"items": items, "wall": wall, "requests": stats.requests,
                      "cpu": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024}}))
anyio.run(main, backend_options={{"use_uvloop": True}})
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=1800
    )
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["kind"] = kind
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--only", choices=["memory"], help="only the memory runs (N and 10 N keys)")
    args = parser.parse_args(argv)
    compile_asyncpager()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    small, big = args.keys, args.keys * 10
    rows: list[dict[str, Any]] = []
    with spawn_endpoint(
        buckets=[
            Bucket("small", small, "flat"),
            Bucket("big", big, "flat"),
            Bucket("paced", 10_000_000, "flat"),
        ],
        latency=LatencyModel(fixed=args.latency),
        cpu=1,
    ) as ep:
        if args.only == "memory":
            rows += [_child(f"memory-{b}", ep.url, b, {"queue": 32}) for b in ("small", "big")]
        else:
            # 1. pacing: count what the endpoint saw over a fixed span
            ep.reset_stats()
            started = time.perf_counter()
            paced = _child(
                "paced",
                ep.url,
                "paced",
                # Small pages: the client's CPU must not be what holds the rate.
                {"rate": 40.0, "burst": 5, "seconds": 6.0, "shards": 64, "page_size": 10},
            )
            span = time.perf_counter() - started
            seen = ep.stats().count("s3", "ListObjectsV2")
            paced["endpoint_requests"] = seen
            paced["configured_rate"] = 40.0
            paced["held_rate"] = round(paced["requests"] / 6.0, 2)
            paced["span"] = round(span, 2)
            rows.append(paced)
            # 2. memory at the same queue size
            rows += [_child(f"memory-{b}", ep.url, b, {"queue": 32}) for b in ("small", "big")]
            # 3. sharding against one stream, and 4. botocore's parser
            rows.append(_child("one-stream", ep.url, "small", {"shards": 1, "split": False}))
            rows.append(_child("sharded", ep.url, "small", {"shards": 16}))
            rows.append(_child("sharded-botocore-parser", ep.url, "small", {"fast_parse": False}))
    print("| run | items | wall s | CPU s | peak RSS MiB | requests |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['kind']} | {row['items']:,} | {row['wall']:.2f} | {row['cpu']:.2f} | "
            f"{row['rss_mib']:.0f} | {row['requests']:,} |"
        )
    mem = {r["kind"]: r for r in rows}
    print(
        f"\nmemory: {mem['memory-big']['rss_mib']:.0f} MiB for {big:,} keys against "
        f"{mem['memory-small']['rss_mib']:.0f} MiB for {small:,} "
        f"({mem['memory-big']['rss_mib'] / mem['memory-small']['rss_mib']:.3f}x)"
    )
    if args.only == "memory":
        print(json.dumps(rows), file=sys.stderr)
        return 0
    print(
        f"pacing: configured 40 req/s (burst 5), held {paced['held_rate']} req/s "
        f"({paced['endpoint_requests']} requests at the endpoint in ~6 s)"
    )
    print(
        f"sharding: {mem['one-stream']['wall'] / mem['sharded']['wall']:.1f}x faster than one "
        f"stream; botocore's parser costs "
        f"{mem['sharded-botocore-parser']['cpu'] / mem['sharded']['cpu']:.1f}x the CPU"
    )
    print(json.dumps(rows), file=sys.stderr)
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
    sys.exit(main())
