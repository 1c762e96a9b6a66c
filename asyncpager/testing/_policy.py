"""Latency, throttling and faults, decided per request; and the counters.

Every random choice comes from a generator seeded by the endpoint's seed (one
generator per concern, so adding latency does not change which requests get
faulted), and the deterministic triggers (``first``, ``every``) count requests
per rule. So a test that sends its requests in a fixed order sees the same
throttles and faults on every run.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from asyncpager.testing._specs import EndpointConfig, Fault, LatencyModel, Throttle

__all__ = ["EndpointStats", "Policies", "StatsRecorder"]


class _Trigger:
    __slots__ = ("every", "first", "probability", "rng", "seen")

    def __init__(self, first: int, every: int, probability: float, rng: random.Random) -> None:
        self.first, self.every, self.probability, self.rng = first, every, probability, rng
        self.seen = 0

    def fire(self) -> bool:
        self.seen += 1
        if self.seen <= self.first:
            return True
        if self.every and self.seen % self.every == 0:
            return True
        return bool(self.probability) and self.rng.random() < self.probability


class _TokenBucket:
    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.last = rate, burst, burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def _matches(rule: LatencyModel | Throttle | Fault, service: str, operation: str) -> bool:
    return (rule.service is None or rule.service == service) and (
        rule.operation is None or rule.operation == operation
    )


_THROTTLE_CODES = {
    "s3": ("SlowDown", "ServiceUnavailable"),
    "dynamodb": ("ProvisionedThroughputExceededException", "ThrottlingException"),
    "ec2": ("RequestLimitExceeded",),
    "iam": ("Throttling",),
}


class Policies:
    """The misbehaviour of one endpoint configuration, with its own state."""

    def __init__(self, config: EndpointConfig, clock: Callable[[], float]) -> None:
        seed = config.seed
        self.clock = clock
        self.latency = config.latency
        self._latency_rng = random.Random(f"latency:{seed}")
        throttle_rng = random.Random(f"throttle:{seed}")
        fault_rng = random.Random(f"fault:{seed}")
        self.throttles: list[tuple[Throttle, _Trigger, dict[tuple[str, str], _TokenBucket]]] = [
            (rule, _Trigger(rule.first, rule.every, rule.probability, throttle_rng), {})
            for rule in config.throttles
        ]
        self.faults = [
            (rule, _Trigger(rule.first, rule.every, rule.probability, fault_rng))
            for rule in config.faults
        ]

    def delay(self, service: str, operation: str, size: int) -> float:
        for model in self.latency:
            if _matches(model, service, operation):
                jitter = self._latency_rng.random() * model.jitter if model.jitter else 0.0
                return model.fixed + jitter + model.per_mb * size / 1e6
        return 0.0

    def throttle(self, service: str, operation: str) -> str | None:
        """The error code to throttle with, or None to serve the request."""
        for rule, trigger, buckets in self.throttles:
            if not _matches(rule, service, operation):
                continue
            hit = trigger.fire()
            if not hit and rule.rate is not None:
                bucket = buckets.get((service, operation))
                now = self.clock()
                if bucket is None:
                    burst = rule.burst if rule.burst is not None else max(1.0, rule.rate)
                    bucket = buckets[(service, operation)] = _TokenBucket(rule.rate, burst, now)
                hit = not bucket.take(now)
            if hit:
                codes = _THROTTLE_CODES[service]
                return rule.code if rule.code in codes else codes[0]
        return None

    def fault(self, service: str, operation: str, has_token: bool) -> Fault | None:
        chosen = None
        for rule, trigger in self.faults:
            if not _matches(rule, service, operation):
                continue
            if rule.kind == "repeat_token" and not has_token:
                continue
            if trigger.fire() and chosen is None:
                chosen = rule
        return chosen


@dataclasses.dataclass(frozen=True)
class EndpointStats:
    """What the endpoint has seen since it started (or since ``reset_stats``).

    Keys are ``(service, operation)`` with operations named as in botocore
    (``ListObjectsV2``, ``Scan``, ``DescribeInstances``, ``ListUsers``).
    ``requests`` counts every request that reached a service, including the
    throttled and faulted ones; ``errors`` counts other error answers by
    ``(service, operation, status)``.
    """

    requests: Mapping[tuple[str, str], int]
    throttled: Mapping[tuple[str, str], int]
    faults: Mapping[tuple[str, str, str], int]
    errors: Mapping[tuple[str, str, int], int]
    connections: int
    bytes_sent: int
    cache_hits: int
    cpu_seconds: float
    """Server thread CPU spent parsing, answering and writing (not waiting)."""

    def count(self, service: str | None = None, operation: str | None = None) -> int:
        """Requests seen for a service and/or operation (all when both are None)."""
        return _total(self.requests, service, operation)

    def throttled_count(self, service: str | None = None, operation: str | None = None) -> int:
        return _total(self.throttled, service, operation)

    def fault_count(
        self, kind: str | None = None, service: str | None = None, operation: str | None = None
    ) -> int:
        return sum(
            n
            for (s, o, k), n in self.faults.items()
            if (kind is None or k == kind)
            and (service is None or s == service)
            and (operation is None or o == operation)
        )

    def to_json(self) -> dict[str, Any]:
        def flat(counts: Mapping[Any, int]) -> list[list[Any]]:
            return [[*key, n] for key, n in sorted(counts.items())]

        return {
            "requests": flat(self.requests),
            "throttled": flat(self.throttled),
            "faults": flat(self.faults),
            "errors": flat(self.errors),
            "connections": self.connections,
            "bytes_sent": self.bytes_sent,
            "cache_hits": self.cache_hits,
            "cpu_seconds": self.cpu_seconds,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EndpointStats:
        def unflat(rows: list[list[Any]]) -> dict[Any, int]:
            return {tuple(row[:-1]): int(row[-1]) for row in rows}

        return cls(
            requests=unflat(data["requests"]),
            throttled=unflat(data["throttled"]),
            faults=unflat(data["faults"]),
            errors=unflat(data["errors"]),
            connections=int(data["connections"]),
            bytes_sent=int(data["bytes_sent"]),
            cache_hits=int(data["cache_hits"]),
            cpu_seconds=float(data["cpu_seconds"]),
        )


def _total(
    counts: Mapping[tuple[str, str], int], service: str | None, operation: str | None
) -> int:
    return sum(
        n
        for (s, o), n in counts.items()
        if (service is None or s == service) and (operation is None or o == operation)
    )


class StatsRecorder:
    """Counters written by the server thread and read, under a lock, by tests."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()
        self.throttled: Counter[tuple[str, str]] = Counter()
        self.faults: Counter[tuple[str, str, str]] = Counter()
        self.errors: Counter[tuple[str, str, int]] = Counter()
        self.connections = 0
        self.bytes_sent = 0
        self.cpu_seconds = 0.0
        self.cache_base = 0

    def snapshot(self, cache_hits: int) -> EndpointStats:
        with self.lock:
            return EndpointStats(
                requests=dict(self.requests),
                throttled=dict(self.throttled),
                faults=dict(self.faults),
                errors=dict(self.errors),
                connections=self.connections,
                bytes_sent=self.bytes_sent,
                cache_hits=cache_hits - self.cache_base,
                cpu_seconds=self.cpu_seconds,
            )
