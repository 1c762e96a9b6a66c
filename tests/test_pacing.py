"""Pacing: every test runs on a FakeClock, so nothing sleeps for real.

The central check is :func:`excess`: for grant times ``t_1 <= ... <= t_n`` it
returns the largest ``count - (rate * (t_j - t_i) + allowance)`` over every
window ``[t_i, t_j]`` (all pairs, not a sample), so ``excess <= 0`` is the
token-bucket invariant ``count <= rate * window + burst`` for every window.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable, Iterable, Sequence
from typing import cast

import anyio
import anyio.lowlevel
import pytest
from botocore.retries.throttling import CubicCalculator
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncpager._clock import FakeClock
from asyncpager.errors import ConfigurationError
from asyncpager.pacing import Aimd, BucketStats, Cubic, Pacer, RateLimit

pytestmark = pytest.mark.anyio

Request = tuple[str, str | None, str | None]
TOLERANCE = 1e-6


def excess(events: Iterable[tuple[float, float]], rate: float, allowance: float) -> float:
    """Largest ``sum(cost) - rate * window - allowance`` over every window.

    A window from event ``i`` to event ``j`` (in time order) holds
    ``P[j] - P[i-1]`` where ``P`` are prefix sums, so its excess is
    ``(P[j] - rate * t_j) + (rate * t_i - P[i-1]) - allowance``; keeping the
    best second term seen so far covers every pair in one pass.
    """
    worst = -math.inf
    best_start = -math.inf
    prefix = 0.0
    for time, cost in sorted(events):
        best_start = max(best_start, rate * time - prefix)
        prefix += cost
        worst = max(worst, prefix - rate * time + best_start - allowance)
    return worst


def count_excess(times: Iterable[float], rate: float, burst: float) -> float:
    return excess(((t, 1.0) for t in times), rate, burst)


async def settle(rounds: int = 50) -> None:
    """Let every ready task run (time stands still on a non-jumping clock)."""
    for _ in range(rounds):
        await anyio.lowlevel.checkpoint()


async def until(predicate: Callable[[], bool]) -> None:
    for _ in range(1000):
        if predicate():
            return
        await anyio.lowlevel.checkpoint()
    raise AssertionError("condition never became true")


def queued(pacer: Pacer, count: int) -> Callable[[], bool]:
    return lambda: pacer.stats()[0].waiting == count


def other_tasks() -> set[asyncio.Task[object]]:
    """Every task but this one (the test runner's own task stays)."""
    return asyncio.all_tasks() - {asyncio.current_task()}


def bucket(pacer: Pacer, **scope: str | None) -> BucketStats:
    """The one bucket whose own scope has exactly these fields set."""
    wanted = {"service": None, "region": None, "operation": None, **scope}
    found = [
        s
        for s in pacer.stats()
        if (s.service, s.region, s.operation)
        == (wanted["service"], wanted["region"], wanted["operation"])
    ]
    assert len(found) == 1, found
    return found[0]


async def run_streams(
    pacer: Pacer, clock: FakeClock, requests: Sequence[Request], tasks: int, each: int
) -> dict[Request, list[float]]:
    """``tasks`` tasks per request, each acquiring ``each`` times; grant times."""
    grants: dict[Request, list[float]] = {request: [] for request in requests}

    async def stream(request: Request) -> None:
        for _ in range(each):
            await pacer.acquire(*request)
            grants[request].append(clock.now())

    async with anyio.create_task_group() as tg:
        for request in requests:
            for _ in range(tasks):
                tg.start_soon(stream, request)
    return grants


def test_excess_sees_a_violation() -> None:
    # The checker itself: three grants at once break a burst of 2.
    assert count_excess([0.0, 0.0, 0.0], rate=1, burst=2) == pytest.approx(1)
    assert count_excess([0.0, 0.0, 1.0, 2.0], rate=1, burst=2) == pytest.approx(0)
    assert count_excess([0.0, 0.5, 1.0, 1.0], rate=1, burst=2) == pytest.approx(1)


# -- scopes --------------------------------------------------------------------

RATE, BURST = 20.0, 5.0

# name: (limit, groups of requests that share one bucket, requests it must not pace)
SCOPES: dict[str, tuple[RateLimit, list[list[Request]], list[Request]]] = {
    "global": (
        RateLimit(RATE, burst=BURST),
        [
            [
                ("s3", "us-east-1", "ListObjectsV2"),
                ("dynamodb", "eu-west-1", "Scan"),
                ("ec2", "us-west-2", "DescribeInstances"),
            ]
        ],
        [],
    ),
    "service": (
        RateLimit(RATE, burst=BURST, service="s3"),
        [
            [
                ("s3", "us-east-1", "ListObjectsV2"),
                ("s3", "eu-west-1", "ListObjectsV2"),
                ("s3", "us-east-1", "ListObjectVersions"),
            ]
        ],
        [("dynamodb", "us-east-1", "Scan")],
    ),
    "service+region": (
        RateLimit(RATE, burst=BURST, service="s3", region="us-east-1"),
        [[("s3", "us-east-1", "ListObjectsV2"), ("s3", "us-east-1", "ListObjectVersions")]],
        [("s3", "eu-west-1", "ListObjectsV2"), ("dynamodb", "us-east-1", "Scan")],
    ),
    "service+region+operation": (
        RateLimit(RATE, burst=BURST, service="s3", region="us-east-1", operation="ListObjectsV2"),
        [[("s3", "us-east-1", "ListObjectsV2")]],
        [("s3", "us-east-1", "ListObjectVersions"), ("s3", "eu-west-1", "ListObjectsV2")],
    ),
    "per-region": (
        RateLimit(RATE, burst=BURST, service="s3", per="region"),
        [
            [("s3", "us-east-1", "ListObjectsV2"), ("s3", "us-east-1", "ListObjectVersions")],
            [("s3", "eu-west-1", "ListObjectsV2")],
            [("s3", "ap-south-1", "ListObjectsV2")],
        ],
        [("dynamodb", "us-east-1", "Scan")],
    ),
}


@pytest.mark.parametrize("kind", list(SCOPES))
async def test_each_scope_holds_its_rate_and_reaches_it(kind: str) -> None:
    before = other_tasks()
    limit, groups, others = SCOPES[kind]
    clock = FakeClock()
    pacer = Pacer([limit], clock=clock)
    requests = [request for group in groups for request in group] + others
    grants = await run_streams(pacer, clock, requests, tasks=4, each=12)

    for group in groups:
        times = sorted(t for request in group for t in grants[request])
        assert count_excess(times, RATE, BURST) <= TOLERANCE
        # Not overly conservative: the bucket is never idle while requests wait,
        # so N grants end after (N - burst) / rate, to the token.
        expected = (len(times) - BURST) / RATE
        assert times[-1] == pytest.approx(expected, abs=TOLERANCE)
    for request in others:
        assert grants[request] == [0.0] * 48  # another scope: never paced
    # One bucket per group: per-region made three, the others one.
    assert len(pacer.stats()) == len(groups)
    assert other_tasks() == before  # nothing left pending


async def test_a_request_matching_two_buckets_obeys_both() -> None:
    clock = FakeClock()
    s3 = RateLimit(5, burst=2, service="s3")
    east = RateLimit(3, burst=1, region="us-east-1")
    pacer = Pacer([s3, east], clock=clock)
    both: Request = ("s3", "us-east-1", "ListObjectsV2")
    s3_only: Request = ("s3", "eu-west-1", "ListObjectsV2")
    east_only: Request = ("dynamodb", "us-east-1", "Scan")
    neither: Request = ("dynamodb", "eu-west-1", "Scan")
    grants = await run_streams(pacer, clock, [both, s3_only, east_only, neither], 4, 15)

    s3_times = grants[both] + grants[s3_only]
    east_times = grants[both] + grants[east_only]
    assert count_excess(s3_times, 5, 2) <= TOLERANCE
    assert count_excess(east_times, 3, 1) <= TOLERANCE
    assert grants[neither] == [0.0] * 60
    # us-east-1 is the bottleneck: 120 grants at 3/s take at least 39.67 s.
    # Sharing requests with the s3 bucket costs a little, not a lot.
    lower = (len(east_times) - 1) / 3
    assert lower - TOLERANCE <= max(east_times + s3_times) <= lower * 1.1
    assert bucket(pacer, region="us-east-1").granted == 120
    assert bucket(pacer, service="s3").granted == 120


async def test_a_slow_scope_does_not_block_others_sharing_the_global_bucket() -> None:
    # An s3 request waiting for its 1/s region bucket never sits at the head
    # of the global queue: DynamoDB requests keep the global rate.
    clock = FakeClock()
    pacer = Pacer(
        [RateLimit(100, burst=1), RateLimit(1, burst=1, service="s3", region="us-east-1")],
        clock=clock,
    )
    slow: Request = ("s3", "us-east-1", "ListObjectsV2")
    fast: Request = ("dynamodb", "us-east-1", "Scan")
    grants = await run_streams(pacer, clock, [slow, fast], tasks=10, each=50)
    fast_end = max(grants[fast])
    slow_so_far = sum(1 for t in grants[slow] if t <= fast_end)
    # Exactly the global rate, shared with the few s3 requests let through.
    assert fast_end == pytest.approx((500 + slow_so_far - 1) / 100, abs=TOLERANCE)
    assert count_excess(grants[slow], 1, 1) <= TOLERANCE
    assert count_excess(grants[slow] + grants[fast], 100, 1) <= TOLERANCE


async def test_unrelated_scopes_run_side_by_side() -> None:
    clock = FakeClock()
    pacer = Pacer([RateLimit(2, burst=1, service="s3"), RateLimit(50, service="dynamodb")], clock)
    s3: Request = ("s3", "us-east-1", "ListObjectsV2")
    dynamodb: Request = ("dynamodb", "us-east-1", "Scan")
    grants = await run_streams(pacer, clock, [s3, dynamodb], tasks=5, each=20)
    # Each at its own rate, as if the other were not there.
    assert max(grants[dynamodb]) == pytest.approx((100 - 50) / 50)
    assert max(grants[s3]) == pytest.approx((100 - 1) / 2)


async def test_global_and_per_region_together() -> None:
    clock = FakeClock()
    pacer = Pacer(
        [RateLimit(10, burst=3), RateLimit(4, burst=2, service="s3", per="region")], clock
    )
    regions = ["us-east-1", "eu-west-1", "ap-south-1"]
    requests: list[Request] = [("s3", region, "ListObjectsV2") for region in regions]
    grants = await run_streams(pacer, clock, requests, tasks=5, each=12)
    every = [t for times in grants.values() for t in times]
    assert count_excess(every, 10, 3) <= TOLERANCE
    for request in requests:
        assert count_excess(grants[request], 4, 2) <= TOLERANCE
    # Three regions at 4/s could do 12/s: the global 10/s is what binds, and
    # it is used fully until one region runs out of work.
    assert max(every) <= (len(every) - 3) / 10 * 1.05
    assert bucket(pacer).blocked > 0


SERVICES = ("s3", "dynamodb")
REGIONS = ("us-east-1", "eu-west-1")


@st.composite
def limits(draw: st.DrawFn) -> RateLimit:
    """Any limit over a small world of services and regions."""
    service = draw(st.one_of(st.none(), st.sampled_from(SERVICES)))
    region = draw(st.one_of(st.none(), st.sampled_from(REGIONS)))
    per = tuple(
        name
        for name, value in (("service", service), ("region", region))
        if value is None and draw(st.booleans())
    )
    unit = draw(st.sampled_from(["requests", "requests", "read_units"]))
    least = 1.0 if unit == "requests" else 0.1
    return RateLimit(
        draw(st.floats(0.5, 40)),
        burst=draw(st.floats(least, 10)),
        service=service,
        region=region,
        per=per,  # type: ignore[arg-type]
        unit=unit,
        adaptive=draw(st.sampled_from([None, "cubic", "aimd"])),
    )


def bucket_key(limit: RateLimit, request: Request) -> tuple[str | None, ...] | None:
    """Which of ``limit``'s buckets ``request`` goes through, if any."""
    values = dict(zip(("service", "region", "operation"), request, strict=True))
    if any(getattr(limit, name) not in (None, values[name]) for name in values):
        return None
    return tuple(values[name] for name in limit.per)


@settings(max_examples=60, deadline=None)
@given(
    limit_set=st.lists(limits(), min_size=1, max_size=3),
    streams=st.lists(
        st.tuples(
            st.sampled_from(SERVICES),
            st.sampled_from(REGIONS),
            st.lists(
                st.tuples(st.floats(0, 1.5), st.floats(0, 20), st.booleans()),
                min_size=1,
                max_size=8,
            ),
        ),
        min_size=1,
        max_size=6,
    ),
)
async def test_property_every_window_of_every_bucket_holds(
    limit_set: list[RateLimit],
    streams: list[tuple[str, str, list[tuple[float, float, bool]]]],
) -> None:
    # Adaptive rates move below the configured rate; the invariant is checked
    # against the configured rate, the ceiling they never exceed.
    clock = FakeClock()
    pacer = Pacer(limit_set, clock)
    grants: list[tuple[Request, float, float]] = []

    async def stream(service: str, region: str, plan: list[tuple[float, float, bool]]) -> None:
        for gap, cost, throttled in plan:
            await clock.sleep(gap)
            await pacer.acquire(service, region, "List")
            pacer.charge(service, region, "List", cost)
            grants.append(((service, region, "List"), clock.now(), cost))
            if throttled:
                pacer.on_throttle(service, region, "List")
            else:
                pacer.on_success(service, region, "List")

    async with anyio.create_task_group() as tg:
        for service, region, plan in streams:
            tg.start_soon(stream, service, region, plan)

    assert len(grants) == sum(len(plan) for _, _, plan in streams)
    for limit in limit_set:
        per_bucket: dict[tuple[str | None, ...], list[tuple[float, float]]] = {}
        for request, time, cost in grants:
            key = bucket_key(limit, request)
            if key is not None:
                per_bucket.setdefault(key, []).append(
                    (time, 1.0 if limit.counts_requests else cost)
                )
        for events in per_bucket.values():
            allowance = cast(float, limit.burst)
            if not limit.counts_requests:
                allowance += max(cost for _, cost in events)
            assert excess(events, limit.rate, allowance) <= TOLERANCE, limit
    assert all(s.waiting == 0 and s.claimed == 0 for s in pacer.stats())


# -- waiting -------------------------------------------------------------------


async def test_waiters_are_served_first_in_first_out_by_the_timer() -> None:
    clock = FakeClock(autojump=False)
    pacer = Pacer([RateLimit(2, burst=1)], clock)
    await pacer.acquire("s3")  # the burst is gone
    order: list[int] = []

    async def waiter(index: int) -> None:
        await pacer.acquire("s3", "us-east-1", "ListObjectsV2")
        order.append(index)

    async with anyio.create_task_group() as tg:
        for index in range(6):
            tg.start_soon(waiter, index)
            await until(queued(pacer, index + 1))
        for served in range(1, 7):
            clock.advance(0.25)  # half a token: nobody may go early
            await settle()
            assert len(order) == served - 1
            clock.advance(0.25)  # the token: exactly one waiter goes
            await settle()
            assert len(order) == served
    assert order == list(range(6))


async def test_a_request_matching_nothing_does_not_wait() -> None:
    clock = FakeClock()
    pacer = Pacer([RateLimit(1, service="s3")], clock)
    for _ in range(100):
        assert await pacer.acquire("dynamodb", "us-east-1", "Scan") == 0.0
    assert pacer.stats() == ()
    assert pacer.granted == 0


async def test_acquire_returns_the_time_waited() -> None:
    clock = FakeClock()
    pacer = Pacer([RateLimit(4, burst=1)], clock)
    assert await pacer.acquire("s3") == 0.0
    assert await pacer.acquire("s3") == pytest.approx(0.25)
    await clock.sleep(1.0)
    assert await pacer.acquire("s3") == 0.0
    assert pacer.waited == pytest.approx(0.25)
    assert pacer.granted == 3


# -- adaptive rates --------------------------------------------------------------


async def steady(
    pacer: Pacer, clock: FakeClock, until_time: float, request: Request = ("s3", "r", "Op")
) -> list[float]:
    """Send at the pacer's pace, each answered at once; the rate after each."""
    rates = []
    while clock.now() < until_time:
        await pacer.acquire(*request)
        pacer.on_success(*request)
        rates.append(pacer.stats()[0].rate)
    return rates


async def test_cubic_follows_botocore_down_and_back_to_the_ceiling() -> None:
    clock = FakeClock()
    pacer = Pacer([RateLimit(100, adaptive="cubic")], clock)
    before = await steady(pacer, clock, 3.0)
    assert set(before) == {100.0}  # no throttle yet: the ceiling

    measured = pacer.stats()[0].measured
    assert measured == pytest.approx(100, rel=0.1)
    throttled_at = clock.now()
    pacer.on_throttle("s3", "r", "Op")
    reference = CubicCalculator(starting_max_rate=0, start_time=0)
    basis = min(measured, 100)  # botocore: min(measured, current rate)
    assert pacer.stats()[0].rate == pytest.approx(reference.error_received(basis, throttled_at))
    assert pacer.stats()[0].rate == pytest.approx(0.7 * basis)

    # Every later rate is botocore's cubic, capped at twice the measured rate
    # and at the ceiling.
    while clock.now() < throttled_at + 8:
        await pacer.acquire("s3", "r", "Op")
        pacer.on_success("s3", "r", "Op")
        stats = pacer.stats()[0]
        cubic = reference.success_received(clock.now())
        assert stats.rate == pytest.approx(min(100, max(1, min(cubic, 2 * stats.measured))))
    assert stats.rate == 100.0


async def test_cubic_and_aimd_never_exceed_the_ceiling_nor_fall_below_the_floor() -> None:
    for adaptive in (Cubic(cooldown=0), Aimd(decrease=0.5, interval=0.1)):
        clock = FakeClock()
        pacer = Pacer([RateLimit(10, adaptive=adaptive, min_rate=2)], clock)
        seen = []
        for _ in range(30):
            await pacer.acquire("s3")
            pacer.on_throttle("s3")
            seen.append(pacer.stats()[0].rate)
        assert min(seen) == 2.0, adaptive  # driven down to the floor, not below
        # At the floor requests still flow, at the floor's pace.
        start = clock.now()
        for _ in range(5):
            await pacer.acquire("s3")
        assert clock.now() - start == pytest.approx(5 / 2, abs=0.5)
        seen += await steady(pacer, clock, clock.now() + 30, ("s3", None, None))
        assert max(seen) == 10.0, adaptive  # back at the ceiling, never above


async def test_aimd_cuts_once_per_interval_and_adds_per_calm_interval() -> None:
    clock = FakeClock()
    pacer = Pacer([RateLimit(100, adaptive=Aimd(decrease=0.5, increase=10, interval=1))], clock)
    pacer.on_throttle("s3")
    pacer.on_throttle("s3")  # the same overload, reported twice
    assert pacer.stats()[0].rate == 50
    assert pacer.stats()[0].capacity == 50  # the burst shrinks with the rate
    assert pacer.stats()[0].throttles == 2
    for second in range(1, 8):
        await clock.sleep(1.0)
        pacer.on_success("s3")
        assert pacer.stats()[0].rate == min(100, 50 + 10 * second)


async def test_cubic_cooldown_treats_a_volley_of_throttles_as_one() -> None:
    rates = {}
    for cooldown in (0.5, 0.0):
        clock = FakeClock()
        pacer = Pacer([RateLimit(100, adaptive=Cubic(cooldown=cooldown))], clock)
        for _ in range(10):  # ten requests in flight, all throttled
            pacer.on_throttle("s3")
        rates[cooldown] = pacer.stats()[0].rate
    assert rates[0.5] == pytest.approx(70)
    assert rates[0.0] == pytest.approx(100 * 0.7**10)  # botocore's own behaviour


async def test_a_rate_increase_wakes_the_sleeping_head_early() -> None:
    clock = FakeClock()
    limit = RateLimit(10, burst=1, adaptive=Aimd(decrease=0.1, increase=9, interval=0.2))
    pacer = Pacer([limit], clock)
    pacer.on_throttle("s3")
    assert pacer.stats()[0].rate == 1
    await pacer.acquire("s3")  # empty now; at 1/s the next token is 1 s away
    granted_at = []

    async def waiter() -> None:
        await pacer.acquire("s3")
        granted_at.append(clock.now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await clock.sleep(0.2)
        pacer.on_success("s3")  # a calm interval: 1/s -> 10/s
    # 0.2 tokens by 0.2 s, the other 0.8 at 10/s: 0.28 s, not 1 s.
    assert granted_at == [pytest.approx(0.28)]


async def test_per_region_adaptive_buckets_adapt_on_their_own() -> None:
    clock = FakeClock()
    pacer = Pacer([RateLimit(50, service="s3", per="region", adaptive="aimd")], clock)
    await pacer.acquire("s3", "us-east-1")
    await pacer.acquire("s3", "eu-west-1")
    pacer.on_throttle("s3", "us-east-1", "ListObjectsV2")
    assert bucket(pacer, service="s3", region="us-east-1").rate == 25
    assert bucket(pacer, service="s3", region="eu-west-1").rate == 50
    assert pacer.throttles == 1


class ThrottlingServer:
    """A service that admits ``rate`` requests a second and throttles the rest."""

    def __init__(self, clock: FakeClock, rate: float, burst: float) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self.level = burst
        self.stamp = clock.now()

    def admit(self) -> bool:
        now = self.clock.now()
        self.level = min(self.burst, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.level >= 1:
            self.level -= 1
            return True
        return False


async def converge(adaptive: str, limit: float) -> tuple[float, int, int]:
    """20 streams against a server that allows ``limit``/s, ceiling 4x that.

    Returns the achieved rate and the throttles over the last 40 of 60
    seconds (the steady state), and the throttles over the whole run.
    """
    clock = FakeClock()
    server = ThrottlingServer(clock, limit, burst=5)
    pacer = Pacer([RateLimit(4 * limit, adaptive=adaptive)], clock)  # type: ignore[arg-type]
    successes: list[float] = []
    throttles: list[float] = []

    async def stream() -> None:
        while clock.now() < 60:
            await pacer.acquire("dynamodb", "us-east-1", "Scan")
            admitted = server.admit()
            await clock.sleep(0.02)  # the round trip
            if admitted:
                pacer.on_success("dynamodb", "us-east-1", "Scan")
                successes.append(clock.now())
            else:
                pacer.on_throttle("dynamodb", "us-east-1", "Scan")
                throttles.append(clock.now())

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(stream)
    achieved = sum(1 for t in successes if t >= 20) / 40
    return achieved, sum(1 for t in throttles if t >= 20), len(throttles)


async def test_cubic_and_aimd_converge_on_the_service_limit() -> None:
    limit = 50.0
    figures = {}
    for adaptive in ("cubic", "aimd"):
        achieved, steady_throttles, all_throttles = await converge(adaptive, limit)
        figures[adaptive] = (achieved, steady_throttles, all_throttles)
        print(
            f"{adaptive}: {achieved:.1f} req/s of {limit:.0f}, "
            f"{steady_throttles} throttles in the last 40 s, {all_throttles} in all"
        )
        assert 0.8 * limit <= achieved <= limit + 5 / 40
        assert steady_throttles <= 40  # at most one a second once settled
    # CUBIC probes close to the limit and stays there; AIMD's saw-tooth
    # spends half its time well below.
    assert figures["cubic"][0] > figures["aimd"][0]


# -- cost-aware buckets ----------------------------------------------------------


async def test_cost_bucket_holds_every_window_when_charged_at_once() -> None:
    clock = FakeClock()
    pacer = Pacer([RateLimit(500, service="dynamodb", unit="read_units")], clock)
    rng = random.Random(7)
    spent: list[tuple[float, float]] = []

    async def scanner() -> None:
        for _ in range(40):
            await pacer.acquire("dynamodb", "us-east-1", "Scan")
            cost = rng.uniform(0.5, 100)
            pacer.charge("dynamodb", "us-east-1", "Scan", cost)
            spent.append((clock.now(), cost))

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(scanner)
    largest = max(cost for _, cost in spent)
    total = sum(cost for _, cost in spent)
    assert excess(spent, 500, 500 + largest) <= TOLERANCE
    # ... and it is not overly conservative: the last request starts as soon
    # as the debt of all the others is paid.
    last_time, last_cost = max(spent)
    assert last_time == pytest.approx((total - last_cost - 500) / 500, abs=TOLERANCE)
    assert bucket(pacer, service="dynamodb").charged == pytest.approx(total)


async def test_cost_bucket_holds_on_average_with_requests_in_flight() -> None:
    clock = FakeClock()
    pacer = Pacer([RateLimit(500, burst=100, service="dynamodb", unit="read_units")], clock)
    rng = random.Random(11)
    spent: list[tuple[float, float]] = []

    async def scanner() -> None:
        for _ in range(30):
            await pacer.acquire("dynamodb", "us-east-1", "Scan")
            started = clock.now()
            await clock.sleep(0.05)  # the cost is known only from the response
            cost = rng.uniform(1, 80)
            pacer.charge("dynamodb", "us-east-1", "Scan", cost)
            spent.append((started, cost))

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(scanner)
    total = sum(cost for _, cost in spent)
    # Eight requests can be out before any of their costs are known.
    assert excess(spent, 500, 100 + 8 * 80) <= TOLERANCE
    duration = max(t for t, _ in spent)
    assert total / duration == pytest.approx(500, rel=0.15)


async def test_charge_debits_only_cost_buckets_of_its_unit() -> None:
    clock = FakeClock()
    pacer = Pacer(
        [
            RateLimit(10, burst=10, service="dynamodb"),
            RateLimit(100, burst=100, service="dynamodb", unit="read_units"),
            RateLimit(50, burst=50, service="dynamodb", unit="write_units"),
        ],
        clock,
    )
    await pacer.acquire("dynamodb", "us-east-1", "Scan")
    pacer.charge("dynamodb", "us-east-1", "Scan", 150, unit="read_units")
    by_unit = {s.unit: s for s in pacer.stats()}
    assert by_unit["requests"].level == pytest.approx(9)
    assert by_unit["read_units"].level == pytest.approx(-50)
    assert by_unit["write_units"].level == pytest.approx(50)
    # In debt: the next request waits until the 50 units are paid back.
    assert await pacer.acquire("dynamodb", "us-east-1", "Scan") == pytest.approx(0.5)
    pacer.charge("dynamodb", "us-east-1", "Scan", 20)  # every cost bucket
    by_unit = {s.unit: s for s in pacer.stats()}
    assert by_unit["read_units"].level == pytest.approx(-20)
    assert by_unit["write_units"].level == pytest.approx(30)


async def test_a_charge_after_passing_a_cost_bucket_still_holds_the_request() -> None:
    # The request passes the cost bucket, waits for the request bucket, and
    # meanwhile another request's cost puts the cost bucket in debt: it must
    # not go until that debt is paid.
    clock = FakeClock()
    pacer = Pacer(
        [
            RateLimit(100, burst=100, service="dynamodb", region="us-east-1", unit="read_units"),
            RateLimit(1, burst=1, service="dynamodb"),
        ],
        clock,
    )
    await pacer.acquire("dynamodb", "us-east-1", "Scan")  # takes the request token
    granted_at = []

    async def second() -> None:
        await pacer.acquire("dynamodb", "us-east-1", "Scan")
        granted_at.append(clock.now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await clock.sleep(0.5)
        pacer.charge("dynamodb", "us-east-1", "Scan", 300)  # 100 - 300 + 50 refilled
    # The bucket was full (100) at 0.5 s, so the debt is 200 units at 100/s:
    # paid at 2.5 s, long after the request token came (1.0 s).
    assert granted_at == [pytest.approx(2.5)]


# -- cancellation ------------------------------------------------------------------


async def test_cancelled_waiters_leak_no_tokens_and_wedge_nothing() -> None:
    before = other_tasks()
    clock = FakeClock()
    pacer = Pacer([RateLimit(10, burst=1)], clock)
    scopes = [anyio.CancelScope() for _ in range(20)]
    granted: dict[int, float] = {}

    async def waiter(index: int) -> None:
        with scopes[index]:
            await pacer.acquire("s3", "us-east-1", "ListObjectsV2")
            granted[index] = clock.now()

    async with anyio.create_task_group() as tg:
        for index in range(20):
            tg.start_soon(waiter, index)
        await clock.sleep(0.55)
        # 0..5 went at 0.0 .. 0.5; 6 is the head, asleep until 0.6.
        assert sorted(granted) == list(range(6))
        cancelled = {6} | set(range(7, 20, 2))
        for index in cancelled:
            scopes[index].cancel()

    survivors = [index for index in range(6, 20) if index not in cancelled]
    assert sorted(granted) == list(range(6)) + survivors
    # No gap where the cancelled ones were: the survivors take 0.6, 0.7, ...
    times = [granted[index] for index in survivors]
    assert times == pytest.approx([0.6 + 0.1 * n for n in range(len(survivors))])
    # No token leaked either way: the next request waits exactly one token.
    assert await pacer.acquire("s3") == pytest.approx(0.1)
    stats = pacer.stats()[0]
    assert (stats.waiting, stats.claimed) == (0, 0)
    assert other_tasks() == before  # nothing left pending


async def test_cancelling_a_waiter_releases_its_claims() -> None:
    before = other_tasks()
    # Region bucket 5/s (burst 2), global 1/s: two s3 requests claim the
    # region's two tokens and wait in the global queue. Cancelling them must
    # hand their claims back, or the region would be short two tokens.
    clock = FakeClock(autojump=False)
    pacer = Pacer([RateLimit(1, burst=1), RateLimit(5, burst=2, service="s3", per="region")], clock)
    await pacer.acquire("dynamodb")  # the global token is gone
    scopes = [anyio.CancelScope() for _ in range(6)]
    granted: dict[int, float] = {}

    async def waiter(index: int) -> None:
        with scopes[index]:
            await pacer.acquire("s3", "us-east-1", "ListObjectsV2")
            granted[index] = clock.now()

    async with anyio.create_task_group() as tg:
        for index in range(6):
            tg.start_soon(waiter, index)
            await settle()
        region = bucket(pacer, service="s3", region="us-east-1")
        assert region.claimed == 2
        assert region.waiting == 4
        scopes[0].cancel()
        scopes[1].cancel()
        await settle()
        region = bucket(pacer, service="s3", region="us-east-1")
        assert region.claimed == 2  # 2 and 3 took the released claims at once
        assert region.waiting == 2
        while len(granted) < 4:
            clock.advance(1 / 16)  # exact in binary: deadlines are hit, not passed
            await settle()

    assert granted == pytest.approx({2: 1.0, 3: 2.0, 4: 3.0, 5: 4.0})
    assert all(s.waiting == 0 and s.claimed == 0 for s in pacer.stats())
    assert count_excess(granted.values(), 1, 1) <= TOLERANCE
    assert other_tasks() == before  # nothing left pending


async def test_random_cancellations_keep_every_invariant() -> None:
    before = other_tasks()
    clock = FakeClock()
    pacer = Pacer([RateLimit(8, burst=2), RateLimit(3, burst=2, service="s3", per="region")], clock)
    rng = random.Random(3)
    grants: list[tuple[str, float]] = []
    scopes: list[anyio.CancelScope] = []

    async def stream(region: str) -> None:
        for _ in range(10):
            scope = anyio.CancelScope()
            scopes.append(scope)
            with scope:
                await pacer.acquire("s3", region, "ListObjectsV2")
                grants.append((region, clock.now()))

    async def canceller() -> None:
        for _ in range(40):
            await clock.sleep(rng.uniform(0, 0.3))
            live = [scope for scope in scopes if not scope.cancel_called]
            if live:
                rng.choice(live).cancel()

    async with anyio.create_task_group() as tg:
        for region in ("us-east-1", "eu-west-1", "ap-south-1") * 3:
            tg.start_soon(stream, region)
        tg.start_soon(canceller)

    assert count_excess((t for _, t in grants), 8, 2) <= TOLERANCE
    for name in ("us-east-1", "eu-west-1", "ap-south-1"):
        assert count_excess((t for r, t in grants if r == name), 3, 2) <= TOLERANCE
    assert 0 < len(grants) < 90
    assert all(s.waiting == 0 and s.claimed == 0 for s in pacer.stats())
    # Still at full speed afterwards: 8 more requests wait for 8 tokens.
    await clock.sleep(10)
    start = clock.now()
    for _ in range(10):
        await pacer.acquire("dynamodb")
    assert clock.now() - start == pytest.approx(8 / 8)
    assert other_tasks() == before  # nothing left pending


async def test_cancelled_before_queueing_changes_nothing() -> None:
    clock = FakeClock()
    pacer = Pacer([RateLimit(1, burst=1)], clock)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await pacer.acquire("s3")
    assert pacer.granted == 0
    assert await pacer.acquire("s3") == 0.0  # the one token is still there


# -- configuration ---------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: RateLimit(0),
        lambda: RateLimit(-5),
        lambda: RateLimit(math.nan),
        lambda: RateLimit(math.inf),
        lambda: RateLimit(True),
        lambda: RateLimit("10"),  # type: ignore[arg-type]
        lambda: RateLimit(10, burst=0),
        lambda: RateLimit(10, burst=0.5),
        lambda: RateLimit(10, service=""),
        lambda: RateLimit(10, per="zone"),  # type: ignore[arg-type]
        lambda: RateLimit(10, per=("region", "region")),
        lambda: RateLimit(10, region="us-east-1", per="region"),
        lambda: RateLimit(10, per=["region"]),  # type: ignore[arg-type]
        lambda: RateLimit(10, unit=""),
        lambda: RateLimit(10, adaptive="fast"),  # type: ignore[arg-type]
        lambda: RateLimit(10, min_rate=0),
        lambda: RateLimit(10, min_rate=11),
        lambda: Cubic(beta=1),
        lambda: Cubic(scale=0),
        lambda: Cubic(cooldown=-1),
        lambda: Aimd(decrease=0),
        lambda: Aimd(increase=-1),
        lambda: Aimd(interval=0),
        lambda: Pacer([{"rate": 10}]),  # type: ignore[list-item]
    ],
)
def test_bad_configuration_is_refused_in_one_line(make: Callable[[], object]) -> None:
    with pytest.raises(ConfigurationError) as info:
        make()
    assert "\n" not in str(info.value)


def test_a_zero_rate_names_the_problem() -> None:
    with pytest.raises(ConfigurationError, match=r"rate must be a finite number > 0, got 0"):
        RateLimit(rate=0)


async def test_bad_charges_are_refused() -> None:
    pacer = Pacer([RateLimit(10, unit="read_units")], FakeClock())
    for units in (-1, math.nan, math.inf):
        with pytest.raises(ConfigurationError):
            pacer.charge("dynamodb", "us-east-1", "Scan", units)
    with pytest.raises(ConfigurationError):
        pacer.charge("dynamodb", "us-east-1", "Scan", 1, unit="requests")


def test_limits_are_resolved_so_equal_limits_compare_equal() -> None:
    assert RateLimit(100) == RateLimit(100, burst=100, min_rate=1)
    assert RateLimit(0.2).burst == 1  # always room for one whole request
    assert RateLimit(0.2).min_rate == 0.2
    assert RateLimit(5, per="region").per == ("region",)
    assert RateLimit(5, adaptive="cubic") == RateLimit(5, adaptive=Cubic())
    assert RateLimit(5, unit="read_units").counts_requests is False
