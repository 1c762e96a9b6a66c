"""The regions/accounts planner against moto: region lists, "all", global
services, two accounts as two profiles."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from asyncpager.engine import Fetcher
from asyncpager.errors import ConfigurationError
from asyncpager.plan.regions import (
    global_region,
    known_regions,
    label_items,
    plan_regions,
    region_streams,
    service_regions,
    with_origin,
)
from asyncpager.streams import Stream

pytestmark = pytest.mark.anyio

DEFAULT_ACCOUNT = "123456789012"  # moto's account for plain test keys
OTHER_ACCOUNT = "111111111111"
QUEUES = {"us-east-1": 1, "eu-west-1": 2, "ap-southeast-2": 3}
QUEUES_B = {"us-east-1": 2, "eu-west-1": 1}
UNREACHABLE = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def fleet(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """SQS queues in three regions of the default account and two regions of
    a second account, IAM users, and profile files for both accounts.

    A queue's name holds its region, its URL its account, so a test can check
    the labels of every item against the item itself. SQS rather than EC2:
    moto builds an EC2 backend per (account, region) in about a second, so a
    fan-out over every region would take half a minute; SQS's are cheap.

    moto keeps one set of resources per account and tells accounts apart by
    the access key: credentials from STS ``AssumeRole`` into another account
    belong to that account.
    """
    import boto3

    run = uuid.uuid4().hex[:8]
    sts = boto3.client("sts", region_name="us-east-1", endpoint_url=moto_server)
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/reader", RoleSessionName="plan-tests"
    )["Credentials"]
    other = {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }
    for queues, keys in ((QUEUES, {}), (QUEUES_B, other)):
        for region, count in queues.items():
            sqs = boto3.client("sqs", region_name=region, endpoint_url=moto_server, **keys)
            for i in range(count):
                sqs.create_queue(QueueName=f"plan-{run}-{region}-{i}")
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=moto_server)
    for i in range(3):
        iam.create_user(UserName=f"plan-{run}-{i}", Path=f"/plan-{run}/")

    folder = tmp_path_factory.mktemp("aws")
    credentials = folder / "credentials"
    config = folder / "config"
    credentials.write_text(
        "[acct-a]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
        # The same account again, under another name.
        "[acct-a-again]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
        "[acct-b]\n" + "".join(f"{k} = {v}\n" for k, v in other.items())
    )
    config.write_text(
        "[profile acct-a]\nregion = eu-west-1\n"
        "[profile acct-a-again]\nregion = eu-west-1\n"
        "[profile acct-b]\nregion = us-east-1\n"
    )
    return {
        "run": run,
        "endpoint": moto_server,
        "credentials": credentials,
        "config": config,
    }


@pytest.fixture
def profiles(fleet: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(fleet["credentials"]))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(fleet["config"]))


def prefix(fleet: dict[str, Any]) -> dict[str, Any]:
    return {"QueueNamePrefix": f"plan-{fleet['run']}-"}


def expected_queues(
    queues: dict[str, int], fleet: dict[str, Any], account: str = DEFAULT_ACCOUNT
) -> set[tuple[str, str, str]]:
    return {
        (account, region, f"plan-{fleet['run']}-{region}-{i}")
        for region, count in queues.items()
        for i in range(count)
    }


async def fetch_queues(streams: list[Stream]) -> list[tuple[str, str, str]]:
    """(account, region, queue name) of every queue, as labelled; checks each
    label against the queue's URL (account) and name (region)."""
    seen: list[tuple[str, str, str]] = []
    # The Fetcher makes every stream's client: one session per profile.
    async with Fetcher(concurrency=8) as fetcher:
        async for stream, page in fetcher.pages(streams):
            for labels, url in label_items(stream, page):
                account, name = url.split("/")[-2:]
                assert account == labels["account"], (url, labels)
                assert name.split("-", 2)[2].startswith(labels["region"] + "-"), (url, labels)
                seen.append((labels["account"], labels["region"], name))
    return seen


async def test_region_list_fan_out(fleet: dict[str, Any]) -> None:
    regions = ["us-east-1", "eu-west-1", "ap-southeast-2", "sa-east-1", "eu-west-1"]
    streams = await plan_regions(
        "sqs",
        "ListQueues",
        prefix(fleet),
        regions=regions,
        endpoint_url=fleet["endpoint"],
        page_size=2,
    )
    assert [s.region for s in streams] == ["us-east-1", "eu-west-1", "ap-southeast-2", "sa-east-1"]
    assert all(s.labels["region"] == s.region for s in streams)
    assert {s.labels["account"] for s in streams} == {DEFAULT_ACCOUNT}
    seen = await fetch_queues(streams)
    assert len(seen) == len(set(seen)) == sum(QUEUES.values())
    assert set(seen) == expected_queues(QUEUES, fleet)


async def test_all_regions_are_the_enabled_ones_where_the_service_exists(
    fleet: dict[str, Any],
) -> None:
    import boto3

    streams = await plan_regions(
        "sqs",
        "ListQueues",
        prefix(fleet),
        regions="all",
        endpoint_url=fleet["endpoint"],
        page_size=2,
    )
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=fleet["endpoint"])
    reported = {r["RegionName"] for r in ec2.describe_regions()["Regions"]}
    # moto reports China and GovCloud regions too; they are other partitions.
    assert {"cn-north-1", "us-gov-west-1"} <= reported
    expected_regions = reported & set(service_regions("sqs") or ())
    assert {s.region for s in streams} == expected_regions
    assert len(streams) == len(expected_regions) > 20
    seen = await fetch_queues(streams)
    assert len(seen) == len(set(seen)) == sum(QUEUES.values())
    assert set(seen) == expected_queues(QUEUES, fleet)


async def test_all_leaves_out_regions_without_the_service(fleet: dict[str, Any]) -> None:
    import boto3

    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=fleet["endpoint"])
    enabled = {r["RegionName"] for r in ec2.describe_regions()["Regions"]} & set(
        service_regions("ec2") or ()
    )
    # A regional service that botocore lists in fewer regions than EC2.
    service, operation = next(
        (name, operation)
        for name, operation in (
            ("memorydb", "DescribeClusters"),
            ("braket", "SearchDevices"),
            ("iotfleetwise", "ListCampaigns"),
        )
        if 0 < len(enabled & set(service_regions(name) or ())) < len(enabled)
    )
    streams = await plan_regions(
        service,
        operation,
        regions="all",
        resolve_accounts=False,
        endpoint_url=fleet["endpoint"],
    )
    assert {s.region for s in streams} == enabled & set(service_regions(service) or ())
    assert all(s.labels["account"] is None for s in streams)


async def test_global_service_is_one_stream_in_its_home_region(fleet: dict[str, Any]) -> None:
    assert global_region("iam") == "us-east-1"
    assert global_region("route53") == "us-east-1"
    assert global_region("ec2") is None
    for regions in (["eu-west-1", "ap-southeast-2"], "all"):
        streams = await plan_regions(
            "iam",
            "ListUsers",
            {"PathPrefix": f"/plan-{fleet['run']}/"},
            regions=regions,
            endpoint_url=fleet["endpoint"],
        )
        assert [(s.region, s.labels["region"]) for s in streams] == [("us-east-1", "us-east-1")]
        names: list[str] = []
        async with Fetcher(concurrency=2) as fetcher:
            async for stream, page in fetcher.pages(streams):
                names += [user["UserName"] for _labels, user in label_items(stream, page)]
        assert sorted(names) == [f"plan-{fleet['run']}-{i}" for i in range(3)]


@pytest.mark.parametrize(
    ("regions", "message"),
    [
        (["us-east-1", "us-east-11"], "unknown region name 'us-east-11'"),
        (["eu-west-1", "Europe"], "unknown region name 'Europe'"),
        ("us-east-1", "must be a list of names"),
        ([], "at least one region"),
    ],
)
async def test_bad_regions_are_a_configuration_error(regions: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        region_streams("ec2", "DescribeInstances", regions=regions)
    # Checked before any call: nothing listens on the endpoint.
    with pytest.raises(ConfigurationError, match=message):
        await plan_regions(
            "ec2",
            "DescribeInstances",
            regions=regions,
            resolve_accounts=False,
            endpoint_url=UNREACHABLE,
        )


async def test_unknown_service_operation_and_empty_profiles() -> None:
    with pytest.raises(ConfigurationError, match="unknown service 'ec3'"):
        region_streams("ec3", "DescribeInstances", regions=["us-east-1"])
    # Checked before any call: nothing listens on the endpoint.
    for service, operation, message in [
        ("ec3", "DescribeInstances", "unknown service 'ec3'"),
        ("ec2", "DescribeInstanzes", "ec2 has no operation 'DescribeInstanzes'"),
        ("ec2", "RunInstances", "ec2 RunInstances is not pageable"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            await plan_regions(service, operation, regions="all", endpoint_url=UNREACHABLE)
    with pytest.raises(ConfigurationError, match="at least one profile"):
        await plan_regions("ec2", "DescribeInstances", regions=["us-east-1"], profiles=[])


@pytest.mark.usefixtures("profiles")
async def test_two_profiles_are_two_accounts(fleet: dict[str, Any]) -> None:
    regions = ["us-east-1", "eu-west-1"]
    streams = await plan_regions(
        "sqs",
        "ListQueues",
        prefix(fleet),
        regions=regions,
        profiles=["acct-a", "acct-b"],
        endpoint_url=fleet["endpoint"],
        page_size=1,
    )
    assert [(s.profile, s.region, s.labels["account"]) for s in streams] == [
        ("acct-a", "us-east-1", DEFAULT_ACCOUNT),
        ("acct-a", "eu-west-1", DEFAULT_ACCOUNT),
        ("acct-b", "us-east-1", OTHER_ACCOUNT),
        ("acct-b", "eu-west-1", OTHER_ACCOUNT),
    ]
    seen = await fetch_queues(streams)
    in_regions = {r: n for r, n in QUEUES.items() if r in regions}
    expected = expected_queues(in_regions, fleet) | expected_queues(QUEUES_B, fleet, OTHER_ACCOUNT)
    assert len(seen) == len(set(seen)) == len(expected) == 6
    assert set(seen) == expected
    stamped = [with_origin({"QueueUrl": "u"}, s.labels) for s in streams[1:3]]
    assert stamped == [
        {
            "QueueUrl": "u",
            "_region": "eu-west-1",
            "_account": DEFAULT_ACCOUNT,
            "_profile": "acct-a",
        },
        {"QueueUrl": "u", "_region": "us-east-1", "_account": OTHER_ACCOUNT, "_profile": "acct-b"},
    ]


@pytest.mark.usefixtures("profiles")
async def test_profiles_with_all_regions_and_a_shared_account(fleet: dict[str, Any]) -> None:
    streams = await plan_regions(
        "sqs",
        "ListQueues",
        prefix(fleet),
        regions="all",
        profiles=["acct-a", "acct-a-again", "acct-b", "acct-a"],
        endpoint_url=fleet["endpoint"],
    )
    # acct-a-again is acct-a's account: listing it again would repeat items.
    assert {s.profile for s in streams} == {"acct-a", "acct-b"}
    # Each profile's "all" is its own account's enabled regions (asked once per
    # profile) where SQS exists; the fan-out over them is run in full by
    # test_all_regions_are_the_enabled_ones_where_the_service_exists.
    regions = set(service_regions("sqs") or ())
    for profile, account in (("acct-a", DEFAULT_ACCOUNT), ("acct-b", OTHER_ACCOUNT)):
        mine = [s for s in streams if s.profile == profile]
        assert len({s.region for s in mine}) == len(mine) == len(regions)
        assert {s.region for s in mine} == regions
        assert {s.labels["account"] for s in mine} == {account}
    # Where the queues are, each account's are listed under its own label.
    where = [s for s in streams if s.region in {*QUEUES, *QUEUES_B}]
    seen = await fetch_queues(where)
    expected = expected_queues(QUEUES, fleet) | expected_queues(QUEUES_B, fleet, OTHER_ACCOUNT)
    assert len(seen) == len(set(seen)) == len(expected)
    assert set(seen) == expected

    unresolved = await plan_regions(
        "sqs",
        "ListQueues",
        regions=["us-east-1"],
        profiles=["acct-a", "acct-a-again"],
        resolve_accounts=False,
        endpoint_url=UNREACHABLE,  # no call is needed
    )
    assert [(s.profile, s.labels["account"]) for s in unresolved] == [
        ("acct-a", None),
        ("acct-a-again", None),
    ]


@pytest.mark.usefixtures("profiles")
async def test_unknown_profile_is_a_configuration_error(fleet: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="profile 'nobody' not found"):
        await plan_regions(
            "sqs",
            "ListQueues",
            regions=["us-east-1"],
            profiles=["acct-a", "nobody"],
            endpoint_url=fleet["endpoint"],
        )


def test_label_items_and_with_origin() -> None:
    labels = {"region": "eu-west-1", "profile": None, "account": "123456789012"}
    stream = Stream("sqs", "list_queues", region="eu-west-1", labels=labels)
    page: dict[str, Any] = {"QueueUrls": ["https://q/1", "https://q/2"]}
    pairs = list(label_items(stream, page))
    assert pairs == [(labels, "https://q/1"), (labels, "https://q/2")]
    assert with_origin(pairs[0][1], labels) == {
        "_value": "https://q/1",
        "_region": "eu-west-1",
        "_account": "123456789012",
    }
    ec2 = Stream("ec2", "DescribeInstances", labels=labels)
    page = {"Reservations": [{"ReservationId": "r-1", "Instances": [{"InstanceId": "i-1"}]}]}
    assert [item["ReservationId"] for _l, item in label_items(ec2, page)] == ["r-1"]
    [(_l, instance)] = label_items(ec2, page, result_key="Reservations[].Instances[]")
    assert with_origin(instance, labels) == {
        "InstanceId": "i-1",
        "_region": "eu-west-1",
        "_account": "123456789012",
    }
    assert list(label_items(ec2, {"Reservations": []})) == []
    with pytest.raises(ConfigurationError, match="no operation"):
        list(label_items(Stream("ec2", "describe_nothing"), page))


def test_region_data() -> None:
    assert {"us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1"} <= known_regions()
    assert "cn-north-1" not in (service_regions("ec2") or [])
    assert "cn-north-1" in (service_regions("ec2", "aws-cn") or [])
    assert service_regions("iam") == []
