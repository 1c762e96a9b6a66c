"""The same export in one process, in ``--workers 2``, and on local Dask
clusters of 1 and 2 worker processes, against the local endpoint.

    python -m benchmarks.cluster_figures [--keys 200000] [--latency 0.05] [--items 50000]

Each run is the ``asyncpager`` command, as a user runs it. A cluster run
also pays for starting its cluster; that start is measured on its own (a
cluster entered and left, nothing run), and the overhead per shard group is

    (cluster of 1 worker - its start - the one-process export) / groups

the cost of running the same work as separate tasks on one core. Results go
to ``benchmarks/results/cluster.{md,json}``. Quote ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncpager.testing import Bucket, LatencyModel, Table, spawn_endpoint
from benchmarks import compile_asyncpager

RESULTS = Path(__file__).parent / "results"

_START = """
import anyio, sys, time
from asyncpager.cluster import DaskBackend
async def main():
    began = time.perf_counter()
    async with DaskBackend(workers=int(sys.argv[1])) as backend:
        ready = time.perf_counter()
    print(ready - began, time.perf_counter() - began)
if __name__ == "__main__":
    anyio.run(main)
"""


def _run(argv: list[str], stats: Path) -> dict[str, Any]:
    began = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=3600)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    body = json.loads(stats.read_text(encoding="utf-8")) if stats.exists() else {}
    return {"wall": wall, "stats": body}


def _start_cost(workers: int) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _START, str(workers)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    ready, _total = (float(x) for x in done.stdout.split())
    return ready


def _export(
    command: list[str], url: str, workdir: Path, name: str, extra: list[str]
) -> dict[str, Any]:
    out = workdir / f"{name}.jsonl"
    stats = workdir / f"{name}.stats.json"
    argv = [
        sys.executable, "-m", "asyncpager", *command, "--endpoint-url", url,
        "--region", "us-east-1", "-o", str(out), "--stats", str(stats), "--no-progress", *extra,
    ]  # fmt: skip
    result = _run(argv, stats)
    with out.open("rb") as handle:
        result["items"] = sum(1 for _ in handle)
    out.unlink()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    compile_asyncpager()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    starts = {n: _start_cost(n) for n in (1, 2)}
    sources = {
        "s3": ["s3", "s3://bench", "--shards", str(args.shards)],
        "dynamodb": ["dynamodb", "bench", "--segments", str(args.shards)],
    }
    modes = {
        "one process": ["--workers", "1"],
        "--workers 2": ["--workers", "2"],
        "--cluster local:1": ["--cluster", "local:1"],
        "--cluster local:2": ["--cluster", "local:2"],
    }
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="asyncpager-cluster-bench-") as tmp,
        spawn_endpoint(
            buckets=[Bucket("bench", args.keys, "flat")],
            tables=[Table("bench", args.items)],
            latency=LatencyModel(fixed=args.latency),
        ) as ep,
    ):
        for source, command in sources.items():
            for mode, extra in modes.items():
                name = f"{source}-{len(rows)}"
                result = _export(command, ep.url, Path(tmp), name, extra)
                result.update(source=source, mode=mode)
                rows.append(result)
                print(f"{source:9} {mode:18} {result['items']:>9,} items {result['wall']:7.2f} s")
    lines = [
        "# Cluster figures",
        "",
        f"Measured {datetime.now(UTC).isoformat(timespec='seconds')} with "
        f"`python -m benchmarks.cluster_figures --keys {args.keys} --items {args.items} "
        f"--latency {args.latency} --shards {args.shards}` (Python {platform.python_version()},"
        f" {len(os.sched_getaffinity(0))} cores, one run). Starting a local cluster: "
        f"{starts[1]:.2f} s with 1 worker, {starts[2]:.2f} s with 2.",
        "",
        "| source | mode | items | wall s | items/s | vs one process | tasks |"
        " overhead per task s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        base = next(r for r in rows if r["source"] == row["source"] and r["mode"] == "one process")
        tasks = row["stats"].get("tasks")
        overhead = ""
        if row["mode"] == "--cluster local:1" and tasks:
            spent = row["wall"] - starts[1] - base["wall"]
            row["overhead_per_task"] = spent / tasks
            overhead = f"{spent / tasks:.3f}"
        lines.append(
            f"| {row['source']} | {row['mode']} | {row['items']:,} | {row['wall']:.2f} | "
            f"{row['items'] / row['wall']:,.0f} | {base['wall'] / row['wall']:.2f}x | "
            f"{tasks or ''} | {overhead} |"
        )
    text = "\n".join(lines) + "\n"
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "cluster.md").write_text(text, encoding="utf-8")
    body = {"args": {k: str(v) for k, v in vars(args).items()}, "starts": starts, "rows": rows}
    (args.output_dir / "cluster.json").write_text(json.dumps(body, indent=1), encoding="utf-8")
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
