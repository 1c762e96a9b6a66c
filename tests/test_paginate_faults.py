"""Retries, backoff and repeated tokens, against the local endpoint's
injected throttles and faults; time is a FakeClock, so nothing sleeps."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiobotocore.session import get_session
from botocore.config import Config

import asyncpager
from asyncpager.pages import paginate
from asyncpager.retry import RetryPolicy
from asyncpager.testing import Bucket, Fault, LocalEndpoint, Throttle

pytestmark = pytest.mark.anyio

KEYS = 25  # five pages of five


@pytest.fixture
def endpoint(request: pytest.FixtureRequest) -> Iterator[LocalEndpoint]:
    marker = request.node.get_closest_marker("endpoint")
    options: dict[str, Any] = dict(marker.kwargs) if marker else {}
    with LocalEndpoint(buckets=[Bucket("faulty", KEYS, "flat")], **options) as ep:
        yield ep


@pytest.fixture
async def s3(endpoint: LocalEndpoint) -> AsyncIterator[Any]:
    config = Config(retries={"total_max_attempts": 1}, read_timeout=0.5, connect_timeout=1)
    async with get_session().create_client(
        "s3", region_name="us-east-1", endpoint_url=endpoint.url, config=config
    ) as client:
        yield client


async def list_all(s3: Any, clock: asyncpager.FakeClock, **kwargs: Any) -> list[str]:
    stream = paginate(
        s3,
        "list_objects_v2",
        Bucket="faulty",
        PaginationConfig={"PageSize": 5},
        clock=clock,
        retry=RetryPolicy(rng=random.Random(7)),
        **kwargs,
    )
    return [obj["Key"] async for obj in stream.items()]


def faulty_pages(s3: Any, retry: RetryPolicy) -> asyncpager.PageStream:
    """The bucket in pages of five, waits on a FakeClock."""
    return paginate(
        s3,
        "list_objects_v2",
        Bucket="faulty",
        PaginationConfig={"PageSize": 5},
        clock=asyncpager.FakeClock(),
        retry=retry,
    )


async def pages_until(
    stream: asyncpager.PageStream, error: type[asyncpager.AsyncPagerError]
) -> tuple[list[dict[str, Any]], asyncpager.AsyncPagerError]:
    """The pages ``stream`` gives before it raises ``error``, and the error."""
    pages: list[dict[str, Any]] = []

    async def drain() -> None:
        async for page in stream:
            pages.append(page)  # noqa: PERF401 - the pages before the error count

    with pytest.raises(error) as info:
        await drain()
    return pages, info.value


async def keys_from(s3: Any, token: str | None) -> list[str]:
    """Every key after ``token``, as ``list_all`` pages them."""
    rest = paginate(
        s3,
        "list_objects_v2",
        Bucket="faulty",
        PaginationConfig={"PageSize": 5, "StartingToken": token},
    )
    return [o["Key"] async for o in rest.items()]


@pytest.mark.endpoint(throttles=[Throttle("s3", "ListObjectsV2", first=3)])
async def test_throttles_are_retried_with_backoff(s3: Any, endpoint: LocalEndpoint) -> None:
    clock = asyncpager.FakeClock()
    keys = await list_all(s3, clock)
    assert len(keys) == len(set(keys)) == KEYS
    assert endpoint.stats().throttled_count("s3") == 3
    # Three waits, each drawn from a full-jitter window: some virtual time passed,
    # no real time was spent sleeping.
    assert clock.slept > 0
    assert clock.now() == pytest.approx(clock.slept)


@pytest.mark.endpoint(faults=[Fault("internal_error", "s3", every=2)])
async def test_500s_are_retried(s3: Any, endpoint: LocalEndpoint) -> None:
    clock = asyncpager.FakeClock()
    stream = paginate(
        s3, "list_objects_v2", Bucket="faulty", PaginationConfig={"PageSize": 5}, clock=clock
    )
    keys = [obj["Key"] async for obj in stream.items()]
    assert len(keys) == KEYS
    assert stream.retries == endpoint.stats().fault_count(service="s3") > 0
    assert stream.requests == stream.pages + stream.retries


@pytest.mark.endpoint(faults=[Fault("reset", "s3", first=2)])
async def test_connection_resets_are_retried(s3: Any, endpoint: LocalEndpoint) -> None:
    keys = await list_all(s3, asyncpager.FakeClock())
    assert len(keys) == KEYS
    assert endpoint.stats().fault_count(service="s3") == 2


@pytest.mark.endpoint(faults=[Fault("cut_body", "s3", first=1)])
async def test_cut_bodies_are_retried(s3: Any, endpoint: LocalEndpoint) -> None:
    keys = await list_all(s3, asyncpager.FakeClock())
    assert len(keys) == KEYS
    assert endpoint.stats().fault_count(service="s3") == 1


@pytest.mark.endpoint(faults=[Fault("slow_body", "s3", first=1, seconds=2.0)])
async def test_read_timeouts_are_retried(s3: Any, endpoint: LocalEndpoint) -> None:
    keys = await list_all(s3, asyncpager.FakeClock())
    assert len(keys) == KEYS


@pytest.mark.endpoint(throttles=[Throttle("s3", "ListObjectsV2", every=3)])
async def test_giving_up_names_the_last_good_token(s3: Any) -> None:
    stream = faulty_pages(s3, RetryPolicy(throttle_attempts=1))
    pages, error = await pages_until(stream, asyncpager.ThrottledError)
    assert len(pages) == 2
    assert error.last_token == stream.resume_token is not None
    assert error.code == "SlowDown"
    assert error.operation == "ListObjectsV2"
    # The token resumes right after the second page: no key lost, none twice.
    seen = [o["Key"] for p in pages for o in p["Contents"]]
    seen += await keys_from(s3, error.last_token)
    assert len(seen) == len(set(seen)) == KEYS


@pytest.mark.endpoint(faults=[Fault("repeat_token", "s3", first=1)])
async def test_a_repeated_token_is_asked_again(s3: Any, endpoint: LocalEndpoint) -> None:
    stream = faulty_pages(s3, RetryPolicy())
    keys = [obj["Key"] async for obj in stream.items()]
    # The answer that sent an old token back was asked for again, not delivered.
    assert len(keys) == len(set(keys)) == KEYS
    assert endpoint.stats().fault_count(service="s3") == 1
    assert stream.retries == 1
    assert stream.requests == stream.pages + 1


@pytest.mark.endpoint(faults=[Fault("repeat_token", "s3", first=1000)])
async def test_a_token_repeated_every_time_raises_before_its_page(s3: Any) -> None:
    stream = faulty_pages(s3, RetryPolicy(max_attempts=3, rng=random.Random(7)))
    pages, error = await pages_until(stream, asyncpager.RepeatedTokenError)
    # Only the first page came (every later answer repeats its token), and the
    # error's token resumes right after it.
    assert len(pages) == 1
    assert stream.requests == 1 + 3
    assert error.last_token == stream.resume_token is not None
    seen = [o["Key"] for o in pages[0]["Contents"]]
    with LocalEndpoint(buckets=[Bucket("faulty", KEYS, "flat")]) as healthy:
        config = Config(retries={"total_max_attempts": 1})
        async with get_session().create_client(
            "s3", region_name="us-east-1", endpoint_url=healthy.url, config=config
        ) as client:
            seen += await keys_from(client, error.last_token)
    assert len(seen) == len(set(seen)) == KEYS


@pytest.mark.endpoint(faults=[Fault("repeat_token", "s3", first=1)])
async def test_repeated_token_can_stop_instead(s3: Any) -> None:
    stream = paginate(
        s3,
        "list_objects_v2",
        Bucket="faulty",
        PaginationConfig={"PageSize": 5},
        on_repeated_token="stop",
    )
    pages = [page async for page in stream]
    assert len(pages) == 2
    assert stream.stopped_on_repeated_token


async def test_unreachable_endpoint_is_a_transport_error() -> None:
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=0.5)
    async with get_session().create_client(
        "s3", region_name="us-east-1", endpoint_url=url, config=config
    ) as client:
        clock = asyncpager.FakeClock()
        stream = paginate(
            client, "list_objects_v2", Bucket="b", clock=clock, retry=RetryPolicy(max_attempts=3)
        )
        with pytest.raises(asyncpager.TransportError):
            await stream.__anext__()
        assert stream.requests == 3
        assert stream.retries == 2
