"""``python -m asyncpager.testing``: the local AWS endpoint as a process.

Prints the URL on its first line of stdout, then serves until interrupted::

    python -m asyncpager.testing --port 0 --bucket logs:1000000:deep \\
        --table events:50000:mixed --ec2 us-east-1,eu-west-1:500 --iam 300 \\
        --latency 0.02:0.01 --throttle s3:ListObjectsV2:100:100 --fault reset:0.01

    aws --endpoint-url http://127.0.0.1:PORT s3 ls s3://logs/ --recursive
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast, get_args

from asyncpager.testing._server import App, HttpServer
from asyncpager.testing._specs import (
    Bucket,
    Ec2Fleet,
    EndpointConfig,
    Fault,
    FaultKind,
    IamUsers,
    ItemShape,
    KeyShape,
    LatencyModel,
    Table,
    Throttle,
)

T = TypeVar("T")


def _spec(parse: Callable[[str], T], what: str, form: str) -> Callable[[str], T]:
    """``parse`` with its errors said as one line: argparse shows a bare
    ValueError as ``invalid _bucket value``, without the reason."""

    def wrapped(text: str) -> T:
        try:
            return parse(text)
        except argparse.ArgumentTypeError:
            raise
        except (ValueError, TypeError) as exc:
            reason = f"expected {form}" if "values to unpack" in str(exc) else str(exc)
            raise argparse.ArgumentTypeError(f"{what} {text!r}: {reason}") from None

    return wrapped


def _bucket(text: str) -> Bucket:
    name, count, *rest = text.split(":")
    shape = rest[0] if rest else "flat"
    if shape not in get_args(KeyShape):
        raise argparse.ArgumentTypeError(f"unknown shape {shape!r}")
    seed = int(rest[1]) if len(rest) > 1 else 0
    checksums = float(rest[2]) if len(rest) > 2 else 0.0
    return Bucket(name, int(count), cast(KeyShape, shape), seed, checksums=checksums)


def _table(text: str) -> Table:
    name, count, *rest = text.split(":")
    shape = rest[0] if rest else "mixed"
    if shape not in get_args(ItemShape):
        raise argparse.ArgumentTypeError(f"unknown item shape {shape!r}")
    seed = int(rest[1]) if len(rest) > 1 else 0
    return Table(name, int(count), seed, cast(ItemShape, shape))


def _ec2(text: str) -> Ec2Fleet:
    regions, count = text.rsplit(":", 1)
    return Ec2Fleet(tuple(regions.split(",")), int(count))


def _latency(text: str) -> LatencyModel:
    fixed, _, jitter = text.partition(":")
    return LatencyModel(float(fixed), float(jitter or 0))


def _throttle(text: str) -> Throttle:
    parts = text.split(":")
    if len(parts) < 2:
        raise argparse.ArgumentTypeError("expected SERVICE[:OPERATION]:RATE[:BURST]")
    service = parts[0]
    if len(parts) >= 3 and not _is_number(parts[1]):
        operation: str | None = parts[1]
        numbers = parts[2:]
    else:
        operation, numbers = None, parts[1:]
    burst = float(numbers[1]) if len(numbers) > 1 else None
    return Throttle(service=service, operation=operation, rate=float(numbers[0]), burst=burst)


def _fault(text: str) -> Fault:
    kind, _, rest = text.partition(":")
    probability, _, service = rest.partition(":")
    if kind not in get_args(FaultKind):
        raise argparse.ArgumentTypeError(f"unknown fault {kind!r}")
    return Fault(cast(FaultKind, kind), service=service or None, probability=float(probability))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_args(
    argv: Sequence[str] | None = None, prog: str = "python -m asyncpager.testing"
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="A local AWS endpoint (S3, DynamoDB, EC2, IAM) serving generated data.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--bucket",
        type=_spec(_bucket, "bucket", "NAME:COUNT[:SHAPE[:SEED[:CHECKSUMS]]]"),
        action="append",
        default=[],
        metavar="NAME:COUNT[:SHAPE[:SEED[:CHECKSUMS]]]",
        help=(
            "SHAPE: flat, deep, hot, unicode or hive; CHECKSUMS: the share of objects "
            "listed with the checksum S3 adds to new objects (0 to 1, default 0)"
        ),
    )
    parser.add_argument(
        "--table",
        type=_spec(_table, "table", "NAME:COUNT[:SHAPE[:SEED]]"),
        action="append",
        default=[],
        metavar="NAME:COUNT[:SHAPE[:SEED]]",
        help="SHAPE: small, mixed or large",
    )
    parser.add_argument(
        "--ec2",
        type=_spec(_ec2, "fleet", "REGION[,REGION...]:PER_REGION"),
        metavar="REGION[,REGION...]:PER_REGION",
    )
    parser.add_argument("--iam", type=int, metavar="USERS")
    parser.add_argument(
        "--latency",
        type=_spec(_latency, "latency", "FIXED[:JITTER]"),
        action="append",
        default=[],
        metavar="FIXED[:JITTER]",
        help="seconds",
    )
    parser.add_argument(
        "--throttle",
        type=_spec(_throttle, "throttle", "SERVICE[:OPERATION]:RATE[:BURST]"),
        action="append",
        default=[],
        metavar="SERVICE[:OPERATION]:RATE[:BURST]",
    )
    parser.add_argument(
        "--fault",
        type=_spec(_fault, "fault", "KIND:PROBABILITY[:SERVICE]"),
        action="append",
        default=[],
        metavar="KIND:PROBABILITY[:SERVICE]",
        help="KIND: " + ", ".join(get_args(FaultKind)),
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-mb", type=int, default=64)
    parser.add_argument(
        "--chunked",
        action="store_true",
        help="answer with Transfer-Encoding: chunked, as S3 sends its listings",
    )
    parser.add_argument("--config", help="a JSON EndpointConfig (overrides the data options)")
    parser.add_argument("--cpu", type=int, help="pin the server to this CPU")
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> EndpointConfig:
    if args.config:
        with open(args.config, encoding="utf-8") as handle:
            data: dict[str, Any] = json.load(handle)
        return EndpointConfig.from_json(data)
    return EndpointConfig(
        buckets=tuple(args.bucket),
        tables=tuple(args.table),
        ec2=args.ec2,
        iam=IamUsers(args.iam) if args.iam is not None else None,
        latency=tuple(args.latency),
        throttles=tuple(args.throttle),
        faults=tuple(args.fault),
        seed=args.seed,
        cache_bytes=args.cache_mb << 20,
        chunked=args.chunked,
    )


async def serve(config: EndpointConfig, host: str, port: int, watch_stdin: bool) -> None:
    loop = asyncio.get_running_loop()
    server = HttpServer(App(config, loop.time))
    await server.start(host, port)
    print(server.url, flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if watch_stdin:
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        async def watch() -> None:
            while await reader.read(4096):
                pass
            stop.set()

        watcher = asyncio.ensure_future(watch())
    try:
        await stop.wait()
    finally:
        if watch_stdin:
            watcher.cancel()
        await server.close()


def _keep_pages_off_mmap() -> None:
    """Stop glibc from mapping and unmapping memory for every large answer.

    A 200 KB page is above malloc's mmap threshold, and trimming hands freed
    heap back to the kernel, so each answer would page-fault its buffers in
    again: that doubled the server's CPU per page. This process exists only to
    serve, so it keeps that memory instead.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None, prog: str = "python -m asyncpager.testing") -> int:
    """Serve until interrupted; ``prog`` is the command the usage names."""
    args = parse_args(argv, prog)
    try:
        config = build_config(args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _keep_pages_off_mmap()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    runner: Any = asyncio.run
    if not args.no_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            runner = uvloop.run
    runner(serve(config, args.host, args.port, args.exit_on_stdin_eof))
    return 0


if __name__ == "__main__":
    sys.exit(main())
