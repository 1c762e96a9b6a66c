"""The direct request path against real servers on 127.0.0.1: the same pages
and the same errors as botocore's own path, for every protocol the engine
pages through; signatures equal to botocore's for any request; the cases it
leaves to botocore; and a request cancelled while its kind is learnt."""

from __future__ import annotations

import contextlib
import datetime
import ssl
import string
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiobotocore.session import AioSession
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncpager import Fetcher, paginate, plan_s3
from asyncpager._direct import ENV_VAR, DirectCalls, Signer, direct_call, direct_enabled
from asyncpager._direct import install as install_direct
from asyncpager._http import lean_config
from asyncpager.parsers import install as install_parsers
from asyncpager.testing import (
    Bucket,
    Ec2Fleet,
    Fault,
    IamUsers,
    LatencyModel,
    LocalEndpoint,
    Table,
    Throttle,
)

from .conftest import put_s3_keys

pytestmark = pytest.mark.anyio

NO_RETRIES = {"total_max_attempts": 1, "mode": "standard"}


@pytest.fixture
async def make_client() -> AsyncIterator[Any]:
    """``make(service, url, direct=True, region=..., **client_kwargs)``: a
    client as the Fetcher makes it (one attempt, lean HTTP, compiled
    parsers), with or without the direct path; closed after."""
    session = AioSession()
    async with contextlib.AsyncExitStack() as stack:

        async def make(
            service: str,
            url: str,
            direct: bool = True,
            region: str = "us-east-1",
            **kwargs: Any,
        ) -> Any:
            client = await stack.enter_async_context(
                session.create_client(
                    service,
                    region_name=region,
                    endpoint_url=url,
                    config=lean_config({"retries": NO_RETRIES}),
                    **kwargs,
                )
            )
            install_parsers(client)
            if direct:
                assert install_direct(client) is not None
            return client

        yield make


def _calls(client: Any) -> DirectCalls:
    calls = client._asyncpager_direct
    assert isinstance(calls, DirectCalls)
    return calls


def _page(page: dict[str, Any]) -> dict[str, Any]:
    """A page without what differs from one answer to the next: its
    request's ids and its headers' values (dates, ids)."""
    out = dict(page)
    meta = dict(out.pop("ResponseMetadata", {}))
    meta.pop("RequestId", None)
    meta.pop("HostId", None)
    meta["HTTPHeaders"] = sorted(meta.get("HTTPHeaders", {}))
    out["ResponseMetadata"] = meta
    return out


async def _all_pages(client: Any, operation: str, **params: Any) -> list[dict[str, Any]]:
    return [_page(p) async for p in paginate(client, operation, **params)]


CASES = [
    ("s3", "ListObjectsV2", {"Bucket": "flat", "PaginationConfig": {"PageSize": 70}}),
    ("s3", "ListObjectsV2", {"Bucket": "uni", "PaginationConfig": {"PageSize": 90}}),
    ("s3", "ListObjectsV2", {"Bucket": "deep", "Delimiter": "/", "Prefix": "a"}),
    ("dynamodb", "Scan", {"TableName": "tbl", "PaginationConfig": {"PageSize": 60}}),
    (
        "dynamodb",
        "Scan",
        {
            "TableName": "tbl",
            "Segment": 1,
            "TotalSegments": 3,
            "PaginationConfig": {"PageSize": 40},
        },
    ),
    (
        "dynamodb",
        "Query",
        {
            "TableName": "tbl",
            "KeyConditionExpression": "pk = :p",
            "Limit": 7,
            "ExpressionAttributeValues": {":p": {"S": "item#00000002"}},
        },
    ),
    ("ec2", "DescribeInstances", {"PaginationConfig": {"PageSize": 5}}),
    ("iam", "ListUsers", {"PaginationConfig": {"PageSize": 7}}),
]


@pytest.mark.parametrize(("service", "operation", "params"), CASES)
async def test_pages_are_botocore_pages(
    make_client: Any, service: str, operation: str, params: dict[str, Any]
) -> None:
    with LocalEndpoint(
        buckets=[
            Bucket("flat", 400, "flat"),
            Bucket("uni", 300, "unicode"),
            Bucket("deep", 600, "deep"),
        ],
        tables=[Table("tbl", 300, sort_key="sk", items_per_partition=50)],
        ec2=Ec2Fleet(regions=("us-east-1",), per_region=23),
        iam=IamUsers(count=30),
    ) as ep:
        direct = await make_client(service, ep.url)
        plain = await make_client(service, ep.url, direct=False)
        ours = await _all_pages(direct, operation, **params)
        theirs = await _all_pages(plain, operation, **params)
        assert ours == theirs
        assert len(ours) > 1 or service == "s3"
        calls = _calls(direct)
        # botocore made the first request of each kind (with a token, without);
        # every other request went the direct way.
        assert calls.learnt <= 2
        assert calls.sent == len(ours) - calls.learnt
        assert calls.refused == 0


async def test_awkward_keys_from_moto_are_botocore_keys(
    make_client: Any, moto_server: str, boto3_client: Any
) -> None:
    s3 = boto3_client("s3")
    s3.create_bucket(Bucket="direct-awkward")
    keys = [
        "a b",
        "plus+sign",
        "per%cent",
        "ünï/cödé",
        "new\nline",
        "amp&eq=q?",
        "x" * 300,
        *[f"k{i:03d}" for i in range(20)],
    ]
    put_s3_keys(s3, "direct-awkward", keys)
    direct = await make_client("s3", moto_server)
    plain = await make_client("s3", moto_server, direct=False)
    params = {"Bucket": "direct-awkward", "PaginationConfig": {"PageSize": 4}}
    ours = await _all_pages(direct, "ListObjectsV2", **params)
    theirs = await _all_pages(plain, "ListObjectsV2", **params)
    assert [c["Key"] for p in ours for c in p.get("Contents", [])] == sorted(keys)
    assert ours == theirs
    assert _calls(direct).sent == len(ours) - 2


async def test_another_prefix_of_the_same_bucket_is_not_learnt_again(make_client: Any) -> None:
    with LocalEndpoint(buckets=[Bucket("deep", 3_000, "deep")]) as ep:
        client = await make_client("s3", ep.url)
        top = await client.list_objects_v2(Bucket="deep", Delimiter="/", Prefix="am/")
        folders = [p["Prefix"] for p in top["CommonPrefixes"]][:5]
        assert len(folders) == 5
        pages = 0
        for folder in folders:
            listed = await _all_pages(
                client, "ListObjectsV2", Bucket="deep", Prefix=folder, MaxKeys=40
            )
            assert all(c["Key"].startswith(folder) for p in listed for c in p.get("Contents", []))
            pages += len(listed)
        calls = _calls(client)
        # Each prefix is an endpoint parameter (S3 Express reads it), resolved
        # here for every new one; botocore sent only the first two of the
        # kind (without a token, with one).
        assert calls.learnt == 2
        assert calls.sent == pages - 2


async def test_a_directory_bucket_stays_botocore_s_after_one_try(make_client: Any) -> None:
    # S3 Express signs with its session's keys, which this path does not
    # make: a request of the kind is learnt from (twice: botocore's first
    # also made the session), then every other folder's endpoint is found
    # to be that one, and left to botocore.
    bucket = "walk--use1-az4--x-s3"
    with LocalEndpoint(buckets=[Bucket(bucket, 2_000, "deep")]) as ep:
        direct = await make_client("s3", ep.url)
        plain = await make_client("s3", ep.url, direct=False)
        top = await plain.list_objects_v2(Bucket=bucket, Delimiter="/", Prefix="am/")
        folders = [p["Prefix"] for p in top["CommonPrefixes"]][:6]
        assert len(folders) == 6
        for folder in folders:
            params = {"Bucket": bucket, "Prefix": folder, "Delimiter": "/"}
            assert await _all_pages(direct, "ListObjectsV2", **params) == await _all_pages(
                plain, "ListObjectsV2", **params
            )
        calls = _calls(direct)
        assert (calls.learnt, calls.sent, calls.refused) == (2, 0, 4)


async def test_what_is_learnt_stays_bounded(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("asyncpager._direct._MAX_TEMPLATES", 3)
    with LocalEndpoint(buckets=[Bucket("deep", 3_000, "deep")]) as ep:
        client = await make_client("s3", ep.url)
        calls = _calls(client)
        for i in range(12):
            page = await direct_call(client, "ListObjectsV2", client.list_objects_v2)(
                Bucket="deep", Prefix=f"am/{i:02d}", MaxKeys=5
            )
            assert page["Prefix"] == f"am/{i:02d}"
            assert len(calls._templates) <= 3
        # Forgotten endpoints were resolved again, not learnt from botocore.
        assert calls.learnt == 1
        assert calls.sent == 11


@pytest.mark.parametrize(
    ("service", "operation", "params"),
    [
        ("s3", "ListObjectsV2", {"Bucket": "tls", "PaginationConfig": {"PageSize": 100}}),
        ("dynamodb", "Scan", {"TableName": "tbl", "PaginationConfig": {"PageSize": 50}}),
    ],
)
async def test_over_https_pages_are_botocore_pages(
    tmp_path: Path, make_client: Any, service: str, operation: str, params: dict[str, Any]
) -> None:
    # Over TLS botocore signs S3's payload differently ("UNSIGNED-PAYLOAD"
    # where it may); what it does is learnt and rebuilt like the rest.
    from tests.test_lean_http import _self_signed

    cert, key = _self_signed(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    with LocalEndpoint(
        buckets=[Bucket("tls", 500, "flat")], tables=[Table("tbl", 200)], ssl=server
    ) as ep:
        assert ep.url.startswith("https://")
        direct = await make_client(service, ep.url, verify=str(cert))
        plain = await make_client(service, ep.url, direct=False, verify=str(cert))
        ours = await _all_pages(direct, operation, **params)
        assert ours == await _all_pages(plain, operation, **params)
        assert _calls(direct).sent == len(ours) - 2 > 0


async def test_temporary_credentials_are_signed_with_their_token(make_client: Any) -> None:
    with LocalEndpoint(buckets=[Bucket("flat", 300, "flat")]) as ep:
        client = await make_client(
            "s3",
            ep.url,
            aws_access_key_id="AKIDTEMP",
            aws_secret_access_key="secret/with+chars",
            aws_session_token="token-of-a-session",
        )
        pages = await _all_pages(client, "ListObjectsV2", Bucket="flat", MaxKeys=50)
        assert sum(len(p["Contents"]) for p in pages) == 300
        assert _calls(client).sent == len(pages) - 2


async def test_a_redirected_bucket_is_listed_as_botocore_lists_it(make_client: Any) -> None:
    with LocalEndpoint(buckets=[Bucket("far", 250, "flat", region="eu-west-1")]) as ep:
        direct = await make_client("s3", ep.url)
        plain = await make_client("s3", ep.url, direct=False)
        params = {"Bucket": "far", "PaginationConfig": {"PageSize": 30}}
        ours = await _all_pages(direct, "ListObjectsV2", **params)
        theirs = await _all_pages(plain, "ListObjectsV2", **params)
        assert ours == theirs
        assert sum(len(p["Contents"]) for p in ours) == 250
        # Each client's first request went to its own region and was
        # redirected; the rest, to the bucket's, the direct way but for the
        # two botocore sent to learn from.
        assert ep.stats().count("s3", "ListObjectsV2") == len(ours) * 2 + 2
        assert _calls(direct).sent == len(ours) - 2


async def _outcomes(client: Any, url: str, operation: str, times: int, **params: Any) -> list[str]:
    """What each of ``times`` requests gave: a page's item count, or the
    exception's type and what it says."""
    method = next(m for m, op in client.meta.method_to_api_mapping.items() if op == operation)
    send = direct_call(client, operation, getattr(client, method))
    seen = []
    for _ in range(times):
        try:
            page = await send(**params)
        except Exception as exc:
            if isinstance(exc, ClientError):
                # The whole answer, as the caller sees it, but its ids.
                answer = _page(exc.response)
                seen.append(f"{type(exc).__name__} {exc.response['Error']['Code']} {answer}")
            else:
                seen.append(f"{type(exc).__name__} {str(exc).replace(url, 'URL')}")
            continue
        meta = _page(page)["ResponseMetadata"]
        count = len(page.get("Contents") or page.get("Items") or page.get("Reservations"))
        seen.append(f"{count} {meta}")
    return seen


@pytest.mark.parametrize(
    ("service", "operation", "params", "fault"),
    [
        ("s3", "ListObjectsV2", {"Bucket": "flat", "MaxKeys": 10}, Throttle(service="s3", every=3)),
        ("dynamodb", "Scan", {"TableName": "tbl", "Limit": 5}, Throttle(every=3)),
        ("ec2", "DescribeInstances", {"MaxResults": 5}, Fault(kind="internal_error", every=2)),
        ("s3", "ListObjectsV2", {"Bucket": "flat"}, Fault(kind="cut_body", every=3)),
        ("dynamodb", "Scan", {"TableName": "tbl", "Limit": 5}, Fault(kind="cut_body", every=3)),
    ],
)
async def test_errors_are_botocore_errors_and_sent_once(
    make_client: Any, service: str, operation: str, params: dict[str, Any], fault: Any
) -> None:
    outcomes = {}
    for direct in (True, False):
        with LocalEndpoint(
            buckets=[Bucket("flat", 3_000, "flat")],
            tables=[Table("tbl", 200)],
            ec2=Ec2Fleet(regions=("us-east-1",), per_region=9),
            throttles=[fault] if isinstance(fault, Throttle) else [],
            faults=[fault] if isinstance(fault, Fault) else [],
        ) as ep:
            client = await make_client(service, ep.url, direct=direct)
            outcomes[direct] = await _outcomes(client, ep.url, operation, 9, **params)
            # Each call was one request: an error is not sent again.
            assert ep.stats().count(service, operation) == 9
            if direct:
                # The first was botocore's, to learn from; the rest went direct.
                assert _calls(client).sent == 8
    assert outcomes[True] == outcomes[False]
    assert len(set(outcomes[True])) == 2  # pages and one kind of error


async def test_handlers_of_the_caller_still_run_on_each_request(make_client: Any) -> None:
    with LocalEndpoint(buckets=[Bucket("flat", 300, "flat")]) as ep:
        client = await make_client("s3", ep.url)
        seen: list[str] = []

        def before(params: dict[str, Any], **kwargs: Any) -> None:
            params["MaxKeys"] = 25  # the caller's own change to every request
            seen.append("before")

        def after(parsed: dict[str, Any], **kwargs: Any) -> None:
            seen.append(f"after {parsed['KeyCount']}")

        client.meta.events.register("before-parameter-build.s3.ListObjectsV2", before)
        client.meta.events.register("after-call.s3.ListObjectsV2", after)
        pages = await _all_pages(client, "ListObjectsV2", Bucket="flat")
        assert len(pages) == 12
        assert seen == ["before", "after 25"] * 12
        assert _calls(client).sent == 10


async def test_a_handler_it_does_not_know_sends_everything_through_botocore(
    make_client: Any,
) -> None:
    with LocalEndpoint(buckets=[Bucket("flat", 300, "flat")]) as ep:
        client = await make_client("s3", ep.url)
        first = await _all_pages(client, "ListObjectsV2", Bucket="flat", MaxKeys=100)
        assert _calls(client).sent == 1
        signed: list[str] = []

        def note(request: Any, **kwargs: Any) -> None:
            signed.append(request.url)

        client.meta.events.register("before-sign.s3", note)
        again = await _all_pages(client, "ListObjectsV2", Bucket="flat", MaxKeys=100)
        assert again == first
        assert len(signed) == 3  # botocore signed every request
        assert _calls(client).sent == 1
        client.meta.events.unregister("before-sign.s3", note)
        await _all_pages(client, "ListObjectsV2", Bucket="flat", MaxKeys=100)
        assert _calls(client).sent == 4


async def test_a_request_cancelled_while_its_kind_is_learnt_leaves_nothing_behind(
    make_client: Any,
) -> None:
    slow = LatencyModel(fixed=5.0, service="s3")
    with LocalEndpoint(buckets=[Bucket("flat", 300, "flat")], latency=[slow]) as ep:
        client = await make_client("s3", ep.url)
        calls = _calls(client)
        with anyio.move_on_after(0.3) as scope:
            await client.list_objects_v2(Bucket="flat", MaxKeys=10)
        assert scope.cancelled_caught
        with anyio.move_on_after(0.3):
            await paginate(client, "ListObjectsV2", Bucket="flat").__anext__()
        # Nothing was learnt, and nothing was left marked as being learnt:
        # the next request of the kind learns it.
        assert calls.learnt == 0
        assert calls._templates == {}


async def test_the_fetcher_lists_alike_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    with LocalEndpoint(buckets=[Bucket("deep", 5_000, "deep")]) as ep:
        listings = {}
        for direct in (True, False):
            async with Fetcher(direct=direct) as fetcher:
                streams = plan_s3(["s3://deep"], endpoint_url=ep.url, region="us-east-1", shards=8)
                keys = []
                async with fetcher.pages(streams) as flow:
                    async for _stream, page in flow:
                        keys.extend(c["Key"] for c in page.get("Contents", ()))
                calls = getattr(next(iter(fetcher._clients.values())), "_asyncpager_direct", None)
                listings[direct] = sorted(keys)
                if direct:
                    assert calls is not None
                    assert calls.sent > calls.learnt
                else:
                    assert calls is None
        assert listings[True] == listings[False]
        assert len(listings[True]) == 5_000
        monkeypatch.setenv(ENV_VAR, "0")
        assert not direct_enabled()
        async with Fetcher() as fetcher:
            streams = plan_s3(["s3://deep"], endpoint_url=ep.url, region="us-east-1", shards=1)
            async with fetcher.pages(streams) as flow:
                async for _stream, _page in flow:
                    break
            client = next(iter(fetcher._clients.values()))
            assert not hasattr(client, "_asyncpager_direct")


# -- signatures -----------------------------------------------------------

_TEXT = st.text(alphabet=string.ascii_letters + string.digits + " -_.~/%+=&:,", max_size=20)
_HEADER_NAMES = st.sampled_from(
    ["Content-Type", "X-Amz-Target", "x-amz-meta-a", "X-Custom", "User-Agent", "Expect", "Range"]
)


@settings(max_examples=150, deadline=None)
@given(
    s3=st.booleans(),
    method=st.sampled_from(["GET", "POST", "PUT"]),
    path=st.lists(_TEXT, max_size=4).map(lambda parts: "/" + "/".join(parts)),
    query=st.lists(st.tuples(_TEXT, _TEXT), max_size=5),
    headers=st.dictionaries(_HEADER_NAMES, _TEXT, max_size=4),
    body=st.binary(max_size=50),
    token=st.one_of(st.none(), _TEXT.filter(bool)),
    https=st.booleans(),
)
def test_signatures_are_botocore_signatures(
    s3: bool,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes,
    token: str | None,
    https: bool,
) -> None:
    from urllib.parse import quote

    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    auth = (S3SigV4Auth if s3 else SigV4Auth)(credentials, "svc", "eu-west-1")
    target = quote(path, safe="/~%")
    if query:
        target += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
    url = f"{'https' if https else 'http'}://Host.Example:8443{target}"
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    stamp = datetime.datetime(2026, 11, 28, 1, 2, 3)
    request.context["timestamp"] = stamp.strftime("%Y%m%dT%H%M%SZ")
    auth._modify_request_before_signing(request)
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    auth._inject_signature_to_request(request, signature)
    expected = request.headers["Authorization"]
    sent = {k: v for k, v in request.headers.items() if k != "Authorization"}
    payload = canonical.rsplit("\n", 1)[1]
    ours = Signer("svc", "eu-west-1", s3=s3).authorization(
        method, url, sent, payload, request.context["timestamp"], "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    )  # fmt: skip
    assert ours == expected
