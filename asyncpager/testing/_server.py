"""The HTTP/1.1 server: a bare ``asyncio.Protocol`` with keep-alive.

A framework costs more per request than the answers themselves, so requests
are parsed by hand (request line, headers, Content-Length body) and answers
written with one ``writelines`` (one ``write`` without a body). One request
is served at a time per connection, as botocore never pipelines; a
pipelined request simply waits.

Which service a request is for comes from the SigV4 credential scope in its
Authorization header (``Credential=AKID/20260101/eu-west-1/ec2/aws4_request``),
falling back to ``X-Amz-Target`` (DynamoDB), the HTTP method and path (S3) or
the ``Action`` (EC2, IAM). Signatures are never checked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import socket
import struct
import time
import zlib
from collections.abc import Callable
from ssl import SSLContext
from typing import Any, Protocol, cast

from asyncpager.testing._dynamodb import DynamoDBService
from asyncpager.testing._policy import EndpointStats, Policies, StatsRecorder
from asyncpager.testing._query import Ec2Service, IamService, form_params
from asyncpager.testing._s3 import S3Service
from asyncpager.testing._specs import EndpointConfig, Fault, FaultKind
from asyncpager.testing._wire import Call, PageCache, Reply, Request

__all__ = ["App", "HttpServer"]

ADMIN_PREFIX = "/__asyncpager/"
_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 << 20
_REASONS = {
    200: b"OK",
    204: b"No Content",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    413: b"Payload Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    503: b"Service Unavailable",
}
_EC2_ACTIONS = {"DescribeInstances", "DescribeRegions"}
_LINGER_RESET = struct.pack("ii", 1, 0)


class _Service(Protocol):
    name: str

    def parse(self, request: Request, region: str) -> Call: ...
    def handle(self, call: Call) -> Reply: ...
    def throttle_reply(self, call: Call, code: str) -> Reply: ...
    def internal_error(self, call: Call) -> Reply: ...


@dataclasses.dataclass(slots=True)
class Plan:
    """What to send, when, and how to break it."""

    reply: Reply
    request_id_headers: tuple[tuple[bytes, bytes], ...]
    delay: float = 0.0
    fault: FaultKind | None = None
    fault_seconds: float = 0.0


def _credential_scope(request: Request) -> tuple[str | None, str | None]:
    auth = request.headers.get(b"authorization")
    scope = None
    if auth is not None:
        start = auth.find(b"Credential=")
        if start >= 0:
            end = auth.find(b",", start)
            scope = auth[start + 11 : end if end >= 0 else len(auth)].decode("latin-1")
    elif "X-Amz-Credential=" in request.target:
        query = request.query
        start = query.find("X-Amz-Credential=") + 17
        end = query.find("&", start)
        scope = query[start : end if end >= 0 else len(query)].replace("%2F", "/")
    if scope is None:
        return None, None
    parts = scope.strip().split("/")
    if len(parts) < 5:
        return None, None
    return parts[-2], parts[-3]


class App:
    """Request in, :class:`Plan` out; holds the data sets, policies and counters."""

    def __init__(self, config: EndpointConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.clock = clock
        self.cache = PageCache(config.cache_bytes)
        self.services: dict[str, _Service] = {
            "s3": S3Service(config.buckets, self.cache),
            "dynamodb": DynamoDBService(config.tables, self.cache),
            "ec2": Ec2Service(config.ec2, self.cache),
            "iam": IamService(config.iam, self.cache),
        }
        self.policies = Policies(config, clock)
        self.stats = StatsRecorder()
        self._ids = itertools.count(1)

    def configure(self, **changes: Any) -> None:
        """Swap latency, throttles and/or faults; their state starts afresh."""
        self.config = dataclasses.replace(self.config, **changes)
        self.policies = Policies(self.config, self.clock)

    def snapshot(self) -> EndpointStats:
        return self.stats.snapshot(self.cache.hits)

    def reset_stats(self) -> None:
        with self.stats.lock:
            self.stats.reset()
            self.stats.cache_base = self.cache.hits

    def _service_of(self, request: Request) -> tuple[str, str]:
        service, region = _credential_scope(request)
        region = region or "us-east-1"
        if service in self.services:
            return service, region
        if b"x-amz-target" in request.headers:
            return "dynamodb", region
        if request.method != "POST" or request.path != "/":
            return "s3", region
        action = form_params(request).get("Action", "")
        return ("ec2" if action in _EC2_ACTIONS or action.startswith("Describe") else "iam"), region

    def answer(self, request: Request) -> Plan:
        if request.target.startswith(ADMIN_PREFIX):
            return Plan(self._admin(request), ())
        name, region = self._service_of(request)
        service = self.services[name]
        call = service.parse(request, region)
        n = next(self._ids)
        if name == "s3":
            call.request_id = f"{n:016X}"
            ids: tuple[tuple[bytes, bytes], ...] = (
                (b"x-amz-request-id", call.request_id.encode()),
                (b"x-amz-id-2", f"{n:032x}=".encode()),
            )
        else:
            call.request_id = f"3b8c6a2e-0000-4000-8000-{n:012x}"
            ids = ((b"x-amzn-RequestId", call.request_id.encode()),)
        key = (name, call.operation)
        policies = self.policies
        stats = self.stats
        code = policies.throttle(name, call.operation)
        fault: Fault | None = None
        if code is not None:
            reply = service.throttle_reply(call, code)
        else:
            fault = policies.fault(name, call.operation, call.has_token)
            if fault is not None and fault.kind == "internal_error":
                reply = service.internal_error(call)
            else:
                call.repeat_token = fault is not None and fault.kind == "repeat_token"
                reply = service.handle(call)
        with stats.lock:
            stats.requests[key] += 1
            if code is not None:
                stats.throttled[key] += 1
            elif fault is not None:
                stats.faults[(name, call.operation, fault.kind)] += 1
            elif reply.status >= 400:
                stats.errors[(name, call.operation, reply.status)] += 1
        if request.method == "HEAD":
            reply.head_only = True
        delay = policies.delay(name, call.operation, len(reply.body))
        if fault is None:
            return Plan(reply, ids, delay)
        return Plan(reply, ids, delay, fault.kind, fault.seconds)

    def _admin(self, request: Request) -> Reply:
        command = request.path[len(ADMIN_PREFIX) :]
        if command == "stats" and request.method == "GET":
            return _json_reply(self.snapshot().to_json())
        if command == "config" and request.method == "GET":
            return _json_reply(self.config.to_json())
        if command == "reset" and request.method == "POST":
            self.reset_stats()
            return _json_reply({"ok": True})
        if command == "configure" and request.method == "POST":
            try:
                data = json.loads(request.body or b"{}")
                changes = EndpointConfig.from_json(
                    {**self.config.to_json(), **data}
                )  # validates like the constructor does
            except (ValueError, TypeError) as exc:
                return _json_reply({"error": str(exc)}, 400)
            self.configure(
                latency=changes.latency, throttles=changes.throttles, faults=changes.faults
            )
            return _json_reply({"ok": True})
        return _json_reply({"error": f"unknown admin command {command!r}"}, 404)


def _json_reply(value: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(value).encode(), b"application/json")


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Connection(asyncio.Protocol):
    """One client connection: parse, answer, repeat while kept alive."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.closed = False
        self.timers: list[asyncio.TimerHandle] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports quack like asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.server.connections.add(self)
        stats = self.server.app.stats
        with stats.lock:
            stats.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()
        self.server.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self.pump()

    def pump(self) -> None:
        while not self.busy and not self.closed:
            try:
                parsed = self._parse()
            except _BadRequest as exc:
                self._refuse(exc.status, str(exc))
                return
            if parsed is None:
                return
            request, keep_alive = parsed
            self.busy = True
            self.server.serve(self, request, keep_alive)

    def _parse(self) -> tuple[Request, bool] | None:
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > _MAX_HEAD:
                raise _BadRequest(400, "request head too large")
            return None
        lines = bytes(buffer[:end]).split(b"\r\n")
        try:
            method, target, version = lines[0].decode("latin-1").split(" ")
        except ValueError:
            raise _BadRequest(400, "malformed request line") from None
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"transfer-encoding" in headers:
            raise _BadRequest(501, "chunked request bodies are not supported")
        try:
            length = int(headers.get(b"content-length", b"0"))
        except ValueError:
            raise _BadRequest(400, "bad Content-Length") from None
        if length > _MAX_BODY:
            raise _BadRequest(413, "request body too large")
        total = end + 4 + length
        if len(buffer) < total:
            return None
        body = bytes(buffer[end + 4 : total])
        del buffer[:total]
        connection = headers.get(b"connection", b"").lower()
        if version == "HTTP/1.1":
            keep_alive = connection != b"close"
        else:
            keep_alive = connection == b"keep-alive"
        return Request(method, target, headers, body), keep_alive

    def _refuse(self, status: int, message: str) -> None:
        body = message.encode()
        head = b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" % (
            status,
            _REASONS.get(status, b"Error"),
            len(body),
        )
        assert self.transport is not None
        self.transport.write(head + b"Connection: close\r\n\r\n" + body)
        self.transport.close()
        self.closed = True

    def later(self, delay: float, callback: Callable[[], None]) -> None:
        loop = self.server.loop
        self.timers = [t for t in self.timers if not t.cancelled()]
        self.timers.append(loop.call_later(delay, callback))

    def done(self, keep_alive: bool, deferred: bool) -> None:
        if self.closed or self.transport is None:
            return
        if not keep_alive:
            self.transport.close()
            self.closed = True
            return
        self.busy = False
        if deferred and self.buffer:
            self.pump()


class HttpServer:
    """An :class:`App` behind an asyncio server on one event loop."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.connections: set[_Connection] = set()
        self.loop: asyncio.AbstractEventLoop = asyncio.get_running_loop()
        self._server: asyncio.Server | None = None
        self.host = ""
        self.port = 0
        self.scheme = "http"

    async def start(self, host: str, port: int, ssl: SSLContext | None = None) -> None:
        self._server = await self.loop.create_server(
            lambda: _Connection(self), host, port, reuse_address=True, backlog=1024, ssl=ssl
        )
        sockname = self._server.sockets[0].getsockname()
        self.host, self.port = str(sockname[0]), int(sockname[1])
        self.scheme = "https" if ssl is not None else "http"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        # A connection accepted just before the server closed is made on a
        # later turn of the loop (asyncio's accept is a task), after the
        # aborts below: it could still be open when the loop closed, to be
        # collected later as an unclosed transport. A few turns let such
        # connections be made, and each is aborted in turn.
        for _ in range(3):
            for conn in list(self.connections):
                if conn.transport is not None and not conn.transport.is_closing():
                    conn.transport.abort()
            await asyncio.sleep(0)
        if self._server is not None:
            await self._server.wait_closed()

    # -- answering ---------------------------------------------------------

    def serve(self, conn: _Connection, request: Request, keep_alive: bool) -> None:
        started = time.thread_time()
        plan = self.app.answer(request)
        if plan.delay > 0:
            conn.later(plan.delay, lambda: self._send(conn, plan, keep_alive, True))
            self._spent(started, 0)
        else:
            self._spent(started, 0)
            self._send(conn, plan, keep_alive, False)

    def _spent(self, started: float, sent: int) -> None:
        stats = self.app.stats
        with stats.lock:
            stats.cpu_seconds += time.thread_time() - started
            stats.bytes_sent += sent

    def _send(self, conn: _Connection, plan: Plan, keep_alive: bool, deferred: bool) -> None:
        transport = conn.transport
        # Closing (the client went away while the answer waited): in Python
        # 3.12.1 and 3.13.0 writelines on a closed transport raises TypeError.
        if conn.closed or transport is None or transport.is_closing():
            return
        started = time.thread_time()
        reply = plan.reply
        if plan.fault == "reset":
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            transport.abort()
            conn.closed = True
            self._spent(started, 0)
            return
        body = b"" if reply.head_only else reply.body
        chunked = self.app.config.chunked and bool(body) and plan.fault is None
        framing = (
            b"Transfer-Encoding: chunked\r\n"
            if chunked
            else b"Content-Length: %d\r\n" % len(reply.body)
        )
        head = [
            b"HTTP/1.1 %d %s\r\n" % (reply.status, _REASONS.get(reply.status, b"Unknown")),
            b"Content-Type: %s\r\n%s" % (reply.content_type, framing),
        ]
        head += [b"%s: %s\r\n" % pair for pair in plan.request_id_headers]
        head += [b"%s: %s\r\n" % pair for pair in reply.headers]
        head.append(b"\r\n" if keep_alive else b"Connection: close\r\n\r\n")
        head_bytes = b"".join(head)
        if plan.fault == "cut_body":
            if reply.content_type == b"application/x-amz-json-1.0":
                # DynamoDB checksums every body; botocore can only spot the cut with it.
                crc = b"x-amz-crc32: %d\r\n" % zlib.crc32(body)
                head_bytes = head_bytes[:-2] + crc + b"\r\n"
            transport.write(head_bytes + body[: len(body) // 2])
            transport.close()
            conn.closed = True
            self._spent(started, len(head_bytes) + len(body) // 2)
            return
        if plan.fault == "slow_body" and body:
            self._dribble(conn, head_bytes, body, plan.fault_seconds, keep_alive)
            self._spent(started, len(head_bytes))
            return
        if chunked:
            body = _chunks(body)
        if body:
            transport.writelines((head_bytes, body))
        else:
            # writelines with an empty part (a HEAD answer's body) leaves
            # it queued for good in Python 3.12.1 and 3.13.0: the transport
            # never drains, and a connection the client closes stays open.
            transport.write(head_bytes)
        self._spent(started, len(head_bytes) + len(body))
        conn.done(keep_alive, deferred)

    def _dribble(
        self, conn: _Connection, head: bytes, body: bytes, seconds: float, keep_alive: bool
    ) -> None:
        pieces = 10
        size = -(-len(body) // pieces)
        chunks = [body[k : k + size] for k in range(0, len(body), size)]
        assert conn.transport is not None
        conn.transport.write(head)
        step = seconds / len(chunks)

        def send(index: int) -> None:
            if conn.closed or conn.transport is None:
                return
            conn.transport.write(chunks[index])
            self._spent(time.thread_time(), len(chunks[index]))
            if index + 1 < len(chunks):
                conn.later(step, lambda: send(index + 1))
            else:
                conn.done(keep_alive, True)

        conn.later(step, lambda: send(0))


#: The size of the chunks of a chunked answer.
CHUNK = 16 * 1024


def _chunks(body: bytes) -> bytes:
    """``body`` framed as ``Transfer-Encoding: chunked``."""
    pieces = (body[k : k + CHUNK] for k in range(0, len(body), CHUNK))
    out = [b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces]
    out.append(b"0\r\n\r\n")
    return b"".join(out)
