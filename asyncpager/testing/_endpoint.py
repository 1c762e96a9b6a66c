"""Running the endpoint: in a background thread, or in a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from ssl import SSLContext
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread

from asyncpager.testing._policy import EndpointStats
from asyncpager.testing._server import ADMIN_PREFIX, App, HttpServer
from asyncpager.testing._specs import (
    Bucket,
    Ec2Fleet,
    EndpointConfig,
    Fault,
    IamUsers,
    LatencyModel,
    Table,
    Throttle,
)

__all__ = ["LocalEndpoint", "SpawnedEndpoint", "spawn_endpoint"]


def _config(
    config: EndpointConfig | None,
    buckets: Sequence[Bucket],
    tables: Sequence[Table],
    ec2: Ec2Fleet | None,
    iam: IamUsers | None,
    latency: LatencyModel | Sequence[LatencyModel],
    throttles: Sequence[Throttle],
    faults: Sequence[Fault],
    seed: int,
    cache_bytes: int,
    chunked: bool = False,
) -> EndpointConfig:
    if config is not None:
        return config
    models = (latency,) if isinstance(latency, LatencyModel) else tuple(latency)
    return EndpointConfig(
        buckets=tuple(buckets),
        tables=tuple(tables),
        ec2=ec2,
        iam=iam,
        latency=models,
        throttles=tuple(throttles),
        faults=tuple(faults),
        seed=seed,
        cache_bytes=cache_bytes,
        chunked=chunked,
    )


def _policy_changes(
    latency: LatencyModel | Sequence[LatencyModel] | None,
    throttles: Sequence[Throttle] | None,
    faults: Sequence[Fault] | None,
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if latency is not None:
        changes["latency"] = (latency,) if isinstance(latency, LatencyModel) else tuple(latency)
    if throttles is not None:
        changes["throttles"] = tuple(throttles)
    if faults is not None:
        changes["faults"] = tuple(faults)
    return changes


class LocalEndpoint:
    """A local AWS endpoint serving generated data, in a background thread.

    ::

        with LocalEndpoint(buckets=[Bucket("logs", 1_000_000, "deep")]) as ep:
            s3 = boto3.client("s3", endpoint_url=ep.url, region_name="us-east-1")
            ...
            assert ep.stats().count("s3", "ListObjectsV2") == 1000

    The server runs its own event loop in a daemon thread, so it works the same
    under synchronous boto3 code and under any async framework (``async with``
    starts it without blocking the caller's loop). It shares the GIL with the
    caller, though: to measure a client, use :func:`spawn_endpoint`, which puts
    the server in another process.
    """

    def __init__(
        self,
        *,
        buckets: Sequence[Bucket] = (),
        tables: Sequence[Table] = (),
        ec2: Ec2Fleet | None = None,
        iam: IamUsers | None = None,
        latency: LatencyModel | Sequence[LatencyModel] = (),
        throttles: Sequence[Throttle] = (),
        faults: Sequence[Fault] = (),
        seed: int = 0,
        cache_bytes: int = 64 << 20,
        host: str = "127.0.0.1",
        port: int = 0,
        config: EndpointConfig | None = None,
        chunked: bool = False,
        ssl: SSLContext | None = None,
    ) -> None:
        self.config = _config(
            config,
            buckets,
            tables,
            ec2,
            iam,
            latency,
            throttles,
            faults,
            seed,
            cache_bytes,
            chunked,
        )
        self._host, self._port = host, port
        self._ssl = ssl
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: HttpServer | None = None
        self._stop: asyncio.Event | None = None
        self._app: App | None = None
        self.url = ""
        """``http://127.0.0.1:PORT`` once started (``https://`` when given an
        ``ssl`` server context): pass it as ``endpoint_url``."""

    @property
    def port(self) -> int:
        return self._server.port if self._server is not None else 0

    def start(self) -> LocalEndpoint:
        """Start serving; returns once the port is bound (or raises why not)."""
        if self._thread is not None:
            raise RuntimeError("this endpoint is already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._app = App(self.config, self._loop.time)
            server = HttpServer(self._app)
            try:
                await server.start(self._host, self._port, ssl=self._ssl)
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                raise
            self._server = server
            self.url = server.url
            ready.set()
            try:
                await self._stop.wait()
            finally:
                await server.close()

        def run() -> None:
            with contextlib.suppress(BaseException):
                asyncio.run(main())
            ready.set()

        self._thread = threading.Thread(target=run, name="asyncpager-endpoint", daemon=True)
        self._thread.start()
        ready.wait()
        if failure or self._server is None:
            self._thread.join()
            self._thread = None
            raise failure[0] if failure else RuntimeError("the endpoint did not start")
        return self

    def stop(self) -> None:
        """Stop serving and close every connection; idempotent."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        self._thread = None
        self._server = None

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> LocalEndpoint:
        return await anyio.to_thread.run_sync(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.stop)

    def _running_app(self) -> App:
        if self._app is None or self._thread is None:
            raise RuntimeError("the endpoint is not running")
        return self._app

    def stats(self) -> EndpointStats:
        """A snapshot of the counters (requests, throttles, faults, ...)."""
        return self._running_app().snapshot()

    def reset_stats(self) -> None:
        self._running_app().reset_stats()

    def configure(
        self,
        *,
        latency: LatencyModel | Sequence[LatencyModel] | None = None,
        throttles: Sequence[Throttle] | None = None,
        faults: Sequence[Fault] | None = None,
    ) -> None:
        """Replace latency, throttles and/or faults while running (fresh trigger counts)."""
        app = self._running_app()
        changes = _policy_changes(latency, throttles, faults)
        done = threading.Event()

        def apply() -> None:
            app.configure(**changes)
            done.set()

        assert self._loop is not None
        self._loop.call_soon_threadsafe(apply)
        done.wait(10)
        self.config = app.config


class SpawnedEndpoint:
    """A handle on an endpoint running in a subprocess (see :func:`spawn_endpoint`)."""

    def __init__(self, url: str, process: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.process = process
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80

    @property
    def pid(self) -> int:
        return self.process.pid

    def _admin(self, method: str, command: str, body: Any = None) -> Any:
        conn = http.client.HTTPConnection(self._host, self._port, timeout=30)
        try:
            payload = None if body is None else json.dumps(body).encode()
            conn.request(method, ADMIN_PREFIX + command, body=payload)
            answer = conn.getresponse()
            data = json.loads(answer.read())
            if answer.status != 200:
                raise ValueError(data.get("error", f"admin {command} failed"))
            return data
        finally:
            conn.close()

    def stats(self) -> EndpointStats:
        return EndpointStats.from_json(self._admin("GET", "stats"))

    def reset_stats(self) -> None:
        self._admin("POST", "reset")

    def configure(
        self,
        *,
        latency: LatencyModel | Sequence[LatencyModel] | None = None,
        throttles: Sequence[Throttle] | None = None,
        faults: Sequence[Fault] | None = None,
    ) -> None:
        changes = _policy_changes(latency, throttles, faults)
        self._admin(
            "POST",
            "configure",
            {k: [dataclasses.asdict(rule) for rule in v] for k, v in changes.items()},
        )


@contextlib.contextmanager
def spawn_endpoint(
    *,
    buckets: Sequence[Bucket] = (),
    tables: Sequence[Table] = (),
    ec2: Ec2Fleet | None = None,
    iam: IamUsers | None = None,
    latency: LatencyModel | Sequence[LatencyModel] = (),
    throttles: Sequence[Throttle] = (),
    faults: Sequence[Fault] = (),
    seed: int = 0,
    cache_bytes: int = 64 << 20,
    host: str = "127.0.0.1",
    port: int = 0,
    config: EndpointConfig | None = None,
    cpu: int | None = None,
    use_uvloop: bool = True,
    startup_timeout: float = 30.0,
) -> Iterator[SpawnedEndpoint]:
    """Run the endpoint in a subprocess for as long as the ``with`` block.

    The server then has its own interpreter (and GIL), and with ``cpu`` its own
    core, so a benchmark measures the client rather than the server. The child
    exits when this process closes its stdin, so it cannot outlive a crashed
    parent.
    """
    cfg = _config(config, buckets, tables, ec2, iam, latency, throttles, faults, seed, cache_bytes)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(cfg.to_json(), handle)
        path = handle.name
    command = [
        sys.executable,
        "-m",
        "asyncpager.testing",
        "--config",
        path,
        "--host",
        host,
        "--port",
        str(port),
        "--exit-on-stdin-eof",
    ]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    if not use_uvloop:
        command.append("--no-uvloop")
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        url = _first_line(process, startup_timeout)
        yield SpawnedEndpoint(url, process)
    finally:
        _shutdown(process)
        with contextlib.suppress(OSError):
            os.unlink(path)


def _first_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    assert process.stdout is not None
    line: list[bytes] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    text = line[0].decode().strip() if line else ""
    if not text.startswith("http://"):
        code = process.poll()
        raise RuntimeError(
            f"the endpoint subprocess did not start (exit code {code}, first line {text!r})"
        )
    return text


def _shutdown(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    deadline = time.monotonic() + 5
    for escalate in (None, process.terminate, process.kill):
        if escalate is not None:
            escalate()
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
            break
        except subprocess.TimeoutExpired:
            deadline = time.monotonic() + 5
    if process.stdout is not None:
        process.stdout.close()
