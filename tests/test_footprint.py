"""What a parsed page costs in memory (asyncpager._footprint)."""

from __future__ import annotations

import json
import sys
from typing import Any

from asyncpager._footprint import (
    SAMPLE_BYTES,
    SAMPLES,
    UNKNOWN_WIRE,
    PageSizer,
    footprint,
    wire_size,
)
from asyncpager.item_lines import ObjectLines, split_page


def test_footprint_counts_every_container_once() -> None:
    shared = {"S": "x" * 100}
    page = {"Items": [{"a": shared, "b": shared}, {"a": shared}], "Count": 2}
    expected = (
        sys.getsizeof(page)
        + sys.getsizeof("Items")
        + sys.getsizeof("Count")
        + sys.getsizeof(2)
        + sys.getsizeof(page["Items"])
        + sys.getsizeof(page["Items"][0])
        + sys.getsizeof(page["Items"][1])
        + sys.getsizeof("a")
        + sys.getsizeof("b")
        + sys.getsizeof(shared)
        + sys.getsizeof("S")
        + sys.getsizeof(shared["S"])
    )
    assert footprint(page) == expected


def test_footprint_of_cyclic_data_ends() -> None:
    a: list[Any] = [1]
    a.append(a)
    assert footprint(a) == sys.getsizeof(a) + sys.getsizeof(1)


def test_text_kept_for_the_export_counts_what_it_holds() -> None:
    items = [{"pk": {"S": f"key-{n}"}, "v": {"N": str(n)}} for n in range(500)]
    body = json.dumps(
        {"Items": items, "Count": 500, "ScannedCount": 500}, separators=(",", ":")
    ).encode()
    cut = split_page(body)
    assert cut is not None
    lines = cut[1]
    assert sys.getsizeof(lines) >= len(body)
    # Counting must not decode the items (that is the export's saving).
    assert lines._typed is None
    text = b"".join(json.dumps({"Key": f"k{n}"}).encode() + b"\n" for n in range(300))
    objects = ObjectLines(text, 300)
    assert sys.getsizeof(objects) >= len(text)
    assert footprint({"Contents": objects}) >= len(text)


def _page(items: int, length: int | None) -> dict[str, Any]:
    headers = {} if length is None else {"content-length": str(length)}
    return {
        "Items": [{"pk": {"S": f"key-{n}"}, "v": {"N": str(n)}} for n in range(items)],
        "ResponseMetadata": {"HTTPHeaders": headers},
    }


def test_wire_size_reads_content_length() -> None:
    assert wire_size(_page(1, 5_000)) == 5_000
    assert wire_size(_page(1, None)) == UNKNOWN_WIRE
    assert wire_size({"ResponseMetadata": {"HTTPHeaders": {"content-length": "x"}}}) == UNKNOWN_WIRE
    assert wire_size({}) == UNKNOWN_WIRE


def test_sizer_learns_memory_per_wire_byte_from_a_full_page() -> None:
    sizer = PageSizer()
    big = _page(2_000, SAMPLE_BYTES * 2)
    measured = sizer.size("scan", big, SAMPLE_BYTES * 2)
    assert measured == footprint(big)
    assert measured > SAMPLE_BYTES * 2  # parsed items outweigh their text
    # Settled: a later page of the operation is not walked, but counted at
    # its wire size times the ratio learnt.
    other = _page(1, 10)
    ratio = measured / (SAMPLE_BYTES * 2)
    assert sizer.size("scan", other, SAMPLE_BYTES) == int(SAMPLE_BYTES * ratio)
    # Each operation learns its own.
    assert sizer.size("other", other, 1) == footprint(other)


def test_sizer_keeps_the_largest_ratio_of_small_pages_and_stops_walking() -> None:
    sizer = PageSizer()
    ratios = []
    for n in range(SAMPLES):
        page = _page(1 + n, 1_000)
        ratios.append(max(1.0, footprint(page) / 1_000))
        assert sizer.size("scan", page, 1_000) == int(1_000 * max(ratios))
    # Walked SAMPLES times: the next page, however large, is estimated.
    huge = _page(5_000, 1_000)
    assert sizer.size("scan", huge, 1_000) == int(1_000 * max(ratios)) < footprint(huge)


def test_answers_without_length_are_counted_at_the_walked_footprint() -> None:
    sizer = PageSizer()
    page = _page(300, None)
    assert sizer.size("list", page, wire_size(page)) == footprint(page)
