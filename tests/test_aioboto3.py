"""Clients made by aioboto3 (which pins an older aiobotocore) work with
everything asyncpager offers. Runs where aioboto3 is installed: `.ci/run`
makes such an environment (`.venv-aioboto3`)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

aioboto3 = pytest.importorskip("aioboto3")

from asyncpager import Fetcher, Stream, paginate, plan_s3  # noqa: E402
from tests.conftest import create_table, put_s3_keys  # noqa: E402
from tests.test_paginate_parity import AWKWARD_KEYS  # noqa: E402

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def data(moto_server: str) -> dict[str, Any]:
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_server)
    bucket = f"a3-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    put_s3_keys(s3, bucket, AWKWARD_KEYS)
    ddb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=moto_server)
    table = f"a3-{uuid.uuid4().hex[:10]}"
    create_table(ddb, table)
    for i in range(30):
        ddb.put_item(TableName=table, Item={"pk": {"S": f"k{i:02d}"}})
    return {"bucket": bucket, "table": table, "url": moto_server}


async def test_paginate_and_tokens_with_an_aioboto3_client(data: dict[str, Any]) -> None:
    import boto3

    sync = boto3.client("s3", region_name="us-east-1", endpoint_url=data["url"])
    async with aioboto3.Session().client(
        "s3", region_name="us-east-1", endpoint_url=data["url"]
    ) as s3:
        stream = paginate(
            s3, "list_objects_v2", Bucket=data["bucket"], PaginationConfig={"PageSize": 9}
        )
        first = await stream.__anext__()
        token = stream.resume_token
        rest = [o["Key"] async for o in stream.items()]
        keys = [o["Key"] for o in first["Contents"]] + rest
        assert sorted(keys) == sorted(AWKWARD_KEYS)
        # The token after the first page resumes boto3 exactly there.
        theirs = [
            o["Key"]
            for page in sync.get_paginator("list_objects_v2").paginate(
                Bucket=data["bucket"], PaginationConfig={"PageSize": 9, "StartingToken": token}
            )
            for o in page["Contents"]
        ]
        assert theirs == rest
        full = await paginate(s3, "list_objects_v2", Bucket=data["bucket"]).build_full_result()
        assert len(full["Contents"]) == len(AWKWARD_KEYS)


async def test_fetcher_runs_planned_streams_on_aioboto3_clients(data: dict[str, Any]) -> None:
    session = aioboto3.Session()
    async with (
        session.client("s3", region_name="us-east-1", endpoint_url=data["url"]) as s3,
        session.client("dynamodb", region_name="us-east-1", endpoint_url=data["url"]) as ddb,
    ):
        streams = plan_s3([f"s3://{data['bucket']}"], shards=4, region="us-east-1", page_size=5)
        streams += [
            Stream(
                "dynamodb",
                "scan",
                {"TableName": data["table"], "Segment": s, "TotalSegments": 3},
                region="us-east-1",
            )
            for s in range(3)
        ]
        keys: list[str] = []
        items: list[str] = []
        async with Fetcher(concurrency=4, clients={"s3": s3, "dynamodb": ddb}) as fetcher:
            async for stream, page in fetcher.pages(streams):
                if stream.service == "s3":
                    keys += [o["Key"] for o in page.get("Contents", [])]
                else:
                    items += [i["pk"]["S"] for i in page["Items"]]
    assert sorted(keys) == sorted(AWKWARD_KEYS)
    assert sorted(items) == [f"k{i:02d}" for i in range(30)]


async def test_the_fetcher_s_own_clients_on_this_aiobotocore_list_everything(
    data: dict[str, Any],
) -> None:
    # With aioboto3 installed, the Fetcher's own clients are made by the
    # aiobotocore it pins. The direct request path checks every request kind
    # it learns against what this botocore sends, and leaves to botocore what
    # it cannot rebuild exactly: every key comes, whichever way each went.
    streams = plan_s3(
        [f"s3://{data['bucket']}"],
        shards=3,
        region="us-east-1",
        page_size=4,
        endpoint_url=data["url"],
    )
    keys: list[str] = []
    async with Fetcher(concurrency=3) as fetcher:
        async with fetcher.pages(streams) as flow:
            async for _stream, page in flow:
                keys += [o["Key"] for o in page.get("Contents", [])]
        (client,) = fetcher._clients.values()
        calls = client._asyncpager_direct
        assert calls.sent + calls.learnt + calls.refused == flow.report.stats.requests
    assert sorted(keys) == sorted(AWKWARD_KEYS)
