"""Regions and accounts: one stream per (profile, region).

AWS throttles and stores data per account *and* region, so "every EC2
instance I own" is one independent listing per (account, region). This
planner makes those listings explicit :class:`Stream` s; the engine runs
them side by side and paces each region on its own (``RateLimit(...,
per="region")``).

Which regions
=============

``regions`` is a list of names or ``"all"``.

* A list is taken as given, after two checks: every name must be a region
  botocore knows in some partition (a typo such as ``us-east-11`` raises
  :class:`ConfigurationError` instead of failing later on a DNS lookup), and
  duplicates are dropped. A region where botocore's endpoint data does not
  list the service is *not* dropped: the user asked for it, and that data
  lags behind new launches.
* ``"all"`` means the regions *enabled for the account* (EC2
  ``DescribeRegions`` with ``AllRegions=False``: the default regions plus the
  opt-in regions the account opted into), intersected with the regions where
  the service exists in that partition according to botocore's endpoint data
  (``Session.get_available_regions``). It is resolved once per profile, since
  two accounts may have opted into different regions. A service that
  botocore's endpoint data does not describe at all (recent services are
  resolved by endpoint rules only) gets every enabled region.

Global services
===============

IAM, Route 53, CloudFront, Organizations and the like have one endpoint per
partition, not one per region; listing IAM users "in every region" would
list the same users thirty times. A service is global when botocore's
endpoint data marks it ``isRegionalized: false``; its home region is the
credential scope of its partition endpoint (``us-east-1`` in the ``aws``
partition). :data:`GLOBAL_SERVICES` adds the few global services the endpoint
data does not describe. For a global service every requested region
collapses into one stream in its home region, labelled with that region.

Accounts
========

``profiles`` names AWS profiles (``None`` is the default credential chain);
each profile is one account, or rather one set of credentials. The account
id comes from STS ``GetCallerIdentity``, called once per profile
(``resolve_accounts=False`` skips it, e.g. where STS is blocked). Two
profiles that turn out to be the same account would list the same
resources twice; the later one is dropped (``dedupe_accounts``).

Where an item came from
=======================

Every stream's ``labels`` carry ``region``, ``profile`` and ``account``.
The engine hands the stream along with each page, so a consumer can stamp
items without any bookkeeping of its own: :func:`label_items` yields
``(labels, item)`` for the items of a page and :func:`with_origin` adds
``_region``/``_account``/``_profile`` fields to an item.

Planning calls (DescribeRegions, GetCallerIdentity) go through a
:class:`~asyncpager.engine.Fetcher`'s clients when one is given (they are
then closed with it), or through short-lived clients of their own otherwise.
They are retried with the same full-jitter policy as page fetches.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import anyio
import botocore.exceptions
import botocore.session
import jmespath

from asyncpager._clients import share_loader
from asyncpager.errors import ConfigurationError
from asyncpager.retry import Failure, RetryPolicy, classify, translate
from asyncpager.streams import Stream

if TYPE_CHECKING:
    from asyncpager.engine import Fetcher

__all__ = [
    "GLOBAL_SERVICES",
    "caller_account",
    "check_regions",
    "default_region",
    "enabled_regions",
    "global_region",
    "known_regions",
    "label_items",
    "partition_of",
    "plan_regions",
    "region_streams",
    "service_regions",
    "with_origin",
]

#: Global services that botocore's endpoint data does not describe, with
#: their home region. The endpoint data covers IAM, Route 53, CloudFront,
#: Organizations, WAF Classic, Shield, Budgets, Cost Explorer and others.
GLOBAL_SERVICES: Mapping[str, str] = {"account": "us-east-1"}

#: Where planning calls go when neither a region nor the profile names one.
DEFAULT_HOME_REGION = "us-east-1"

_ORIGIN_KEYS = ("region", "account", "profile")


# -- botocore's endpoint data ------------------------------------------------


@functools.cache
def _botocore() -> Any:
    """One botocore session for reading bundled data (models, endpoints).

    Loading models is slow and the data never changes within a process.
    """
    session = botocore.session.Session()
    share_loader(session)
    return session


@functools.cache
def _endpoint_data() -> Mapping[str, Any]:
    data: Mapping[str, Any] = _botocore().get_data("endpoints")
    return data


def _partition(name: str) -> Mapping[str, Any]:
    for partition in _endpoint_data()["partitions"]:
        if partition["partition"] == name:
            found: Mapping[str, Any] = partition
            return found
    raise ConfigurationError(f"unknown partition {name!r}")


@functools.cache
def _endpoint_prefix(service: str) -> str:
    try:
        data = _botocore().get_service_data(service)
    except botocore.exceptions.UnknownServiceError:
        raise ConfigurationError(f"unknown service {service!r}") from None
    prefix: str = data["metadata"].get("endpointPrefix", service)
    return prefix


@functools.cache
def known_regions() -> frozenset[str]:
    """Every region name botocore knows, in every partition."""
    return frozenset(
        region for partition in _endpoint_data()["partitions"] for region in partition["regions"]
    )


def partition_of(region: str) -> str | None:
    """The partition a region belongs to (``aws``, ``aws-cn``, ...).

    Decided by botocore's region lists and name patterns; ``None`` for a name
    that fits no partition.
    """
    try:
        name: str = _botocore().get_partition_for_region(region)
    except botocore.exceptions.UnknownRegionError:
        return None
    return name


def global_region(service: str, partition: str = "aws") -> str | None:
    """The home region of a global service, or ``None`` for a regional one."""
    if service in GLOBAL_SERVICES:
        return GLOBAL_SERVICES[service]
    entry = _partition(partition)["services"].get(_endpoint_prefix(service))
    if entry is None or entry.get("isRegionalized", True):
        return None
    home = entry.get("endpoints", {}).get(entry.get("partitionEndpoint"), {})
    region: str = home.get("credentialScope", {}).get("region", DEFAULT_HOME_REGION)
    return region


def service_regions(service: str, partition: str = "aws") -> list[str] | None:
    """The regions where botocore's endpoint data lists ``service``.

    ``None`` when the data does not describe the service at all (then nothing
    can be ruled out), as opposed to ``[]`` for a service known to exist in
    no region of the partition.
    """
    prefix = _endpoint_prefix(service)
    if prefix not in _partition(partition)["services"]:
        return None
    regions: list[str] = _botocore().get_available_regions(service, partition)
    return regions


def check_regions(regions: Sequence[str]) -> list[str]:
    """``regions`` without duplicates; raises on a name botocore does not know."""
    if isinstance(regions, str):
        raise ConfigurationError(f'regions must be a list of names or "all", got {regions!r}')
    if not regions:
        raise ConfigurationError("regions must name at least one region")
    known = known_regions()
    out: list[str] = []
    for region in regions:
        if region not in known:
            raise ConfigurationError(f"unknown region name {region!r}")
        if region not in out:
            out.append(region)
    return out


# -- planning clients --------------------------------------------------------


class _PlanningClients:
    """Clients for the few calls a planner makes before any stream runs.

    With a ``fetcher`` they are the fetcher's own (created on first use,
    closed with it); otherwise they are made here and closed on exit, so a
    planner can run before the Fetcher exists (it may need the plan's rate
    limits to be built).
    """

    def __init__(self, fetcher: Fetcher | None, endpoint_url: str | None) -> None:
        self._fetcher = fetcher
        self._endpoint_url = endpoint_url
        self._stack = AsyncExitStack()
        self._clients: dict[tuple[str, str | None, str | None], Any] = {}
        self._sessions: dict[str | None, Any] = {}

    async def __aenter__(self) -> _PlanningClients:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Closing awaits and must finish even while the caller is cancelled,
        # or connections leak; bounded in case a peer hangs.
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await self._stack.aclose()

    async def get(self, service: str, region: str | None, profile: str | None) -> Any:
        if self._fetcher is not None:
            stream = Stream(
                service, "-", region=region, profile=profile, endpoint_url=self._endpoint_url
            )
            return await self._fetcher.client_for(stream)
        key = (service, region, profile)
        client = self._clients.get(key)
        if client is None:
            from botocore.config import Config

            session = self._session(profile)
            # The planner retries itself (``_call``), as the engine does.
            config = Config(retries={"total_max_attempts": 1, "mode": "standard"})
            try:
                client = await self._stack.enter_async_context(
                    session.create_client(
                        service,
                        region_name=region,
                        endpoint_url=self._endpoint_url,
                        config=config,
                    )
                )
            except botocore.exceptions.ProfileNotFound as exc:
                raise ConfigurationError(f"AWS profile {profile!r} not found") from exc
            self._clients[key] = client
        return client

    def _session(self, profile: str | None) -> Any:
        session = self._sessions.get(profile)
        if session is None:
            from aiobotocore.session import AioSession

            session = AioSession(profile=profile)
            share_loader(session)
            self._sessions[profile] = session
        return session


def default_region(profile: str | None = None) -> str | None:
    """The region a profile (or the default chain) is configured with."""
    from aiobotocore.session import AioSession

    try:
        region: str | None = AioSession(profile=profile).get_config_variable("region")
    except botocore.exceptions.ProfileNotFound as exc:
        raise ConfigurationError(f"AWS profile {profile!r} not found") from exc
    return region


async def _call(client: Any, method: str, /, **kwargs: Any) -> dict[str, Any]:
    """One planning call, retried like a page fetch, its errors translated."""
    retry = RetryPolicy()
    operation = client.meta.method_to_api_mapping.get(method, method)
    failures = 0
    while True:
        try:
            answer: dict[str, Any] = await getattr(client, method)(**kwargs)
            return answer
        except botocore.exceptions.ProfileNotFound as exc:
            raise ConfigurationError(f"AWS profile not found: {exc}") from exc
        except Exception as exc:
            failure = classify(exc)
            failures += 1
            if failure is Failure.FATAL or failures >= retry.attempts_for(failure):
                error = translate(exc, operation=operation, last_token=None)
                if error is None:
                    raise
                raise error from exc
            await anyio.sleep(retry.backoff(failures - 1))


def _home(profile: str | None, region: str | None) -> str:
    return region or default_region(profile) or DEFAULT_HOME_REGION


# -- resolution (calls) ------------------------------------------------------


async def enabled_regions(
    *,
    profile: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    fetcher: Fetcher | None = None,
) -> list[str]:
    """The regions enabled for the profile's account, in its partition.

    EC2 ``DescribeRegions`` with ``AllRegions=False`` lists the regions the
    account may use (defaults plus opted-in ones). It is sent to ``region``,
    else the profile's region, else us-east-1; the answer is kept to that
    region's partition.
    """
    home = _home(profile, region)
    async with _PlanningClients(fetcher, endpoint_url) as clients:
        return await _enabled(clients, home, profile)


async def _enabled(clients: _PlanningClients, home: str, profile: str | None) -> list[str]:
    ec2 = await clients.get("ec2", home, profile)
    answer = await _call(ec2, "describe_regions", AllRegions=False)
    partition = partition_of(home) or "aws"
    names = sorted(str(r["RegionName"]) for r in answer.get("Regions", []))
    return [name for name in names if partition_of(name) == partition]


async def caller_account(
    *,
    profile: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    fetcher: Fetcher | None = None,
) -> str:
    """The account id behind a profile (STS ``GetCallerIdentity``)."""
    home = _home(profile, region)
    async with _PlanningClients(fetcher, endpoint_url) as clients:
        sts = await clients.get("sts", home, profile)
        answer = await _call(sts, "get_caller_identity")
    return str(answer["Account"])


# -- planning ----------------------------------------------------------------


def region_streams(
    service: str,
    operation: str,
    params: Mapping[str, Any] | None = None,
    *,
    regions: Sequence[str],
    profile: str | None = None,
    account: str | None = None,
    endpoint_url: str | None = None,
    page_size: int | None = None,
    max_items: int | None = None,
) -> list[Stream]:
    """One stream per region for one profile; no calls.

    ``regions`` is an explicit list (checked by name, duplicates dropped). A
    global service collapses to one stream in its home region. ``max_items``
    applies to each stream, as ``PaginationConfig`` does in boto3.
    """
    names = check_regions(regions)
    home = global_region(service, partition_of(names[0]) or "aws")
    if home is not None:
        names = [home]
    return [
        Stream(
            service,
            operation,
            dict(params or {}),
            region=name,
            profile=profile,
            endpoint_url=endpoint_url,
            page_size=page_size,
            max_items=max_items,
            labels={"region": name, "profile": profile, "account": account},
        )
        for name in names
    ]


async def plan_regions(
    service: str,
    operation: str,
    params: Mapping[str, Any] | None = None,
    *,
    regions: Sequence[str] | Literal["all"],
    profiles: Sequence[str | None] = (None,),
    resolve_accounts: bool = True,
    dedupe_accounts: bool = True,
    home_region: str | None = None,
    endpoint_url: str | None = None,
    fetcher: Fetcher | None = None,
    page_size: int | None = None,
    max_items: int | None = None,
) -> list[Stream]:
    """Streams of ``operation`` in every (profile, region) asked for.

    ::

        streams = await plan_regions(
            "ec2", "DescribeInstances", regions="all", profiles=["prod", "staging"]
        )
        async with Fetcher(rate_limits=[RateLimit(20, service="ec2", per="region")]) as f:
            async for stream, page in f.pages(streams):
                for labels, reservation in label_items(stream, page):
                    ...

    ``regions="all"`` and the account ids need calls (see the module
    docstring); they are made for all profiles at once, in ``home_region``
    (else each profile's own region, else us-east-1). Streams come out
    profile by profile, regions in the order given (sorted for ``"all"``).
    """
    if not profiles:
        raise ConfigurationError("profiles must name at least one profile (None is the default)")
    # A typo in the service or operation should not cost a call per profile.
    _paginator(service, operation)
    unique_profiles = list(dict.fromkeys(profiles))
    explicit: list[str] | None = None
    if regions == "all":
        first_home = _home(unique_profiles[0], home_region)
        home = global_region(service, partition_of(first_home) or "aws")
        if home is not None:
            explicit = [home]
    else:
        explicit = check_regions(regions)

    resolved: dict[str | None, tuple[list[str], str | None]] = {}
    errors: dict[str | None, BaseException] = {}

    async with _PlanningClients(fetcher, endpoint_url) as clients:

        async def resolve(profile: str | None) -> None:
            try:
                home = _home(profile, home_region)
                account: str | None = None
                if resolve_accounts:
                    sts = await clients.get("sts", home, profile)
                    account = str((await _call(sts, "get_caller_identity"))["Account"])
                names = explicit
                if names is None:
                    names = await _all_regions(clients, service, home, profile)
                resolved[profile] = (names, account)
            except Exception as exc:
                # Raised below in profile order, not as a task group's group.
                errors[profile] = exc

        async with anyio.create_task_group() as tg:
            for profile in unique_profiles:
                tg.start_soon(resolve, profile)

    for profile in unique_profiles:
        if profile in errors:
            raise errors[profile]

    streams: list[Stream] = []
    seen_accounts: set[str] = set()
    for profile in unique_profiles:
        names, account = resolved[profile]
        if account is not None and dedupe_accounts:
            if account in seen_accounts:
                continue
            seen_accounts.add(account)
        if not names:
            continue
        streams += region_streams(
            service,
            operation,
            params,
            regions=names,
            profile=profile,
            account=account,
            endpoint_url=endpoint_url,
            page_size=page_size,
            max_items=max_items,
        )
    return streams


async def _all_regions(
    clients: _PlanningClients, service: str, home: str, profile: str | None
) -> list[str]:
    enabled = await _enabled(clients, home, profile)
    available = service_regions(service, partition_of(home) or "aws")
    if available is None:
        return enabled
    allowed = set(available)
    return [name for name in enabled if name in allowed]


# -- items and their origin --------------------------------------------------


@functools.cache
def _paginator(service: str, operation: str) -> Mapping[str, Any]:
    """botocore's paginator model of an operation (API or method name)."""
    session = _botocore()
    _endpoint_prefix(service)  # an unknown service fails here, clearly
    model = session.get_service_model(service)
    api = operation
    if operation not in model.operation_names:
        # A client method name (describe_instances): find its API name.
        from botocore import xform_name

        matches = [name for name in model.operation_names if xform_name(name) == operation]
        if not matches:
            raise ConfigurationError(f"{service} has no operation {operation!r}")
        api = matches[0]
    try:
        paginator: Mapping[str, Any] = session.get_paginator_model(service).get_paginator(api)
    except ValueError:
        raise ConfigurationError(f"{service} {api} is not pageable") from None
    return paginator


@functools.cache
def _result_key(service: str, operation: str) -> Any:
    """The compiled primary result key of an operation's paginator."""
    key = _paginator(service, operation).get("result_key")
    if isinstance(key, list):
        key = key[0]
    if not isinstance(key, str):
        raise ConfigurationError(f"{service} {operation} has no result key")
    return jmespath.compile(key)


def label_items(
    stream: Stream, page: Mapping[str, Any], *, result_key: str | None = None
) -> Iterator[tuple[Mapping[str, Any], Any]]:
    """``(labels, item)`` for every item of ``page``.

    The items are those under the operation's primary result key, as
    :meth:`PageStream.items` yields them (EC2 ``DescribeInstances`` yields
    reservations); ``result_key`` is a JMESPath expression to pick others
    (``"Reservations[].Instances[]"``). ``labels`` is ``stream.labels``, the
    same mapping for every item of the stream.
    """
    compiled = (
        jmespath.compile(result_key)
        if result_key is not None
        else _result_key(stream.service, stream.operation)
    )
    found = compiled.search(page)
    if not found:
        return
    items = found if isinstance(found, list) else [found]
    for item in items:
        yield stream.labels, item


def with_origin(
    item: Any, labels: Mapping[str, Any], *, keys: Sequence[str] = _ORIGIN_KEYS
) -> dict[str, Any]:
    """``item`` with an ``_region``/``_account``/``_profile`` field per label.

    Labels that are ``None`` (the default profile, an account not looked up)
    are left out. An item that is not a mapping (``ListQueues`` yields URLs)
    is wrapped as ``{"_value": item, ...}``.
    """
    out: dict[str, Any] = dict(item) if isinstance(item, Mapping) else {"_value": item}
    for key in keys:
        value = labels.get(key)
        if value is not None:
            out[f"_{key}"] = value
    return out
