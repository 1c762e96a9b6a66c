"""Directory buckets (S3 Express One Zone): keys in no order, no StartAfter.

The local endpoint serves a bucket named ``...--x-s3`` as AWS documents
directory buckets, beside a general purpose bucket holding the same keys:
that one is the oracle for what each listing must hold.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import asyncpager
from asyncpager.engine import Fetcher
from asyncpager.plan.keyspace import TYPICAL_KEYS
from asyncpager.plan.s3 import S3RangeCursor, is_directory_bucket, plan_s3, sample_cut
from asyncpager.streams import Stream
from asyncpager.testing import Bucket, LatencyModel, LocalEndpoint
from tests.test_cli import interrupt_and_resume, read_records

pytestmark = pytest.mark.anyio

DIRECTORY = "data--use1-az4--x-s3"
GENERAL = "data-general"
N_KEYS = 3_000


@pytest.fixture(scope="module")
def endpoint() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(
        buckets=[Bucket(DIRECTORY, N_KEYS, "deep"), Bucket(GENERAL, N_KEYS, "deep")]
    ) as ep:
        yield ep


def boto3_keys(endpoint: LocalEndpoint, bucket: str, **params: Any) -> list[str]:
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint.url)
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 250}, **params
    )
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_the_names_that_make_a_directory_bucket() -> None:
    assert is_directory_bucket("data--use1-az4--x-s3")
    assert is_directory_bucket("data--usw2-lax1-az1--xa-s3")
    assert not is_directory_bucket("data-general")
    assert not is_directory_bucket("x-s3")


def test_the_endpoint_lists_a_directory_bucket_out_of_order_and_refuses_start_after(
    endpoint: LocalEndpoint,
) -> None:
    import boto3
    from botocore.exceptions import ClientError

    keys = boto3_keys(endpoint, DIRECTORY)
    assert len(keys) == len(set(keys)) == N_KEYS
    assert set(keys) == set(boto3_keys(endpoint, GENERAL))
    assert keys != sorted(keys)
    # botocore asked for a session before its first listing.
    assert endpoint.stats().requests.get(("s3", "CreateSession"), 0) >= 1
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint.url)
    folder = keys[0][: keys[0].index("/") + 1]
    for refused in ({"StartAfter": keys[0]}, {"Prefix": folder[:1]}, {"Delimiter": "-"}):
        with pytest.raises(ClientError) as caught:
            s3.list_objects_v2(Bucket=DIRECTORY, **refused)
        assert caught.value.response["Error"]["Code"] == "InvalidArgument"
    rolled = s3.list_objects_v2(Bucket=DIRECTORY, Delimiter="/")
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == [
        p["Prefix"] for p in s3.list_objects_v2(Bucket=GENERAL, Delimiter="/")["CommonPrefixes"]
    ]


async def fetch_keys(streams: list[Stream], **options: Any) -> tuple[list[str], Any]:
    keys: list[str] = []
    async with Fetcher(concurrency=8, **options) as fetcher, fetcher.pages(streams) as flow:
        async for _stream, page in flow:
            keys += [c["Key"] for c in page.get("Contents", [])]
    return keys, flow.report


def _prefixes(endpoint: LocalEndpoint) -> list[str]:
    first = sorted(boto3_keys(endpoint, GENERAL))[0]  # "am/jv/ra/obj-000.json"-like
    top, second = first.split("/")[:2]
    return [
        "",  # the whole bucket
        f"{top}/",  # a folder, as directory buckets take prefixes
        f"{top}/{second[:1]}",  # part of a name: listed from "top/", the rest dropped
        top[:1],  # no "/" at all: listed from the top
    ]


@pytest.mark.parametrize("which", range(4))
@pytest.mark.parametrize("raw", [False, True, "json"])
async def test_a_directory_bucket_is_walked_folder_by_folder_and_listed_exactly(
    endpoint: LocalEndpoint, which: int, raw: Any
) -> None:
    prefix = _prefixes(endpoint)[which]
    streams = plan_s3(
        [f"s3://{DIRECTORY}/{prefix}", f"s3://{GENERAL}/{prefix}"],
        shards=8,
        region="us-east-1",
        endpoint_url=endpoint.url,
        page_size=100,
    )
    directory = [s for s in streams if s.params["Bucket"] == DIRECTORY]
    assert [s.kind for s in directory] == ["s3-walk"]
    assert len(streams) == 9  # the general purpose bucket is cut into key ranges
    options = {"raw_services": {"s3": raw}} if raw else {}
    keys, _ = await fetch_keys(directory, **options)
    expected = [k for k in boto3_keys(endpoint, GENERAL) if k.startswith(prefix)]
    assert expected  # every prefix above holds keys
    assert len(keys) == len(set(keys))
    assert sorted(keys) == sorted(expected)


async def test_folders_given_away_are_left_out_of_the_giver(endpoint: LocalEndpoint) -> None:
    # A resume from a position taken before a split names the folder given
    # away in its stack, or lists it again from its parent: both are left out.
    (stream,) = plan_s3([f"s3://{DIRECTORY}"], endpoint_url=endpoint.url, page_size=100)
    everything = boto3_keys(endpoint, GENERAL)
    top = sorted({k[: k.index("/") + 1] for k in everything})
    inner = sorted({k[: k.index("/", len(top[0])) + 1] for k in everything if k.startswith(top[0])})
    given = [top[-1], inner[1]]
    from_the_root = stream.reshaped(given=given)
    from_a_stack = from_the_root.at({"stack": [[top[0], None], [inner[1], None], [top[-1], None]]})
    for start in (from_the_root, from_a_stack):
        keys, _ = await fetch_keys([start], split=False)
        assert sorted(keys) == sorted(k for k in everything if not k.startswith(tuple(given)))


@pytest.fixture(scope="module")
def latent_endpoint() -> Iterator[LocalEndpoint]:
    # With 10 ms per request the loop waits more than it works: idle slots
    # then take subfolders (at 0 ms the loop is the bound and none split).
    with LocalEndpoint(
        buckets=[Bucket(DIRECTORY, N_KEYS, "deep")], latency=LatencyModel(fixed=0.01)
    ) as ep:
        yield ep


async def test_subfolders_go_to_new_streams_while_slots_are_idle(
    latent_endpoint: LocalEndpoint,
) -> None:
    streams = plan_s3([f"s3://{DIRECTORY}"], endpoint_url=latent_endpoint.url, page_size=100)
    keys, report = await fetch_keys(streams)
    assert len(keys) == len(set(keys)) == N_KEYS
    assert report.stats.streams_total > 8


async def test_a_walk_stopped_again_and_again_resumes_exactly(
    latent_endpoint: LocalEndpoint,
) -> None:
    streams = plan_s3([f"s3://{DIRECTORY}"], endpoint_url=latent_endpoint.url, page_size=50)
    acknowledged: list[str] = []
    given_on_resume = False
    for stop in (200, 450, 700, 1_000):
        taken: list[str] = []
        async with Fetcher(concurrency=8, queue_pages=3) as fetcher, fetcher.pages(streams) as flow:
            async for _s, page in flow:
                taken += [c["Key"] for c in page.get("Contents", [])]
                if len(taken) >= stop:
                    break
        assert flow.report is not None
        # The page held at the break was never acknowledged: it is listed again.
        acknowledged += taken[: len(taken) - len(page.get("Contents", []))]
        streams = flow.report.resume_streams()
        given_on_resume |= any(s.shape.get("given") for s in streams)
    assert given_on_resume  # resumed streams that had given folders away
    rest, _ = await fetch_keys(streams)
    together = acknowledged + rest
    assert len(together) == len(set(together)) == N_KEYS


async def test_key_ranges_and_other_delimiters_are_refused_before_any_request(
    endpoint: LocalEndpoint,
) -> None:
    from aiobotocore.session import get_session

    with pytest.raises(asyncpager.ConfigurationError, match="only '/' as delimiter"):
        plan_s3([f"s3://{DIRECTORY}"], delimiter="-")
    (stream,) = plan_s3([f"s3://{DIRECTORY}"], endpoint_url=endpoint.url)
    ranged = stream.reshaped(lo="m", hi=None)
    before = dict(endpoint.stats().requests)
    async with get_session().create_client(
        "s3", endpoint_url=endpoint.url, region_name="us-east-1"
    ) as client:
        with pytest.raises(asyncpager.ConfigurationError, match="cannot be listed by key range"):
            S3RangeCursor(ranged, client, hooks=None, retry=None, clock=anyio.current_time)
        # Sampling where keys are (for --workers) has nothing to cut.
        assert await sample_cut(f"s3://{DIRECTORY}", client) == (TYPICAL_KEYS, [])
    assert dict(endpoint.stats().requests) == before


@pytest.fixture(scope="module")
def slow_endpoint() -> Iterator[LocalEndpoint]:
    # About 280 folders, a request each, at 60 requests a second (below):
    # a run lasts over 4 s, however fast the machine.
    with LocalEndpoint(
        buckets=[Bucket("crash--use1-az4--x-s3", 30_000, "deep")],
        latency=LatencyModel(fixed=0.02),
    ) as ep:
        yield ep


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_kill_9_then_resume_a_directory_bucket_exactly_once(
    slow_endpoint: LocalEndpoint, tmp_path: Path, workers: str
) -> None:
    out, checkpoint = tmp_path / "out.jsonl", tmp_path / "cp.json"
    argv = [
        *(sys.executable, "-m", "asyncpager", "s3", "s3://crash--use1-az4--x-s3"),
        *("--page-size", "250", "--endpoint-url", slow_endpoint.url, "--region", "us-east-1"),
        *("-o", str(out), "--checkpoint", str(checkpoint), "--commit-interval", "0.05"),
        *("--workers", workers, "--rate", "60", "--burst", "5"),
    ]
    outcomes = interrupt_and_resume(argv, signal.SIGKILL, [0.3, 0.5])
    assert all(o.returncode == -signal.SIGKILL for o in outcomes[:-1])
    keys = [r["Key"] for r in read_records(out)]
    assert len(keys) == len(set(keys)) == 30_000
