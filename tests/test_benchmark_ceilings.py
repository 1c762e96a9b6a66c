"""The benchmark suite's ceilings: the lowest of its terms, and the parse
cost read twice, the lower reading kept."""

from __future__ import annotations

import pytest

from benchmarks.ceilings import ParseCost, ceiling, lower_cost


@pytest.mark.parametrize(
    ("streams", "throttled", "per_page", "parse_ms", "limit", "expected"),
    [
        # 64 streams at 50 ms of 1,000-key pages allow 1.28M keys/s; a parse
        # of 1.2 ms a page on one core, 833k.
        (64, 0.0, 1000, 1.2, "parse", 1000 / 0.0012),
        # 17 regions of 20-instance pages, a tenth of the requests throttled.
        (17, 0.1, 20, 0.4, "latency", 17 / 0.05 * 20 * 0.9),
    ],
)
def test_the_ceiling_is_its_lowest_term(
    streams: int, throttled: float, per_page: int, parse_ms: float, limit: str, expected: float
) -> None:
    result = ceiling(
        streams=streams,
        latency_s=0.05,
        throttle_probability=throttled,
        items_per_page=per_page,
        server_cpu_per_request=None,
        configured_rate=None,
        parse_ms=parse_ms,
        cores=1,
    )
    assert result.limit == limit
    assert result.items_per_second == pytest.approx(expected)


def test_the_lower_reading_of_each_parser_is_kept() -> None:
    first = ParseCost(items_per_page=4310, body_bytes=10, botocore_ms=285.0, request_ms=270.0)
    first.fast_ms = 90.0
    second = ParseCost(items_per_page=4310, body_bytes=10, botocore_ms=300.0, request_ms=260.0)
    second.fast_ms = 57.0
    both = lower_cost(first, second)
    assert (both.botocore_ms, both.fast_ms, both.request_ms) == (285.0, 57.0, 260.0)
    assert both.items_per_page == 4310
    # A reading the compiled parser could not give leaves the other.
    unread = ParseCost(items_per_page=4310, body_bytes=10, botocore_ms=280.0, fast_note="n/a")
    assert lower_cost(unread, second).fast_ms == 57.0
    assert lower_cost(unread, second).fast_note == "n/a"


def test_the_figures_endpoint_keeps_what_its_data_sets_render() -> None:
    import argparse

    from benchmarks.export_figures import _cache_bytes

    def cache(keys: int, items: int, asked: int | None = None) -> int:
        args = argparse.Namespace(keys=keys, items=items, endpoint_cache_mb=asked)
        return _cache_bytes(args)

    # A million mixed DynamoDB items render about 560 MB: all of it is kept.
    assert cache(0, 1_000_000) >= 560 << 20
    assert cache(1_000_000, 1_000_000) > cache(0, 1_000_000)
    # Never below the endpoint's own default, never above 8 GiB.
    assert cache(10, 10) == 64 << 20
    assert cache(10**9, 10**9) == 8 << 30
    # Asked for, as asked.
    assert cache(10**6, 10**6, asked=128) == 128 << 20
