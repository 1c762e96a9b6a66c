"""LeanHTTPSession against real servers on 127.0.0.1: the same pages as
aiohttp's session (moto, the local endpoint, plain and chunked, HTTP and
HTTPS), botocore's own exceptions for broken connections, reuse and its
limits, and a request cancelled mid-answer."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import http.client
import ipaddress
import ssl
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.httpsession import AIOHTTPSession
from aiobotocore.session import AioSession
from botocore.exceptions import (
    ConnectionClosedError,
    ProxyConnectionError,
    ReadTimeoutError,
    SSLError,
)

from asyncpager import Fetcher, LeanHTTPSession, plan_s3
from asyncpager._http import lean_config
from asyncpager.testing import Bucket, Ec2Fleet, Fault, LatencyModel, LocalEndpoint, Table

pytestmark = pytest.mark.anyio

NO_RETRIES = {"total_max_attempts": 1, "mode": "standard"}


@pytest.fixture
async def make_client() -> AsyncIterator[Any]:
    """``make(service, url, lean=True, **config)``: an aiobotocore client
    sending through LeanHTTPSession (or aiohttp's session), closed after."""
    session = AioSession()
    async with contextlib.AsyncExitStack() as stack:

        async def make(service: str, url: str, lean: bool = True, **options: Any) -> Any:
            options.setdefault("retries", NO_RETRIES)
            if lean:
                options["http_session_cls"] = LeanHTTPSession
            verify = options.pop("verify", None)
            return await stack.enter_async_context(
                session.create_client(
                    service,
                    region_name="us-east-1",
                    endpoint_url=url,
                    config=AioConfig(**options),
                    verify=verify,
                )
            )

        yield make


def _page(response: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def _lean_sent(client: Any) -> int:
    """Requests the client's lean path answered."""
    http = client._endpoint.http_session
    assert isinstance(http, LeanHTTPSession)
    return http.lean_requests


def _idle(client: Any) -> int:
    """Connections the client's lean path holds open for the next request."""
    http = client._endpoint.http_session
    return sum(len(pool) for pool in http._pools.values())


async def _all_keys(client: Any, bucket: str) -> list[str]:
    keys: list[str] = []
    paginator = client.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, PaginationConfig={"PageSize": 250}):
        keys += [o["Key"] for o in page.get("Contents") or ()]
    return keys


async def test_same_pages_as_aiohttp_from_moto(moto_server: str, make_client: Any) -> None:
    bucket = f"lean-{uuid.uuid4().hex[:10]}"
    table = f"lean{uuid.uuid4().hex[:10]}"
    setup = await make_client("s3", moto_server, lean=False)
    await setup.create_bucket(Bucket=bucket)
    for key in ("a", "b/c d", "e+f", "ü/ÿ", "x%2Fy", "z&<>"):
        await setup.put_object(Bucket=bucket, Key=key, Body=b"x" * len(key))
    ddb = await make_client("dynamodb", moto_server, lean=False)
    await ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for i in range(7):
        await ddb.put_item(TableName=table, Item={"pk": {"S": f"k{i}"}, "n": {"N": str(i)}})

    lean_s3 = await make_client("s3", moto_server)
    plain_s3 = await make_client("s3", moto_server, lean=False)
    for kwargs in ({}, {"EncodingType": "url"}, {"MaxKeys": 2}, {"Delimiter": "/"}):
        lean = await lean_s3.list_objects_v2(Bucket=bucket, **kwargs)
        plain = await plain_s3.list_objects_v2(Bucket=bucket, **kwargs)
        assert _page(lean) == _page(plain)
        assert lean["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert set(lean["ResponseMetadata"]["HTTPHeaders"]) == set(
            plain["ResponseMetadata"]["HTTPHeaders"]
        )
    lean_ddb = await make_client("dynamodb", moto_server)
    lean_scan = await lean_ddb.scan(TableName=table, Limit=3)
    plain_scan = await ddb.scan(TableName=table, Limit=3)
    assert _page(lean_scan) == _page(plain_scan)
    assert len(lean_scan["Items"]) == 3
    # A HEAD answer has no body, even with a Content-Length.
    head = await lean_s3.head_object(Bucket=bucket, Key="e+f")
    assert head["ContentLength"] == 3
    assert _lean_sent(lean_s3) == 5
    assert _lean_sent(lean_ddb) == 1


@pytest.fixture(scope="module")
def chunked_and_plain() -> Iterator[tuple[LocalEndpoint, LocalEndpoint]]:
    buckets = [Bucket("many", 3_000, "deep"), Bucket("words", 400, "unicode")]
    with (
        LocalEndpoint(buckets=buckets, chunked=True, tables=[Table("tbl", 500)]) as chunked,
        LocalEndpoint(buckets=buckets, tables=[Table("tbl", 500)]) as plain,
    ):
        yield chunked, plain


def test_the_endpoint_sends_chunked_answers(
    chunked_and_plain: tuple[LocalEndpoint, LocalEndpoint],
) -> None:
    chunked, _plain = chunked_and_plain
    host, port = chunked.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/many?list-type=2")
    answer = conn.getresponse()
    assert answer.getheader("Transfer-Encoding") == "chunked"
    assert answer.getheader("Content-Length") is None
    body = answer.read()  # http.client undoes the chunking
    conn.close()
    assert body.count(b"<Contents>") == 1000


async def test_chunked_answers_list_as_plain_ones(
    chunked_and_plain: tuple[LocalEndpoint, LocalEndpoint], make_client: Any
) -> None:
    chunked, plain = chunked_and_plain
    for bucket in ("many", "words"):
        lean_keys = await _all_keys(await make_client("s3", chunked.url), bucket)
        plain_keys = await _all_keys(await make_client("s3", plain.url, lean=False), bucket)
        assert lean_keys == plain_keys
        assert len(set(lean_keys)) == (3_000 if bucket == "many" else 400)
    lean_ddb = await make_client("dynamodb", chunked.url)
    plain_ddb = await make_client("dynamodb", plain.url, lean=False)
    lean_scan = await lean_ddb.scan(TableName="tbl", Limit=100)
    assert _page(lean_scan) == _page(await plain_ddb.scan(TableName="tbl", Limit=100))


async def test_ec2_query_posts_match(make_client: Any) -> None:
    with LocalEndpoint(ec2=Ec2Fleet(regions=("us-east-1",), per_region=45)) as ep:
        lean = await make_client("ec2", ep.url)
        plain = await make_client("ec2", ep.url, lean=False)
        token: dict[str, Any] = {}
        pages = 0
        while True:
            a = await lean.describe_instances(MaxResults=20, **token)
            b = await plain.describe_instances(MaxResults=20, **token)
            assert _page(a) == _page(b)
            pages += 1
            if not a.get("NextToken"):
                break
            token = {"NextToken": a["NextToken"]}
        assert pages == 3


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "asyncpager test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_https_verifies_the_certificate(tmp_path: Path, make_client: Any) -> None:
    cert, key = _self_signed(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    with LocalEndpoint(buckets=[Bucket("tls", 1_500, "flat")], ssl=server) as ep:
        assert ep.url.startswith("https://127.0.0.1:")
        trusted = await make_client("s3", ep.url, verify=str(cert))
        keys = await _all_keys(trusted, "tls")
        assert len(set(keys)) == 1_500
        assert _lean_sent(trusted) >= 1
        # Not trusted (the system's CAs): refused, as aiohttp refuses it.
        untrusted = await make_client("s3", ep.url)
        with pytest.raises(SSLError):
            await untrusted.list_objects_v2(Bucket="tls")
        plain_untrusted = await make_client("s3", ep.url, lean=False)
        with pytest.raises(SSLError):
            await plain_untrusted.list_objects_v2(Bucket="tls")
        unverified = await make_client("s3", ep.url, verify=False)
        answer = await unverified.list_objects_v2(Bucket="tls", MaxKeys=5)
        assert answer["KeyCount"] == 5


async def test_a_reset_is_botocores_connection_closed_error(make_client: Any) -> None:
    faults = [Fault("reset", service="s3", first=1), Fault("cut_body", service="s3", every=3)]
    with LocalEndpoint(buckets=[Bucket("bkt", 2_000)], faults=faults) as ep:
        client = await make_client("s3", ep.url)
        with pytest.raises(ConnectionClosedError):
            await client.list_objects_v2(Bucket="bkt")  # request 1: reset
        answer = await client.list_objects_v2(Bucket="bkt")  # request 2: whole
        assert answer["KeyCount"] == 1000
        with pytest.raises(ConnectionClosedError):
            await client.list_objects_v2(Bucket="bkt")  # request 3: cut mid-body
        answer = await client.list_objects_v2(
            Bucket="bkt", StartAfter=answer["Contents"][-1]["Key"]
        )
        assert answer["KeyCount"] == 1000
        assert not answer["IsTruncated"]


async def test_a_silent_server_is_a_read_timeout(make_client: Any) -> None:
    with LocalEndpoint(
        buckets=[Bucket("bkt", 10)], faults=[Fault("slow_body", service="s3", first=1, seconds=5)]
    ) as ep:
        client = await make_client("s3", ep.url, read_timeout=0.2)
        with pytest.raises(ReadTimeoutError):
            await client.list_objects_v2(Bucket="bkt")
        # The next request goes on a new connection, not the one mid-answer.
        assert (await client.list_objects_v2(Bucket="bkt"))["KeyCount"] == 10


async def test_the_read_timeout_is_between_arrivals(make_client: Any) -> None:
    """An answer that keeps coming (ten pieces 0.15 s apart) is read whole
    although it takes longer than the read timeout, as with aiohttp."""
    slow = [Fault("slow_body", service="s3", first=1, seconds=1.5)]
    with LocalEndpoint(buckets=[Bucket("bkt", 300)], faults=slow) as ep:
        client = await make_client("s3", ep.url, read_timeout=0.6)
        started = anyio.current_time()
        answer = await client.list_objects_v2(Bucket="bkt")
        assert anyio.current_time() - started > 0.6
        assert answer["KeyCount"] == 300
        assert ep.stats().fault_count("slow_body", "s3") == 1


async def test_the_fetcher_lists_through_faults_exactly_once() -> None:
    faults = [
        Fault("reset", service="s3", probability=0.05),
        Fault("cut_body", service="s3", probability=0.05),
    ]
    with LocalEndpoint(buckets=[Bucket("bkt", 30_000, "deep")], faults=faults, chunked=True) as ep:
        seen: list[str] = []
        async with Fetcher(concurrency=8) as f:
            async for _stream, page in f.pages(
                plan_s3(["s3://bkt"], shards=4, endpoint_url=ep.url)
            ):
                seen += [o["Key"] for o in page.get("Contents") or ()]
            assert f.stats.retries > 0
            client = next(iter(f._clients.values()))
            assert isinstance(client._endpoint.http_session, LeanHTTPSession)
        assert len(seen) == 30_000 == len(set(seen))


async def test_the_fetcher_can_be_told_to_use_aiohttp() -> None:
    with LocalEndpoint(buckets=[Bucket("bkt", 5)]) as ep:
        async with Fetcher(lean_http=False) as f:
            async for _stream, _page in f.pages(plan_s3(["s3://bkt"], endpoint_url=ep.url)):
                pass
            client = next(iter(f._clients.values()))
            assert type(client._endpoint.http_session) is AIOHTTPSession


async def test_connections_are_reused_and_limited(make_client: Any) -> None:
    latency = [LatencyModel(fixed=0.05)]
    with LocalEndpoint(buckets=[Bucket("bkt", 50)], latency=latency) as ep:
        client = await make_client("s3", ep.url, max_pool_connections=3)
        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(functools.partial(client.list_objects_v2, Bucket="bkt", MaxKeys=1))
        # Twelve requests at once, three connections at most, all kept.
        assert _idle(client) == 3
        assert len(_server_connections(ep)) == 3
        for _ in range(5):
            await client.list_objects_v2(Bucket="bkt")
        assert len(_server_connections(ep)) == 3


def _server_connections(ep: LocalEndpoint) -> list[Any]:
    server = ep._server
    assert server is not None
    return [c for c in server.connections if not c.closed]


async def test_a_connection_closed_while_idle_is_not_reused(make_client: Any) -> None:
    with LocalEndpoint(buckets=[Bucket("bkt", 20)]) as ep:
        client = await make_client("s3", ep.url)
        assert (await client.list_objects_v2(Bucket="bkt"))["KeyCount"] == 20
        assert _idle(client) == 1
        _close_server_side(ep)
        await _until(lambda: _idle(client) == 1 and _idle_closed(client))
        assert (await client.list_objects_v2(Bucket="bkt"))["KeyCount"] == 20


def _close_server_side(ep: LocalEndpoint) -> None:
    server, loop = ep._server, ep._loop
    assert server is not None
    assert loop is not None
    done = threading.Event()

    def close() -> None:
        for conn in list(server.connections):
            if conn.transport is not None:
                conn.transport.close()
        done.set()

    loop.call_soon_threadsafe(close)
    assert done.wait(5)


def _idle_closed(client: Any) -> bool:
    http = client._endpoint.http_session
    return all(conn.closed for pool in http._pools.values() for conn in pool)


async def _until(check: Any) -> None:
    with anyio.fail_after(5):
        while not check():  # noqa: ASYNC110 - state in another thread, no event
            await anyio.sleep(0.01)


async def test_a_stale_reused_connection_is_retried_once() -> None:
    """A server that closes a kept connection when the next request comes
    (as a server does whose idle timeout ran out just then): the request
    goes again on a new connection, and the caller never knows."""
    requests: list[int] = []
    connections = 0
    handlers: list[asyncio.Event] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        number = connections
        done = asyncio.Event()
        handlers.append(done)
        try:
            served = 0
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the client closed it
                if served == 1:
                    writer.transport.abort()  # no answer to a second request
                    return
                assert head.startswith(b"POST / HTTP/1.1\r\n")
                requests.append(number)
                body = b'{"TableNames": ["t%d"]}' % number
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                served += 1
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            done.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        session = AioSession()
        config = AioConfig(http_session_cls=LeanHTTPSession, retries=NO_RETRIES)
        async with session.create_client(
            "dynamodb",
            region_name="us-east-1",
            endpoint_url=f"http://127.0.0.1:{port}",
            config=config,
        ) as client:
            first = await client.list_tables()
            second = await client.list_tables()
        assert first["TableNames"] == ["t1"]
        assert second["TableNames"] == ["t2"]
        assert requests == [1, 2]
        assert connections == 2
        with anyio.fail_after(5):
            for done in handlers:
                await done.wait()
    finally:
        server.close()
        await server.wait_closed()


async def test_cancelled_mid_answer_drops_the_connection(make_client: Any) -> None:
    latency = [LatencyModel(fixed=30, service="s3", operation="ListObjectsV2")]
    with LocalEndpoint(buckets=[Bucket("bkt", 20)], latency=latency) as ep:
        client = await make_client("s3", ep.url)
        await client.head_bucket(Bucket="bkt")
        assert _idle(client) == 1
        with anyio.move_on_after(0.3) as scope:
            await client.list_objects_v2(Bucket="bkt")
        assert scope.cancelled_caught
        # The connection that carried the cancelled request is gone: its
        # answer would be read as the next request's.
        assert _idle(client) == 0
        await _until(lambda: not _server_connections(ep))
        head = await client.head_bucket(Bucket="bkt")
        assert head["ResponseMetadata"]["HTTPStatusCode"] == 200


async def test_requests_through_a_proxy_go_to_aiohttp(make_client: Any) -> None:
    with LocalEndpoint(buckets=[Bucket("bkt", 3)]) as ep:
        client = await make_client("s3", ep.url, proxies={"http": "http://127.0.0.1:9"})
        with pytest.raises(ProxyConnectionError):
            await client.list_objects_v2(Bucket="bkt")
        assert _lean_sent(client) == 0


def test_lean_config_keeps_the_options() -> None:
    config = lean_config({"max_pool_connections": 7, "tcp_keepalive": True})
    assert config is not None
    assert config.http_session_cls is LeanHTTPSession
    assert config.max_pool_connections == 7
    merged = config.merge(AioConfig(read_timeout=3))
    assert merged.http_session_cls is LeanHTTPSession
    assert merged.read_timeout == 3
