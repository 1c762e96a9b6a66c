"""What a Fetcher's clients share (service model, client class, SSL context,
data loader), against the local endpoint, which answers EC2 by the region
each request is signed for: a client that shared too much would list another
region's instances."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from asyncpager._clients import (
    SharedParts,
    SslContexts,
    preload_service_data,
    share_loader,
    sharing,
)
from asyncpager.engine import Fetcher
from asyncpager.plan.regions import plan_regions
from asyncpager.testing import Ec2Fleet, LocalEndpoint

pytestmark = pytest.mark.anyio

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2", "sa-east-1")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(ec2=Ec2Fleet(regions=REGIONS, per_region=7)) as ep:
        yield ep


def boto3_instances(url: str, region: str) -> set[str]:
    import boto3

    ec2 = boto3.client("ec2", region_name=region, endpoint_url=url)
    return {
        instance["InstanceId"]
        for page in ec2.get_paginator("describe_instances").paginate(MaxResults=5)
        for reservation in page["Reservations"]
        for instance in reservation["Instances"]
    }


async def test_clients_of_one_service_share_model_and_class_and_list_their_region(
    endpoint: LocalEndpoint,
) -> None:
    streams = await plan_regions(
        "ec2",
        "DescribeInstances",
        regions=list(REGIONS),
        resolve_accounts=False,
        endpoint_url=endpoint.url,
        page_size=5,
    )
    found: dict[str, set[str]] = {region: set() for region in REGIONS}
    async with Fetcher(concurrency=4) as fetcher:
        clients = [await fetcher.client_for(stream) for stream in streams]
        async for stream, page in fetcher.pages(streams):
            assert stream.region is not None
            for reservation in page["Reservations"]:
                found[stream.region] |= {i["InstanceId"] for i in reservation["Instances"]}
    assert {type(client) for client in clients} == {type(clients[0])}
    assert {id(client.meta.service_model) for client in clients} == {
        id(clients[0].meta.service_model)
    }
    assert [client.meta.region_name for client in clients] == list(REGIONS)
    for region in REGIONS:
        assert found[region] == boto3_instances(endpoint.url, region), region
    assert len(set.union(*found.values())) == 7 * len(REGIONS)


async def test_clients_made_elsewhere_are_made_as_botocore_makes_them(
    endpoint: LocalEndpoint,
) -> None:
    from aiobotocore.session import AioSession

    session = AioSession()
    async with Fetcher() as fetcher, AsyncExitStack() as stack:
        streams = await plan_regions(
            "ec2",
            "DescribeInstances",
            regions=["us-east-1", "eu-west-1"],
            resolve_accounts=False,
            endpoint_url=endpoint.url,
        )
        mine = [await fetcher.client_for(stream) for stream in streams]
        theirs = [
            await stack.enter_async_context(
                session.create_client("ec2", region_name=region, endpoint_url=endpoint.url)
            )
            for region in ("us-east-1", "eu-west-1")
        ]
        assert type(theirs[0]) is not type(theirs[1])
        assert theirs[0].meta.service_model is not theirs[1].meta.service_model
        assert type(mine[0]) is not type(theirs[0])
        answer = await theirs[1].describe_instances()
        ids = {i["InstanceId"] for r in answer["Reservations"] for i in r["Instances"]}
        assert ids == boto3_instances(endpoint.url, "eu-west-1")


async def test_sharing_is_per_parts_object(endpoint: LocalEndpoint) -> None:
    from aiobotocore.session import AioSession

    session = AioSession()
    one, two = SharedParts(), SharedParts()
    async with AsyncExitStack() as stack:

        async def make(parts: SharedParts, region: str) -> Any:
            with sharing(parts):
                return await stack.enter_async_context(
                    session.create_client("ec2", region_name=region, endpoint_url=endpoint.url)
                )

        a, b, c = (
            await make(one, "us-east-1"),
            await make(one, "eu-west-1"),
            await make(two, "us-east-1"),
        )
        assert type(a) is type(b)
        assert a.meta.service_model is b.meta.service_model
        assert type(a) is not type(c)
        assert a.meta.service_model is not c.meta.service_model
        assert len(one.models) == 1
        assert len(one.classes) == 1


def _builds_contexts_apart() -> bool:
    from aiobotocore.httpsession import AIOHTTPSession

    return hasattr(AIOHTTPSession, "_build_ssl_contexts")


@pytest.mark.skipif(
    not _builds_contexts_apart(), reason="this aiobotocore builds SSL contexts with the connector"
)
async def test_clients_share_one_ssl_context_per_tls_setting(endpoint: LocalEndpoint) -> None:
    from aiobotocore.session import AioSession

    session = AioSession()
    contexts = SslContexts()
    async with AsyncExitStack() as stack:

        async def make(region: str, verify: bool | None = None) -> Any:
            client = await stack.enter_async_context(
                session.create_client(
                    "ec2", region_name=region, endpoint_url=endpoint.url, verify=verify
                )
            )
            assert contexts.share(client)
            return client

        clients = [await make(region) for region in REGIONS]
        unverified = await make("us-east-1", verify=False)
        # The first request of every client at once, as a Fetcher sends them:
        # aiobotocore builds the contexts in worker threads.
        built: list[Any] = [None] * len(clients)

        def build(i: int) -> None:
            built[i] = clients[i]._endpoint.http_session._build_ssl_contexts(None)

        threads = [threading.Thread(target=build, args=(i,)) for i in range(len(clients))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(b is built[0] for b in built)
        ssl_context, proxy_context = built[0]
        assert proxy_context is None
        other, _ = unverified._endpoint.http_session._build_ssl_contexts(None)
        assert other is not ssl_context
        assert not other.check_hostname
        assert ssl_context.check_hostname
        # And requests still go through.
        for client, region in zip(clients, REGIONS, strict=True):
            answer = await client.describe_instances()
            ids = {i["InstanceId"] for r in answer["Reservations"] for i in r["Instances"]}
            assert ids == boto3_instances(endpoint.url, region)


@pytest.mark.skipif(
    not _builds_contexts_apart(), reason="this aiobotocore builds SSL contexts with the connector"
)
async def test_lean_sessions_share_the_ssl_context_too(endpoint: LocalEndpoint) -> None:
    from aiobotocore.session import AioSession

    from asyncpager import Fetcher, Stream
    from asyncpager._http import LeanHTTPSession, lean_config

    config = lean_config({})
    if config is None:
        pytest.skip("this aiobotocore has no http_session_cls")
    session = AioSession()
    contexts = SslContexts()
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                session.create_client(
                    "ec2", region_name=region, endpoint_url=endpoint.url, config=config
                )
            )
            for region in REGIONS[:3]
        ]
        assert all(type(c._endpoint.http_session) is LeanHTTPSession for c in clients)
        assert all(contexts.share(c) for c in clients)
        built = [c._endpoint.http_session._build_ssl_contexts(None) for c in clients]
        assert all(b is built[0] for b in built)
    # And the Fetcher's own clients, which are lean, share theirs.
    async with Fetcher() as f:
        made = [
            await f.client_for(
                Stream("ec2", "DescribeInstances", region=r, endpoint_url=endpoint.url)
            )
            for r in REGIONS[:2]
        ]
        first, second = (c._endpoint.http_session for c in made)
        assert type(first) is LeanHTTPSession
        assert first._build_ssl_contexts(None) is second._build_ssl_contexts(None)


async def test_a_client_with_its_own_http_session_class_is_left_alone(
    endpoint: LocalEndpoint,
) -> None:
    from aiobotocore.config import AioConfig
    from aiobotocore.httpsession import AIOHTTPSession
    from aiobotocore.session import AioSession

    class MySession(AIOHTTPSession):
        pass

    session = AioSession()
    async with session.create_client(
        "ec2",
        region_name="us-east-1",
        endpoint_url=endpoint.url,
        config=AioConfig(http_session_cls=MySession),
    ) as client:
        assert not SslContexts().share(client)
        assert "_build_ssl_contexts" not in vars(client._endpoint.http_session)


def test_sessions_share_one_loader_per_data_path(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import botocore.session
    from aiobotocore.session import AioSession

    from asyncpager.plan import regions

    a, b = AioSession(), botocore.session.Session()
    share_loader(a)
    share_loader(b)
    loader = a.get_component("data_loader")
    assert b.get_component("data_loader") is loader
    assert regions._botocore().get_component("data_loader") is loader
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    elsewhere = AioSession()
    share_loader(elsewhere)
    assert elsewhere.get_component("data_loader") is not loader
    assert str(tmp_path) in elsewhere.get_component("data_loader").search_paths


async def test_cached_user_agent_is_botocores_for_every_set_of_features(
    endpoint: LocalEndpoint,
) -> None:
    from aiobotocore.session import AioSession
    from botocore.context import start_as_current_context
    from botocore.useragent import UserAgentString, register_feature_id

    from asyncpager._clients import cache_user_agent

    # (the header sent, what botocore builds at that moment)
    sent: list[tuple[str, str]] = []
    async with AioSession().create_client(
        "ec2", region_name="eu-west-1", endpoint_url=endpoint.url
    ) as client:
        creator = client._user_agent_creator

        def record(request: Any, **kwargs: Any) -> None:
            header = request.headers["User-Agent"]
            sent.append((header.decode(), UserAgentString.to_string(creator)))

        client.meta.events.register("before-send.ec2", record)
        assert cache_user_agent(client)
        await client.describe_instances(MaxResults=5)
        with start_as_current_context():
            register_feature_id("WAITER")
            await client.describe_instances(MaxResults=5)
        await client.describe_instances(MaxResults=5)
    assert [header for header, _ in sent] == [built for _, built in sent]
    first, with_waiter, again = (header for header, _ in sent)
    assert first == again
    assert with_waiter != first


@pytest.mark.parametrize("preloaded", [True, False])
def test_preloaded_data_files_are_not_read_again(
    preloaded: bool, endpoint: LocalEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    import botocore.session
    from botocore.loaders import JSONFileLoader

    from asyncpager import _clients

    monkeypatch.setattr(_clients, "_LOADERS", {})  # a process that has decoded nothing
    if preloaded:
        preload_service_data("ec2")
    reads: list[str] = []
    read = JSONFileLoader.load_file

    def counted(self: Any, file_path: str) -> Any:
        reads.append(file_path)
        return read(self, file_path)

    monkeypatch.setattr(JSONFileLoader, "load_file", counted)
    session = botocore.session.Session()
    share_loader(session)
    client = session.create_client("ec2", region_name="us-east-1", endpoint_url=endpoint.url)
    page = next(iter(client.get_paginator("describe_instances").paginate()))
    assert page["Reservations"]  # the client works from the data it was given
    # Without the preload, every file is read here (and the test shows it);
    # with it, none of them is.
    read_here = {path.rsplit("/", 1)[-1] for path in reads}
    expected = {"service-2", "endpoint-rule-set-1", "paginators-1", "partitions"}
    if preloaded:
        assert not read_here & expected
    else:
        assert expected <= read_here
