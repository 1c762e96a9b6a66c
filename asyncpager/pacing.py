"""Pacing: token buckets keyed by scope, with adaptive rates.

The model
=========

A :class:`RateLimit` describes one limit: a refill ``rate`` (units per
second), a ``burst`` (how many units the bucket holds when full) and a *scope*
made of three fields, ``service``, ``region`` and ``operation``, each either a
fixed value or ``None`` for "any"::

    RateLimit(100)                                   # every request
    RateLimit(10, service="s3")                      # all of S3, every region
    RateLimit(5, service="s3", region="us-east-1", operation="ListObjectsV2")
    RateLimit(5, service="s3", per="region")         # 5/s in *each* region

A limit makes buckets. Without ``per`` it makes exactly one bucket, shared by
every request its scope matches: ``RateLimit(10, service="s3")`` lets 10 S3
requests a second through in total, whatever their region. AWS throttles per
account *and region*, so ``per`` splits a limit by request fields instead:
``per="region"`` gives each region its own bucket at the full rate, and
``per=("region", "operation")`` each (region, operation) pair. A ``per``
bucket is created the first time a request needs it.

A request ``(service, region, operation)`` must get through every bucket whose
scope matches it, and it takes its tokens from all of them *at the same
instant*. Taking them one bucket at a time would be simpler but wrong: a token
taken from the global bucket while the request then waits for a slow regional
bucket is spent long before the request is sent, and those late sends can pile
up in one window beyond ``rate * window + burst`` of the global bucket.

Waiting
=======

Each bucket serves its waiters first in, first out. A request walks through
its buckets in one fixed global order (the most specific scope first, then
the order of the limits). In each bucket it queues; once it is at the head and
the bucket holds a token nobody has claimed yet, it *claims* that token (sets
it aside: the token stays in the bucket's balance but is no longer anyone
else's), leaves the queue and queues at its next bucket. With a claim in every
bucket it takes all the claimed tokens in one synchronous step.

Why this shape:

* The window invariant holds for every bucket: a token leaves a bucket only
  at the instant the request is let through, and only if it is there, so
  each bucket is an ordinary token bucket whose takes are the grants.
* No deadlock: a request holds claims only in buckets that come before, in
  the one global order, the bucket it waits for; no cycle of waits can form.
* No head-of-line blocking: an S3 request reaches the global queue only once
  its region has a token for it, so it never holds up DynamoDB requests while
  waiting for a slow region. A request that claimed a token of a shared bucket
  and now waits for another bucket ties up that one token, not the queue.
* No starvation: every queue is FIFO and a claim is never taken back.
* Clean cancellation: a waiter has taken nothing. A cancelled one leaves its
  queue and hands its claims back, waking whoever waits on those buckets.

The price is that FIFO holds per bucket, in the order requests reach that
bucket's queue, not in the order :meth:`Pacer.acquire` was called: a request
whose region was ready early can overtake, in the global queue, an older one
still waiting for its region.

There is no polling and no background task. A waiter behind another one waits
on an :class:`anyio.Event` that is set when it reaches the head of its queue.
The head, if its bucket is short, sleeps on the injected :class:`Clock` for
exactly the time the missing token needs (one timer per bucket, as
aiolimiter's leaky bucket has one per limiter). When a rate goes up (an
adaptive bucket probing back) or a claim is handed back, the sleeper is woken
early to compute its deadline again; when a rate goes down it simply finds it
is still early and sleeps again.

Cost-aware buckets
==================

A limit whose ``unit`` is not ``"requests"`` counts something a request costs
rather than the request itself: DynamoDB's consumed read capacity, for
instance. The cost is only known from the response, so such a bucket does not
take a token when the request starts: :meth:`Pacer.acquire` only waits until
the bucket is out of debt (its balance is at least zero) and
:meth:`Pacer.charge` later debits what the request actually cost, which may
drive the balance below zero. The debt is paid back by waiting, so the sum of
costs stays within ``rate * window + burst + largest cost`` over every window
when each charge lands before the next request starts, and within the rate on
average when several requests are in flight at once (each of them may have
started before the others' costs were known).

Adaptive rates
==============

``adaptive="cubic"`` follows botocore's adaptive retry mode
(``botocore/retries/throttling.py``): on a throttle the rate drops to ``beta``
(0.7) times the measured send rate and then grows back along the cubic curve
``scale * (t - k)**3 + w_max``, capped at twice the measured rate so it cannot
run away from what is actually being sent. The send rate is measured as
botocore's ``RateClocker`` does (half-second buckets, smoothing 0.8).
``adaptive="aimd"`` halves the rate on a throttle (at most once per interval,
since the throttles of requests already in flight describe the old rate) and
adds a fixed step for every calm interval. Both are bounded above by the
configured ``rate`` (the ceiling, never exceeded) and below by ``min_rate``,
so a throttled scope slows down but never stalls. The bucket's capacity shrinks
in proportion to the rate, so a throttled scope does not come back from an
idle spell with a full-size burst. Every adaptive bucket matching a throttled
request is lowered, each on its own: with ``per="region"`` a throttle in one
region slows only that region.

Everything here runs on one event loop and reads time only from the injected
clock; nothing is thread-safe.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import KW_ONLY, dataclass, field
from typing import Literal, Protocol, cast

import anyio
import anyio.lowlevel

from asyncpager._clock import Clock, SystemClock
from asyncpager.errors import ConfigurationError

__all__ = [
    "Aimd",
    "BucketStats",
    "Cubic",
    "Pacer",
    "PacerLike",
    "RateLimit",
    "ScopeField",
    "share_limits",
]

ScopeField = Literal["service", "region", "operation"]
_SCOPE_FIELDS: tuple[ScopeField, ...] = ("service", "region", "operation")

# The unit of a bucket that counts requests; any other unit is charged by cost.
_REQUESTS = "requests"

# Float slack when comparing a balance with what a waiter needs: a head that
# slept exactly the computed time may see 0.9999999999 tokens.
_EPSILON = 1e-9


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_positive(owner: str, name: str, value: object) -> float:
    if not _is_number(value) or not math.isfinite(cast(float, value)) or cast(float, value) <= 0:
        raise ConfigurationError(f"{owner}: {name} must be a finite number > 0, got {value!r}")
    return float(cast(float, value))


@dataclass(frozen=True)
class Cubic:
    """CUBIC rate adaptation with botocore's constants.

    ``beta`` is the share of the measured rate kept after a throttle, ``scale``
    the cubic's constant, ``smoothing`` and ``measure_interval`` shape the
    measured send rate (an exponential average over fixed time slots).

    ``cooldown`` is the one addition to botocore's algorithm: throttles within
    that many seconds of a cut do not cut again. Many streams share a bucket,
    so one overload comes back as a volley of throttles for requests that were
    all sent at the old rate; botocore cuts for each of them and a volley of
    ten takes the rate to 3% (to its floor, before its first measurement).
    ``cooldown=0`` gives botocore's behaviour exactly.
    """

    beta: float = 0.7
    scale: float = 0.4
    smoothing: float = 0.8
    measure_interval: float = 0.5
    cooldown: float = 0.5

    def __post_init__(self) -> None:
        if not (_is_number(self.beta) and 0 < self.beta < 1):
            raise ConfigurationError(f"Cubic: beta must be between 0 and 1, got {self.beta!r}")
        if not (_is_number(self.smoothing) and 0 < self.smoothing <= 1):
            raise ConfigurationError(f"Cubic: smoothing must be in (0, 1], got {self.smoothing!r}")
        _check_positive("Cubic", "scale", self.scale)
        _check_positive("Cubic", "measure_interval", self.measure_interval)
        if not (_is_number(self.cooldown) and math.isfinite(self.cooldown) and self.cooldown >= 0):
            raise ConfigurationError(f"Cubic: cooldown must be >= 0, got {self.cooldown!r}")


@dataclass(frozen=True)
class Aimd:
    """Additive increase, multiplicative decrease.

    A throttle multiplies the rate by ``decrease``, at most once per
    ``interval`` (the throttles of requests sent before the cut say nothing
    about the new rate). Every ``interval`` without a throttle adds
    ``increase`` units per second; ``None`` means 5% of the ceiling.
    """

    decrease: float = 0.5
    increase: float | None = None
    interval: float = 1.0

    def __post_init__(self) -> None:
        if not (_is_number(self.decrease) and 0 < self.decrease < 1):
            raise ConfigurationError(
                f"Aimd: decrease must be between 0 and 1, got {self.decrease!r}"
            )
        if self.increase is not None:
            _check_positive("Aimd", "increase", self.increase)
        _check_positive("Aimd", "interval", self.interval)


@dataclass(frozen=True)
class RateLimit:
    """One limit: ``rate`` units per second within a scope.

    ``burst`` is the bucket's capacity: how many units may go at once after a
    quiet spell. ``None`` picks one second's worth, ``max(1, rate)``, as
    botocore's token bucket does; a smaller burst gives smoother traffic.

    ``service``, ``region`` and ``operation`` fix the scope (``None`` matches
    anything). ``per`` names request fields that split the limit into one
    bucket per distinct value, each at the full rate; ``"region"`` or a tuple
    such as ``("region", "operation")``. A field cannot be both fixed and in
    ``per``.

    ``unit`` is ``"requests"`` (each request takes one token) or the name of a
    cost, such as ``"read_units"``: such a bucket is charged through
    :meth:`Pacer.charge` with what each request actually cost.

    ``adaptive`` is ``None`` (a fixed rate), ``"cubic"``, ``"aimd"`` or a
    :class:`Cubic` / :class:`Aimd` with its own constants. ``min_rate`` is the
    floor an adaptive rate never goes below; ``None`` picks 1% of ``rate`` but
    at least 0.5 (botocore's floor) and never more than ``rate``.

    After construction ``burst``, ``min_rate`` and ``adaptive`` hold the
    resolved values and ``per`` is always a tuple, so two spellings of the same
    limit compare equal.
    """

    rate: float
    _: KW_ONLY
    burst: float | None = None
    service: str | None = None
    region: str | None = None
    operation: str | None = None
    per: ScopeField | tuple[ScopeField, ...] = ()
    unit: str = _REQUESTS
    adaptive: Literal["cubic", "aimd"] | Cubic | Aimd | None = None
    min_rate: float | None = None

    def __post_init__(self) -> None:
        rate = _check_positive("RateLimit", "rate", self.rate)
        if not isinstance(self.unit, str) or not self.unit:
            raise ConfigurationError(
                f"RateLimit: unit must be a non-empty string, got {self.unit!r}"
            )
        if self.burst is None:
            burst = max(1.0, rate)
        else:
            burst = _check_positive("RateLimit", "burst", self.burst)
            if self.unit == _REQUESTS and burst < 1:
                raise ConfigurationError(
                    f"RateLimit: burst must be >= 1 for a request limit, got {self.burst!r}"
                )
        for name in _SCOPE_FIELDS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigurationError(
                    f"RateLimit: {name} must be a non-empty string or None, got {value!r}"
                )
        per = (self.per,) if isinstance(self.per, str) else self.per
        if not isinstance(per, tuple):
            raise ConfigurationError(
                f"RateLimit: per must be a field name or a tuple of them, got {self.per!r}"
            )
        for name in per:
            if name not in _SCOPE_FIELDS:
                raise ConfigurationError(
                    f"RateLimit: per names an unknown field {name!r}; "
                    f"choose from {', '.join(_SCOPE_FIELDS)}"
                )
            if getattr(self, name) is not None:
                raise ConfigurationError(
                    f"RateLimit: per={name!r} splits nothing: {name} is fixed to "
                    f"{getattr(self, name)!r}"
                )
        if len(set(per)) != len(per):
            raise ConfigurationError(f"RateLimit: per names a field twice: {per!r}")
        adaptive: Cubic | Aimd | None
        if self.adaptive is None or isinstance(self.adaptive, (Cubic, Aimd)):
            adaptive = self.adaptive
        elif self.adaptive == "cubic":
            adaptive = Cubic()
        elif self.adaptive == "aimd":
            adaptive = Aimd()
        else:
            raise ConfigurationError(
                f"RateLimit: adaptive must be 'cubic', 'aimd', None, Cubic() or Aimd(), "
                f"got {self.adaptive!r}"
            )
        if self.min_rate is None:
            min_rate = min(rate, max(0.5, rate / 100))
        else:
            min_rate = _check_positive("RateLimit", "min_rate", self.min_rate)
            if min_rate > rate:
                raise ConfigurationError(
                    f"RateLimit: min_rate {self.min_rate!r} is above rate {self.rate!r}"
                )
        object.__setattr__(self, "rate", rate)
        object.__setattr__(self, "burst", burst)
        object.__setattr__(self, "per", tuple(per))
        object.__setattr__(self, "adaptive", adaptive)
        object.__setattr__(self, "min_rate", min_rate)

    @property
    def counts_requests(self) -> bool:
        """True when each request takes one token; False for a cost bucket."""
        return self.unit == _REQUESTS


@dataclass(frozen=True)
class BucketStats:
    """A snapshot of one bucket (:meth:`Pacer.stats`).

    ``service``, ``region`` and ``operation`` are the bucket's own scope: the
    limit's fixed fields plus, for a ``per`` limit, the values this bucket was
    split on. ``waited`` is the time requests spent queued at this bucket (a
    request is charged to the bucket it is queued at or, once it has passed
    every queue, to the cost bucket whose debt it waits out). ``blocked`` is
    the part of that spent asleep because the bucket itself was short: no
    unclaimed token yet, or a debt. A bucket with a large ``waited`` but a
    small ``blocked`` is crowded; one with a large ``blocked`` is the limit
    that holds the traffic back (or shares a token with one that does).

    ``claimed`` counts tokens set aside for requests that passed this bucket's
    queue and now wait for another bucket; ``measured`` is the smoothed rate
    the bucket has actually let through (what adaptive rates are based on).
    """

    limit: RateLimit
    service: str | None
    region: str | None
    operation: str | None
    unit: str
    rate: float
    ceiling: float
    capacity: float
    level: float
    claimed: float
    measured: float
    waiting: int
    granted: int
    waited: float
    blocked: float
    throttles: int
    charged: float


class _RateMeter:
    """The measured send rate, as botocore's ``RateClocker`` measures it."""

    __slots__ = ("_count", "_last_slot", "_scale", "_smoothing", "rate")

    def __init__(self, now: float, smoothing: float, interval: float) -> None:
        self.rate = 0.0
        self._smoothing = smoothing
        self._scale = 1.0 / interval
        self._last_slot = float(math.floor(now))
        self._count = 0.0

    def record(self, now: float, amount: float = 1.0) -> None:
        slot = math.floor(now * self._scale) / self._scale
        self._count += amount
        if slot > self._last_slot:
            current = self._count / (slot - self._last_slot)
            self.rate = current * self._smoothing + self.rate * (1 - self._smoothing)
            self._count = 0.0
            self._last_slot = slot


class _CubicControl:
    """botocore's ``CubicCalculator`` plus the rules of ``ClientRateLimiter``."""

    __slots__ = ("_enabled", "_k", "_last_fail", "_params", "_w_max")

    def __init__(self, params: Cubic) -> None:
        self._params = params
        self._enabled = False
        self._w_max = 0.0
        self._k = 0.0
        self._last_fail = 0.0

    def throttled(self, now: float, rate: float, measured: float) -> float | None:
        if self._enabled and now - self._last_fail < self._params.cooldown:
            return None
        # botocore bases the cut on min(measured, current rate). Before the
        # first measurement slot has closed it has no measure at all and
        # would cut to the floor; the current rate is the better guess then.
        basis = min(measured, rate) if measured > 0 else rate
        self._w_max = basis
        self._k = (basis * (1 - self._params.beta) / self._params.scale) ** (1 / 3)
        self._last_fail = now
        self._enabled = True
        return basis * self._params.beta

    def succeeded(self, now: float, rate: float, measured: float) -> float | None:
        # Until the first throttle the bucket runs at its ceiling, as botocore
        # does not limit at all before its first throttle.
        if not self._enabled:
            return None
        dt = now - self._last_fail
        new_rate = self._params.scale * (dt - self._k) ** 3 + self._w_max
        if measured > 0:
            new_rate = min(new_rate, 2 * measured)
        return new_rate


class _AimdControl:
    __slots__ = ("_last_change", "_last_cut", "_params", "_step")

    def __init__(self, params: Aimd, ceiling: float, now: float) -> None:
        self._params = params
        self._step = params.increase if params.increase is not None else ceiling * 0.05
        self._last_change = now
        self._last_cut = -math.inf

    def throttled(self, now: float, rate: float, measured: float) -> float | None:
        if now - self._last_cut < self._params.interval:
            return None
        self._last_cut = now
        self._last_change = now
        return rate * self._params.decrease

    def succeeded(self, now: float, rate: float, measured: float) -> float | None:
        calm = math.floor((now - self._last_change) / self._params.interval)
        if calm < 1:
            return None
        self._last_change += calm * self._params.interval
        return rate + calm * self._step


class _Bucket:
    __slots__ = (
        "blocked",
        "capacity",
        "ceiling",
        "charged",
        "control",
        "floor",
        "granted",
        "level",
        "limit",
        "meter",
        "need",
        "order",
        "queue",
        "rate",
        "reserved",
        "scope",
        "sleepers",
        "stamp",
        "throttles",
        "waited",
    )

    def __init__(
        self,
        limit: RateLimit,
        scope: tuple[str | None, str | None, str | None],
        order: tuple[int, int, tuple[str, ...]],
        now: float,
    ) -> None:
        self.limit = limit
        self.scope = scope
        self.order = order
        self.ceiling = limit.rate
        self.rate = limit.rate
        self.floor = cast(float, limit.min_rate)
        self.capacity = cast(float, limit.burst)
        self.level = self.capacity
        self.stamp = now
        # A request bucket needs a whole token; a cost bucket only needs to be
        # out of debt, and takes nothing until the cost is charged.
        self.need = 1.0 if limit.counts_requests else 0.0
        # Tokens claimed by waiters that passed this queue and wait further
        # on; still in ``level``, but no longer anyone else's.
        self.reserved = 0.0
        self.queue: deque[_Waiter] = deque()
        # Waiters asleep until this bucket has what they need.
        self.sleepers: set[_Waiter] = set()
        params = limit.adaptive
        self.control: _CubicControl | _AimdControl | None
        if isinstance(params, Cubic):
            self.control = _CubicControl(params)
            self.meter = _RateMeter(now, params.smoothing, params.measure_interval)
        else:
            if isinstance(params, Aimd):
                self.control = _AimdControl(params, self.ceiling, now)
            else:
                self.control = None
            defaults = Cubic()
            self.meter = _RateMeter(now, defaults.smoothing, defaults.measure_interval)
        self.granted = 0
        self.waited = 0.0
        self.blocked = 0.0
        self.throttles = 0
        self.charged = 0.0

    def refill(self, now: float) -> None:
        if now > self.stamp:
            if self.level < self.capacity:
                self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def shortfall(self) -> float:
        """What the head of the queue still lacks (after :meth:`refill`)."""
        missing = self.need + self.reserved - self.level
        return missing if missing > _EPSILON else 0.0

    def debt(self) -> float:
        """How far a cost bucket is below zero (after :meth:`refill`)."""
        return -self.level if self.level < -_EPSILON else 0.0

    def set_rate(self, now: float, rate: float) -> bool:
        """Move to a new rate within [floor, ceiling]; True if it went up."""
        self.refill(now)
        rate = min(self.ceiling, max(self.floor, rate))
        if rate == self.rate:
            return False
        went_up = rate > self.rate
        self.rate = rate
        # The capacity follows the rate: a throttled scope coming back from an
        # idle spell should not fire a full-size burst at the service.
        burst = cast(float, self.limit.burst)
        self.capacity = max(self.need, burst * rate / self.ceiling)
        # Claimed tokens stay: their waiters were promised them.
        self.level = min(self.level, max(self.capacity, self.reserved))
        return went_up

    def wake_head(self) -> None:
        if self.queue:
            self.queue[0].nudge()

    def wake_sleepers(self) -> None:
        for waiter in tuple(self.sleepers):
            waiter.nudge()

    def stats(self, now: float) -> BucketStats:
        self.refill(now)
        return BucketStats(
            limit=self.limit,
            service=self.scope[0],
            region=self.scope[1],
            operation=self.scope[2],
            unit=self.limit.unit,
            rate=self.rate,
            ceiling=self.ceiling,
            capacity=self.capacity,
            level=self.level,
            claimed=self.reserved,
            measured=self.meter.rate,
            waiting=len(self.queue),
            granted=self.granted,
            waited=self.waited,
            blocked=self.blocked,
            throttles=self.throttles,
            charged=self.charged,
        )


@dataclass(eq=False)
class _Waiter:
    """One pending :meth:`Pacer.acquire`.

    It holds claims on ``buckets[:stage]``; while ``queued`` it is in the
    queue of ``buckets[stage]``; at ``stage == len(buckets)`` it has claimed
    everything and only waits for cost buckets to get out of debt.
    ``waiting_on`` is the bucket its current wait is charged to.
    """

    buckets: tuple[_Bucket, ...]
    since: float
    waiting_on: _Bucket
    stage: int = 0
    queued: bool = False
    event: anyio.Event | None = None
    timer: anyio.CancelScope | None = field(default=None, repr=False)

    def nudge(self) -> None:
        """Make the waiter look at its buckets again, now."""
        if self.event is not None:
            self.event.set()
        if self.timer is not None:
            self.timer.cancel()


class _Granted:
    pass


_GRANTED = _Granted()


class Pacer:
    """Paces requests through every :class:`RateLimit` whose scope they match.

    ::

        pacer = Pacer([
            RateLimit(200),                                         # everything
            RateLimit(50, service="s3", per="region", adaptive="cubic"),
            RateLimit(500, service="dynamodb", operation="Scan", unit="read_units"),
        ])
        await pacer.acquire("s3", "eu-west-1", "ListObjectsV2")
        ...                                    # send the request
        pacer.on_success("s3", "eu-west-1", "ListObjectsV2")   # or on_throttle

    For a cost bucket, report the cost once it is known::

        await pacer.acquire("dynamodb", "us-east-1", "Scan")
        page = await client.scan(..., ReturnConsumedCapacity="TOTAL")
        pacer.charge("dynamodb", "us-east-1", "Scan",
                     page["ConsumedCapacity"]["CapacityUnits"])

    Time comes from ``clock`` (the event loop's clock by default).
    """

    def __init__(self, limits: Iterable[RateLimit], clock: Clock | None = None) -> None:
        limits = tuple(limits)
        for limit in limits:
            if not isinstance(limit, RateLimit):
                raise ConfigurationError(f"Pacer: expected RateLimit, got {limit!r}")
        self._limits = limits
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._buckets: dict[tuple[int, tuple[str | None, ...]], _Bucket] = {}
        self._matches: dict[tuple[str, str | None, str | None], tuple[_Bucket, ...]] = {}
        self._granted = 0
        self._waited = 0.0
        self._throttles = 0

    @property
    def limits(self) -> tuple[RateLimit, ...]:
        return self._limits

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def granted(self) -> int:
        """Requests let through so far."""
        return self._granted

    @property
    def waited(self) -> float:
        """Total seconds all requests spent in :meth:`acquire`."""
        return self._waited

    @property
    def throttles(self) -> int:
        """Throttles reported through :meth:`on_throttle`."""
        return self._throttles

    async def acquire(
        self, service: str, region: str | None = None, operation: str | None = None
    ) -> float:
        """Wait until the request may be sent; return the seconds waited.

        Takes one token from every matching request bucket, and waits for
        every matching cost bucket to be out of debt, all at one instant. A
        cancelled call has taken nothing and leaves no trace in the queues.
        """
        await anyio.lowlevel.checkpoint()
        buckets = self._match(service, region, operation)
        if not buckets:
            return 0.0
        start = self._clock.now()
        waiter = _Waiter(buckets, start, buckets[0])
        granted = False
        try:
            while True:
                outcome = self._advance(waiter)
                if outcome is _GRANTED:
                    granted = True
                    waited = self._clock.now() - start
                    self._waited += waited
                    return waited
                if outcome is None:
                    assert waiter.event is not None
                    await waiter.event.wait()
                    continue
                short = waiter.waiting_on
                short.sleepers.add(waiter)
                began = self._clock.now()
                try:
                    with anyio.CancelScope() as waiter.timer:
                        await self._clock.sleep(cast(float, outcome) - began)
                finally:
                    waiter.timer = None
                    short.sleepers.discard(waiter)
                    short.blocked += self._clock.now() - began
        finally:
            if not granted:
                self._abandon(waiter)

    def charge(
        self,
        service: str,
        region: str | None,
        operation: str | None,
        units: float,
        *,
        unit: str | None = None,
    ) -> None:
        """Debit what a request cost from every matching cost bucket.

        ``unit`` picks the buckets of one unit; ``None`` charges every cost
        bucket the request matches. Request-counting buckets are not touched:
        they were paid in :meth:`acquire`. The balance may go below zero; the
        next request waits until the debt is paid back at the bucket's rate.
        """
        if not _is_number(units) or not math.isfinite(units) or units < 0:
            raise ConfigurationError(f"charge: units must be a finite number >= 0, got {units!r}")
        if unit is not None and unit == _REQUESTS:
            raise ConfigurationError("charge: request buckets are paid in acquire(), not charged")
        now = self._clock.now()
        for bucket in self._match(service, region, operation):
            if bucket.limit.counts_requests or (unit is not None and bucket.limit.unit != unit):
                continue
            bucket.refill(now)
            bucket.level -= units
            bucket.charged += units
            bucket.meter.record(now, units)

    def on_throttle(
        self, service: str, region: str | None = None, operation: str | None = None
    ) -> None:
        """A request was throttled: lower every matching adaptive bucket.

        Every matching bucket counts the throttle in its stats, adaptive or
        not. Report every throttled response, retried or not.
        """
        self._throttles += 1
        now = self._clock.now()
        for bucket in self._match(service, region, operation):
            bucket.throttles += 1
            if bucket.control is not None:
                new_rate = bucket.control.throttled(now, bucket.rate, bucket.meter.rate)
                if new_rate is not None:
                    self._set_rate(bucket, now, new_rate)

    def on_success(
        self, service: str, region: str | None = None, operation: str | None = None
    ) -> None:
        """A request succeeded: let matching adaptive buckets probe back up.

        Both algorithms raise the rate only from these reports, so report
        every successful response; without them a lowered rate stays low.
        """
        now = self._clock.now()
        for bucket in self._match(service, region, operation):
            if bucket.control is not None:
                new_rate = bucket.control.succeeded(now, bucket.rate, bucket.meter.rate)
                if new_rate is not None:
                    self._set_rate(bucket, now, new_rate)

    def stats(self) -> tuple[BucketStats, ...]:
        """A snapshot of every bucket created so far, in the global order."""
        now = self._clock.now()
        buckets = sorted(self._buckets.values(), key=lambda b: b.order)
        return tuple(bucket.stats(now) for bucket in buckets)

    # -- internals -----------------------------------------------------------

    def _match(
        self, service: str, region: str | None, operation: str | None
    ) -> tuple[_Bucket, ...]:
        request = (service, region, operation)
        cached = self._matches.get(request)
        if cached is not None:
            return cached
        values = dict(zip(_SCOPE_FIELDS, request, strict=True))
        found: list[_Bucket] = []
        for index, limit in enumerate(self._limits):
            if any(
                getattr(limit, name) is not None and getattr(limit, name) != values[name]
                for name in _SCOPE_FIELDS
            ):
                continue
            per = cast(tuple[ScopeField, ...], limit.per)
            split = tuple(values[name] for name in per)
            bucket = self._buckets.get((index, split))
            if bucket is None:
                scope = cast(
                    tuple[str | None, str | None, str | None],
                    tuple(
                        values[name] if name in per else getattr(limit, name)
                        for name in _SCOPE_FIELDS
                    ),
                )
                specificity = sum(1 for name in _SCOPE_FIELDS if getattr(limit, name)) + len(per)
                order = (-specificity, index, tuple(value or "" for value in split))
                bucket = _Bucket(limit, scope, order, self._clock.now())
                self._buckets[(index, split)] = bucket
            found.append(bucket)
        # One global order (most specific first) for every request: a waiter
        # holds claims only in buckets before the one it waits for, so waits
        # can never form a cycle.
        matched = tuple(sorted(found, key=lambda b: b.order))
        self._matches[request] = matched
        return matched

    def _advance(self, waiter: _Waiter) -> _Granted | float | None:
        """Move ``waiter`` as far as it can go now, without awaiting.

        Returns ``_GRANTED`` (tokens taken), a deadline on the clock to sleep
        until (``waiter.waiting_on`` is short), or ``None``: wait for
        ``waiter.event``, set when the waiter reaches the head of its queue.
        """
        waiter.event = None
        now = self._clock.now()
        buckets = waiter.buckets
        while waiter.stage < len(buckets):
            bucket = buckets[waiter.stage]
            if not waiter.queued:
                self._wait_on(waiter, bucket, now)
                bucket.queue.append(waiter)
                waiter.queued = True
            if bucket.queue[0] is not waiter:
                waiter.event = anyio.Event()
                return None
            bucket.refill(now)
            missing = bucket.shortfall()
            if missing:
                return self._deadline(now, missing / bucket.rate)
            # Claim the token and let the next waiter at this queue move on:
            # holding the head instead while waiting for a later bucket
            # would block this scope for as long as that bucket is slow.
            bucket.reserved += bucket.need
            bucket.queue.popleft()
            waiter.queued = False
            bucket.wake_head()
            waiter.stage += 1
        # Everything is claimed. A charge may have put a cost bucket passed
        # earlier back into debt; the request waits for that without holding
        # any queue.
        for bucket in buckets:
            if not bucket.need:
                bucket.refill(now)
                debt = bucket.debt()
                if debt:
                    self._wait_on(waiter, bucket, now)
                    return self._deadline(now, debt / bucket.rate)
        self._wait_on(waiter, waiter.waiting_on, now)
        for bucket in buckets:
            # Refill up to now first: the cap at ``capacity`` makes a late
            # refill over a take differ from the refill before it.
            bucket.refill(now)
            bucket.reserved -= bucket.need
            bucket.level -= bucket.need
            bucket.granted += 1
            if bucket.need:
                bucket.meter.record(now)
        self._granted += 1
        return _GRANTED

    @staticmethod
    def _deadline(now: float, delay: float) -> float:
        # At a large clock value a tiny delay can vanish in the addition; the
        # deadline must still be later than now or the waiter would wake to
        # the same short balance forever.
        return max(now + delay, math.nextafter(now, math.inf))

    @staticmethod
    def _wait_on(waiter: _Waiter, bucket: _Bucket, now: float) -> None:
        """Charge the wait so far to the bucket waited on, then switch."""
        waiter.waiting_on.waited += now - waiter.since
        waiter.since = now
        waiter.waiting_on = bucket

    def _abandon(self, waiter: _Waiter) -> None:
        self._wait_on(waiter, waiter.waiting_on, self._clock.now())
        if waiter.queued:
            bucket = waiter.buckets[waiter.stage]
            if bucket.queue[0] is waiter:
                bucket.queue.popleft()
                bucket.wake_head()
            else:
                bucket.queue.remove(waiter)
            waiter.queued = False
        for bucket in waiter.buckets[: waiter.stage]:
            if bucket.need:
                bucket.reserved -= bucket.need
                # The released token may be exactly what a sleeping head of
                # this bucket is waiting for.
                bucket.wake_sleepers()
        waiter.stage = 0

    def _set_rate(self, bucket: _Bucket, now: float, rate: float) -> None:
        if bucket.set_rate(now, rate):
            # Sleepers computed their deadlines at the old, lower rate.
            bucket.wake_sleepers()


class PacerLike(Protocol):
    """What the engine asks of a pacer: :class:`Pacer`, or one shared by
    several processes (``asyncpager.cluster``)."""

    async def acquire(
        self, service: str, region: str | None = None, operation: str | None = None
    ) -> float: ...

    def on_success(self, service: str, region: str | None, operation: str | None) -> None: ...

    def on_throttle(self, service: str, region: str | None, operation: str | None) -> None: ...

    def charge(
        self,
        service: str,
        region: str | None,
        operation: str | None,
        units: float,
        *,
        unit: str | None = None,
    ) -> None: ...


def share_limits(limits: Iterable[RateLimit], share: float) -> list[RateLimit]:
    """Each limit at ``share`` of its rate and burst: what one of ``1/share``
    processes running side by side may use, so that together they hold the
    limit (the static split of ``--workers`` and of cluster tasks)."""
    if not 0 < share <= 1:
        raise ConfigurationError(f"a share of a rate limit is in (0, 1], not {share}")
    if share == 1:
        return list(limits)
    return [
        dataclasses.replace(
            limit,
            rate=limit.rate * share,
            burst=max(1.0, (limit.burst or limit.rate) * share),
            min_rate=None,
        )
        for limit in limits
    ]
