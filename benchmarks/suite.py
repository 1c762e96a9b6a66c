"""Run every peer on every scenario at every latency, against one endpoint.

The endpoint (:func:`asyncpager.testing.spawn_endpoint`) runs in its own
process pinned to core 0; this process pins itself to core 1, and every peer
it starts inherits that core. Each peer runs in a subprocess of its own, and
a small launcher's ``wait4`` gives its CPU time and peak RSS
(``benchmarks/_launch.py`` says why not this process's). Peers run one after
the other, never side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import importlib.util
import inspect
import json
import math
import os
import platform
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asyncpager.cli import _int_at_least
from benchmarks import checksum_share
from benchmarks.ceilings import ParseCost, ceiling, lower_cost, measure_parse_cost
from benchmarks.scenarios import (
    DIRECTORY_BUCKET,
    HOME_REGION,
    MANY_BUCKETS,
    MEMORY_BUCKETS,
    ONE_BUCKET,
    PEERS,
    REGIONS,
    SCALES,
    TABLE,
    Peer,
    Scale,
    Scenario,
    Workload,
    scenarios_for,
)

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
SERVER_CPU, CLIENT_CPU = 0, 1


@dataclasses.dataclass
class Run:
    """One process: what it printed and what the kernel says it used."""

    code: int
    wall: float
    cpu: float
    max_rss_mib: float
    stdout: str
    stderr: str
    timed_out: bool = False


@dataclasses.dataclass
class Row:
    scenario: str
    latency_ms: int
    peer: str
    label: str
    status: str = "ok"  # ok, invalid (wrong count), failed, timeout
    items: int = 0
    expected: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    process_wall: float = 0.0
    process_cpu: float = 0.0
    peak_rss_mib: float = 0.0
    parser: str = "botocore"
    requests: int = 0
    throttled: int = 0
    server_cpu: float = 0.0
    note: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    items_per_second: float = 0.0
    ratio_to_baseline: float | None = None
    cpu_per_million: float | None = None
    ceiling: float | None = None
    ceiling_limit: str = ""
    ceiling_terms: dict[str, float] = dataclasses.field(default_factory=dict)
    percent_of_ceiling: float | None = None


# -- processes -----------------------------------------------------------------


def clean_env() -> dict[str, str]:
    """The environment of every peer: dummy credentials, no profile, no CA
    bundle, no pager; nothing of the user's AWS set-up is read or sent."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    env.update(
        AWS_ACCESS_KEY_ID="benchmark",
        AWS_SECRET_ACCESS_KEY="benchmark",
        AWS_DEFAULT_REGION=HOME_REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_PAGER="",
    )
    return env


def run_process(argv: Sequence[str], env: dict[str, str], stdout: Path, timeout: float) -> Run:
    """Run ``argv`` through the launcher to the end, or kill its process group
    at ``timeout``."""
    err = stdout.with_suffix(".stderr")
    usage = stdout.with_suffix(".usage")
    launcher = [sys.executable, "-I", "-S", str(HERE / "_launch.py"), str(usage)]
    with stdout.open("wb") as out, err.open("wb") as errors:
        start = time.perf_counter()
        process = subprocess.Popen(
            [*launcher, *argv],
            stdout=out,
            stderr=errors,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        timed_out = False
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        wall = time.perf_counter() - start
    code, cpu, rss = process.returncode, 0.0, 0.0
    if usage.exists():
        fields = usage.read_text().split()
        code, cpu, rss = int(fields[0]), float(fields[1]), float(fields[2])
    return Run(
        code=code,
        wall=wall,
        cpu=cpu,
        max_rss_mib=rss / 1024,  # KiB on Linux
        stdout=stdout.read_text(errors="replace") if stdout.stat().st_size < 1 << 20 else "",
        stderr=err.read_text(errors="replace")[-4000:],
        timed_out=timed_out,
    )


def _aws_cli() -> str | None:
    # Debian's package first (the one the issue names), then whatever is on PATH.
    for candidate in ("/usr/bin/aws", shutil.which("aws")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=clean_env())
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "?"


def available_peers(chosen: Sequence[Peer]) -> tuple[list[Peer], dict[str, str]]:
    """The peers that can run here, and why the others cannot."""
    ok: list[Peer] = []
    missing: dict[str, str] = {}
    for peer in chosen:
        if (
            peer.id == "parallel-scan"
            and importlib.util.find_spec("aws_dynamodb_parallel_scan") is None
        ):
            missing[peer.id] = "not installed (pip install aws-dynamodb-parallel-scan)"
        elif peer.id == "aws-cli" and _aws_cli() is None:
            missing[peer.id] = "not installed (apt-get install awscli)"
        elif peer.id == "rclone" and shutil.which("rclone") is None:
            missing[peer.id] = "not installed (apt-get install rclone)"
        else:
            ok.append(peer)
    return ok, missing


def external_command(peer: Peer, w: Workload, out: Path) -> list[str]:
    """The command line of a command-line peer; all of it writes to stdout
    (the suite sends that to ``out``) except asyncpager, which writes ``out``."""
    if peer.id == "asyncpager-cli":
        base = [sys.executable, "-m", "asyncpager"]
        common = ["--endpoint-url", w.url, "-o", str(out.with_suffix(".jsonl")), "--no-progress"]
        common += ["--stats", str(out.with_suffix(".stats.json"))]
        if w.kind == "s3":
            urls = [f"s3://{b}" for b in w.buckets]
            return [*base, "s3", *urls, "--region", HOME_REGION, *common]
        if w.kind == "dynamodb":
            assert w.table is not None
            return [*base, "dynamodb", w.table, "--region", HOME_REGION, *common]
        regions = ",".join(w.regions)
        page = ["--page-size", str(w.page_size)] if w.page_size else []
        # One record per instance, as the other peers count them.
        instances = ["--query", "Reservations[].Instances[]"]
        return [
            *base, "call", "ec2", "describe_instances", "--regions", regions, *page,
            *instances, *common,
        ]  # fmt: skip
    if peer.id == "aws-cli":
        aws = _aws_cli()
        assert aws is not None
        lines: list[list[str]]
        if w.kind == "s3":
            s3 = [aws, "--endpoint-url", w.url, "--region", HOME_REGION, "s3", "ls", "--recursive"]
            lines = [[*s3, f"s3://{bucket}"] for bucket in w.buckets]
        elif w.kind == "dynamodb":
            assert w.table is not None
            ddb = [aws, "--endpoint-url", w.url, "--region", HOME_REGION, "dynamodb", "scan"]
            lines = [[*ddb, "--table-name", w.table, "--output", "json"]]
        else:
            page = ["--page-size", str(w.page_size)] if w.page_size else []
            ec2 = ["ec2", "describe-instances", *page, "--output", "json"]
            lines = [[aws, "--endpoint-url", w.url, "--region", r, *ec2] for r in w.regions]
        return _script(lines)
    if peer.id == "rclone":
        return _script(
            [["rclone", "lsf", "-R", "--files-only", f"bench:{bucket}"] for bucket in w.buckets]
        )
    raise ValueError(f"{peer.id} is not a command-line peer")


def _script(lines: list[list[str]]) -> list[str]:
    """One shell running the commands in turn (one region or bucket after the
    other, as a user of a one-listing tool would), stopping at the first
    failure."""
    if len(lines) == 1:
        return lines[0]
    return ["/bin/sh", "-ec", "\n".join(shlex.join(line) for line in lines)]


def rclone_env(url: str) -> dict[str, str]:
    return {
        "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
        "RCLONE_CONFIG_BENCH_ENDPOINT": url,
        "RCLONE_CONFIG_BENCH_REGION": HOME_REGION,
        # ListObjectsV2, as rclone lists AWS itself (provider "Other" means
        # V1, which directory buckets refuse).
        "RCLONE_CONFIG_BENCH_LIST_VERSION": "2",
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": "benchmark",
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": "benchmark",
        "RCLONE_CONFIG": os.devnull,
    }


def count_output(peer: Peer, kind: str, out: Path) -> int:
    """Items in a command-line peer's output."""
    if peer.id == "asyncpager-cli":
        return _lines(out.with_suffix(".jsonl"))
    if peer.id == "rclone" or kind == "s3":
        return _lines(out)
    total = 0
    decoder = json.JSONDecoder()
    text = out.read_text()
    at = 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return total
        document, at = decoder.raw_decode(text, at)
        if kind == "dynamodb":
            total += len(document.get("Items") or ())
        else:
            for reservation in document.get("Reservations") or ():
                total += len(reservation.get("Instances") or ())


def _lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


# -- one measurement -----------------------------------------------------------


def measure(
    peer: Peer,
    scenario: Scenario,
    w: Workload,
    latency_ms: int,
    endpoint: Any,
    workdir: Path,
    timeout: float,
) -> Row:
    row = Row(scenario.id, latency_ms, peer.id, peer.label, expected=w.expected)
    env = clean_env()
    out = workdir / f"{scenario.id}-{latency_ms}-{peer.id}.out"
    if peer.external:
        argv = external_command(peer, w, out)
        if peer.id == "rclone":
            env.update(rclone_env(w.url))
    else:
        argv = [sys.executable, "-m", "benchmarks._child", peer.id, json.dumps(w.to_json())]
        env["PYTHONPATH"] = str(HERE.parent)
    endpoint.reset_stats()
    run = run_process(argv, env, out, timeout)
    stats = endpoint.stats()
    service = w.kind
    row.requests = stats.count(service)
    row.throttled = stats.throttled_count(service)
    row.server_cpu = stats.cpu_seconds
    row.process_wall, row.process_cpu, row.peak_rss_mib = run.wall, run.cpu, run.max_rss_mib
    if run.timed_out:
        row.status, row.note = "timeout", f"stopped after {timeout:.0f} s"
        return row
    if run.code != 0:
        row.status = "failed"
        row.note = _last_line(run.stderr) or f"exit code {run.code}"
        return row
    if peer.external:
        row.items = count_output(peer, w.kind, out)
        row.wall, row.cpu = run.wall, run.cpu
        row.parser = peer.parser
        stats_file = out.with_suffix(".stats.json")
        if stats_file.exists():
            row.details = json.loads(stats_file.read_text())
    else:
        result = _result(run.stdout)
        row.items, row.wall, row.cpu = result.pop("items"), result.pop("wall"), result.pop("cpu")
        row.parser = result.pop("parser", peer.parser)
        row.details = result
    for path in workdir.glob(f"{out.stem}*"):
        path.unlink()
    if row.items != row.expected:
        row.status = "invalid"
        row.note = f"listed {row.items:,} items, expected {row.expected:,}"
    return row


def _result(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            return dict(json.loads(line[len("RESULT ") :]))
    raise RuntimeError("the peer printed no RESULT line")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


# -- the suite -----------------------------------------------------------------


def _pin(core: int) -> int:
    """Pin this process (and so every peer) to ``core``; the number of cores
    the client may use."""
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return os.cpu_count() or 1
    os.sched_setaffinity(0, {core})
    return 1


def _segments(url: str, concurrency: int) -> int:
    """The segment count asyncpager's planner picks for the table; every peer
    that scans in parallel uses the same."""
    from asyncpager.plan.dynamodb import plan_scan

    async def plan() -> int:
        result = await plan_scan(
            TABLE, region=HOME_REGION, endpoint_url=url, concurrency=concurrency
        )
        return result.segments or 1

    return asyncio.run(plan())


def _default_concurrency() -> int:
    from asyncpager import Fetcher

    value = inspect.signature(Fetcher.__init__).parameters["concurrency"].default
    return int(value)


def _scenario_streams(scenario: Scenario, w: Workload, concurrency: int) -> int:
    """Streams asyncpager runs at once in the scenario (the latency term)."""
    if scenario.kind == "s3":
        # Key-range shards split while workers are idle: up to `concurrency`.
        return concurrency
    if scenario.kind == "dynamodb":
        return min(concurrency, w.segments or 1)
    return min(concurrency, len(w.regions))


def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    from asyncpager.testing import Bucket, Ec2Fleet, LatencyModel, Table, Throttle, spawn_endpoint

    # This process plans the scan and captures pages too: same dummy set-up.
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        del os.environ[key]
    os.environ.update({k: v for k, v in clean_env().items() if k.startswith("AWS_")})
    scale: Scale = SCALES[args.scale]
    scenarios = [s for s in scenarios_for(scale) if not args.only or s.id in args.only]
    chosen = [p for p in PEERS if not args.peers or p.id in args.peers]
    peers, missing = available_peers(chosen)
    cores = _pin(CLIENT_CPU)
    concurrency = _default_concurrency()
    with_memory = args.memory and (not args.only or "memory" in args.only)
    started = time.time()
    log = _logger(args.quiet)

    # Objects listed with the checksum S3 adds to new ones, on this share.
    sums = args.checksums
    buckets = [Bucket(ONE_BUCKET, scale.one_bucket_keys, "deep", checksums=sums)]
    if any(s.id == "s3-directory" for s in scenarios):
        buckets.append(Bucket(DIRECTORY_BUCKET, scale.one_bucket_keys, "deep", checksums=sums))
    buckets += [
        Bucket(name, scale.many_bucket_keys, "deep", seed=i, checksums=sums)
        for i, name in enumerate(MANY_BUCKETS)
    ]
    buckets += [
        Bucket(name, keys, "deep", checksums=sums)
        for name, keys in zip(MEMORY_BUCKETS, scale.memory_keys, strict=True)
    ]
    rows: list[Row] = []
    parse: dict[str, ParseCost] = {}
    memory: list[Row] = []
    workdir = Path(tempfile.mkdtemp(prefix="asyncpager-bench-"))
    with spawn_endpoint(
        buckets=buckets,
        tables=[Table(TABLE, scale.table_items, item_shape="mixed")],
        ec2=Ec2Fleet(regions=REGIONS, per_region=scale.instances_per_region),
        cpu=SERVER_CPU if cores == 1 else None,
    ) as endpoint:
        url = endpoint.url
        log(f"endpoint {url}; client pinned to {cores} core(s); scale {scale.name}")
        segments = None
        if any(s.kind == "dynamodb" for s in scenarios):
            segments = _segments(url, concurrency)
        workloads = {
            s.id: dataclasses.replace(
                s.workload, url=url, segments=segments if s.kind == "dynamodb" else None
            )
            for s in scenarios
        }
        costs: dict[Workload, ParseCost] = {}
        for s in scenarios:
            w = workloads[s.id]
            if w not in costs:
                costs[w] = measure_parse_cost(w, url)
            parse[s.id] = cost = costs[w]
            log(
                f"{s.id}: {cost.items_per_page} items/page, parse {cost.botocore_ms:.1f} ms "
                f"(botocore), {_fmt_ms(cost.fast_ms)} (compiled)"
            )
        for s in scenarios:
            w = workloads[s.id]
            for latency_ms in args.latency:
                throttles = []
                if s.throttle_probability:
                    throttles = [
                        Throttle("ec2", "DescribeInstances", probability=s.throttle_probability)
                    ]
                endpoint.configure(
                    latency=[LatencyModel(fixed=latency_ms / 1000)] if latency_ms else [],
                    throttles=throttles,
                )
                for peer in peers:
                    if s.kind not in peer.kinds:
                        continue
                    row = measure(peer, s, w, latency_ms, endpoint, workdir, scale.timeout)
                    rows.append(row)
                    log(_progress_line(row))
        if with_memory:
            endpoint.configure(latency=[], throttles=[])
            peer = next(p for p in PEERS if p.id == "asyncpager")
            memory_scenario = Scenario("memory", "memory", Workload("s3"))
            # A peak is set in the listing's first seconds, when every stream
            # starts at once, and moves by a tenth from one run to the next
            # (1M keys: 95-101 MiB in three runs; 10M: 83-91): each size is
            # run several times, alternately, and compared by its median.
            for round_ in range(args.memory_rounds):
                for name, keys in zip(MEMORY_BUCKETS, scale.memory_keys, strict=True):
                    w = Workload("s3", url=url, buckets=(name,), expected=keys)
                    row = measure(peer, memory_scenario, w, 0, endpoint, workdir, scale.timeout)
                    row.details["round"] = round_ + 1
                    memory.append(row)
                    log(f"memory: {keys:,} keys, round {round_ + 1}: " + _progress_line(row))
        # Measured again at the end, the lower reading kept (see lower_cost).
        endpoint.configure(latency=[], throttles=[])
        for w in list(costs):
            costs[w] = lower_cost(costs[w], measure_parse_cost(w, url))
        for s in scenarios:
            parse[s.id] = costs[workloads[s.id]]
    shutil.rmtree(workdir, ignore_errors=True)
    for row in rows + memory:
        _derive_basics(row)
    by_case: dict[tuple[str, int], list[Row]] = {}
    for row in rows:
        by_case.setdefault((row.scenario, row.latency_ms), []).append(row)
    for (scenario_id, latency_ms), case in by_case.items():
        scenario = next(s for s in scenarios if s.id == scenario_id)
        _derive_case(
            case,
            scenario,
            workloads[scenario_id],
            parse[scenario_id],
            latency_ms,
            concurrency,
            cores,
        )
    return {
        "meta": _meta(args, scale, cores, concurrency, segments, missing, time.time() - started),
        "scenarios": [
            {
                "id": s.id,
                "title": s.title,
                "expected": s.workload.expected,
                "throttle_probability": s.throttle_probability,
                "streams": _scenario_streams(s, workloads[s.id], concurrency),
            }
            for s in scenarios
        ],
        "parse": {k: dataclasses.asdict(v) for k, v in parse.items()},
        "rows": [dataclasses.asdict(r) for r in rows],
        "memory": [dataclasses.asdict(r) for r in memory],
    }


def _fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _derive_basics(row: Row) -> None:
    if row.status == "ok" and row.wall > 0:
        row.items_per_second = row.items / row.wall
        row.cpu_per_million = row.cpu / row.items * 1e6 if row.items else None


def _derive_case(
    case: list[Row],
    scenario: Scenario,
    w: Workload,
    cost: ParseCost,
    latency_ms: int,
    concurrency: int,
    cores: int,
) -> None:
    baseline = next((r for r in case if r.peer == "boto3" and r.status == "ok"), None)
    # The CLI installs what the library does: take the library's answer, from
    # the run just before it.
    library = next((r.parser for r in case if r.peer == "asyncpager" and r.status == "ok"), None)
    requests = sum(r.requests for r in case)
    server_cpu = sum(r.server_cpu for r in case)
    per_request = server_cpu / requests if requests else None
    for row in case:
        if baseline is not None and row.status == "ok" and baseline.items_per_second:
            row.ratio_to_baseline = row.items_per_second / baseline.items_per_second
        parser = row.parser
        if parser == "asyncpager":
            parser = library or "fast"
        result = ceiling(
            streams=_scenario_streams(scenario, w, concurrency),
            latency_s=latency_ms / 1000,
            throttle_probability=scenario.throttle_probability,
            items_per_page=cost.items_per_page,
            server_cpu_per_request=per_request,
            configured_rate=None,
            parse_ms=cost.ms(parser),
            cores=cores,
        )
        if math.isfinite(result.items_per_second):
            row.ceiling = result.items_per_second
            row.ceiling_limit = result.limit
            row.ceiling_terms = result.terms
            if row.status == "ok":
                row.percent_of_ceiling = 100 * row.items_per_second / result.items_per_second


def _meta(
    args: argparse.Namespace,
    scale: Scale,
    cores: int,
    concurrency: int,
    segments: int | None,
    missing: dict[str, str],
    seconds: float,
) -> dict[str, Any]:
    versions: dict[str, str] = {}
    for module in ("asyncpager", "boto3", "botocore", "aiobotocore", "aws_dynamodb_parallel_scan"):
        try:
            from importlib.metadata import version

            versions[module] = version(module.replace("_", "-"))
        except Exception:
            versions[module] = "not installed"
    if _aws_cli():
        versions["aws-cli"] = _version([str(_aws_cli()), "--version"])
    if shutil.which("rclone"):
        versions["rclone"] = _version(["rclone", "version"])
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
        "scale": dataclasses.asdict(scale),
        "latencies_ms": list(args.latency),
        "s3_checksums": args.checksums,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "client_cores": cores,
        "client_pinned": cores == 1,
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "asyncpager_concurrency": concurrency,
        "dynamodb_segments": segments,
        "missing_peers": missing,
        "versions": versions,
        "seconds": round(seconds, 1),
        "parent_max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _progress_line(row: Row) -> str:
    rate = f"{row.items / row.wall:,.0f} items/s" if row.status == "ok" and row.wall else ""
    return (
        f"  {row.scenario:14} {row.latency_ms:>4} ms  {row.peer:22} {row.status:8} "
        f"{row.wall:7.2f} s  {rate:>16}  {row.peak_rss_mib:6.0f} MiB  {row.note[:120]}"
    )


def _logger(quiet: bool) -> Any:
    def log(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr, flush=True)

    return log


# -- command line --------------------------------------------------------------


def _latencies(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected milliseconds like 0,20,50: {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("latencies are milliseconds >= 0")
    return values


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    scenario_ids = [s.id for s in scenarios_for(SCALES["small"])] + ["memory"]
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="asyncpager against boto3 and its peers, side by side, on a local endpoint.",
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument(
        "--latency", type=_latencies, default=[0, 20, 50, 100], help="ms per request, e.g. 0,50"
    )
    parser.add_argument(
        "--only", type=_names, default=[], help="scenarios: " + ", ".join(scenario_ids)
    )
    parser.add_argument(
        "--peers", type=_names, default=[], help="peers: " + ", ".join(p.id for p in PEERS)
    )
    parser.add_argument(
        "--no-memory", dest="memory", action="store_false", help="skip the memory runs"
    )
    parser.add_argument(
        "--memory-rounds",
        type=_int_at_least(1),
        default=3,
        help="runs of each memory size, alternately (default: 3)",
    )
    parser.add_argument("--output-dir", type=Path, default=HERE / "results")
    parser.add_argument(
        "--update-readme", action="store_true", help="put the table into benchmarks/README.md"
    )
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="only rewrite the reports from a results file"
    )
    parser.add_argument(
        "--checksums",
        type=checksum_share,
        default=0.0,
        help="the share of S3 objects listed with the checksum S3 adds to new ones (0 to 1)",
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    unknown = [s for s in args.only if s not in scenario_ids]
    unknown += [p for p in args.peers if p not in {peer.id for peer in PEERS}]
    if unknown:
        parser.error(f"unknown scenario or peer: {', '.join(unknown)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks import compile_asyncpager
    from benchmarks.report import update_readme, write_results

    args = parse_args(argv)
    if args.render is not None:
        results = json.loads(args.render.read_text(encoding="utf-8"))
    else:
        compile_asyncpager()
        results = run_suite(args)
    paths = write_results(results, args.output_dir)
    for path in paths:
        print(path)
    if args.update_readme:
        update_readme(results, HERE / "README.md")
    return 0
