"""asyncpager.item_lines: DynamoDB items as plain JSON Lines from the text sent.

What must hold: for any page, the lines are the bytes the ordinary path
writes (decode, ``dynamodb_to_json_ready``, ``plain_to_json_line``), whether
the text path took the page or handed it back; the text path takes the pages
DynamoDB actually sends (compact, plain numbers); and an export through the
command writes what botocore's parse of the same pages gives.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from asyncpager.convert import dynamodb_to_json_ready, plain_to_json_line
from asyncpager.errors import ConfigurationError, PaginationError
from asyncpager.item_lines import ItemLines, plain_lines, split_page
from asyncpager.parsers._compiler import json_loads
from asyncpager.testing import LocalEndpoint, Table
from tests.test_cli import read_records, run
from tests.test_convert import attribute_values, json_ready_items

# The reference lines keep numbers as their text only with orjson.
pytest.importorskip("orjson")


def wire(value: Any) -> Any:
    """An attribute value (or item) as DynamoDB's JSON has it: blobs as base64."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [wire(v) for v in value]
    return value


def body_of(items: list[dict[str, Any]], *, ascii_only: bool = False, **more: Any) -> bytes:
    """A Scan response as DynamoDB writes it: compact, UTF-8."""
    page = {"Count": len(items), "Items": [wire(i) for i in items], "ScannedCount": 9, **more}
    return json.dumps(page, separators=(",", ":"), ensure_ascii=ascii_only).encode()


def reference(body: bytes) -> bytes:
    """The ordinary path: decode the page, convert each item, encode it."""
    return b"".join(
        plain_to_json_line(dynamodb_to_json_ready(i)) for i in json_loads(body)["Items"]
    )


def lines_of(body: bytes) -> tuple[bytes | None, ItemLines]:
    cut = split_page(body)
    assert cut is not None
    meta, lines = cut
    parsed = json.loads(meta)
    assert parsed["Items"] == []
    lines.set_count(parsed["Count"])
    return plain_lines(body[lines._start : lines._end], parsed["Count"]), lines


# Names and strings that look like the structure being taken apart.
TYPE_NAMES = ["S", "N", "B", "M", "L", "NULL", "BOOL", "SS", "NS", "BS", "Items", "Count"]
TRICKY = ["}}", "]}", "},{", '},{"a":', '"}', "\\", '\\"}', '{"S":"x"}', '],"Count":1', "\x01", ""]
names = st.one_of(st.sampled_from(TYPE_NAMES), st.text(min_size=1, max_size=6))
strings = st.one_of(st.text(max_size=12), st.sampled_from(TRICKY))
tricky_values = st.recursive(
    st.one_of(
        st.builds(lambda s: {"S": s}, strings),
        st.builds(lambda s: {"SS": sorted(s)}, st.sets(strings, min_size=1, max_size=4)),
        attribute_values,
    ),
    lambda inner: st.one_of(
        st.builds(lambda xs: {"L": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda m: {"M": m}, st.dictionaries(names, inner, max_size=3)),
    ),
    max_leaves=10,
)
tricky_items = st.dictionaries(names, tricky_values, min_size=1, max_size=5)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(tricky_items, json_ready_items.filter(bool)), max_size=5))
@example([{"N": {"S": "5"}}])
@example([{"NULL": {"BOOL": True}}])
@example([{"M": {"M": {"M": {"S": "1"}}}}, {"L": {"L": []}}])
@example([{"S": {"L": []}}, {"M": {"M": {"S": {"L": []}}}}])
@example([{"a": {"S": "x},{y"}}, {"b": {"S": "p}}q"}}])
@example([{"a": {"S": "ends in a backslash \\"}}])
@example([{"a": {"N": "007"}}, {"b": {"NS": ["1E+2", "3"]}}])
def test_lines_are_the_ordinary_paths_bytes(items: list[dict[str, Any]]) -> None:
    body = body_of(items)
    fast, lines = lines_of(body)
    expected = reference(body)
    # Taken or handed back, never different.
    assert fast is None or fast == expected
    assert lines.encoded() == (expected, len(items))


@settings(max_examples=200, deadline=None)
@given(st.lists(tricky_items, min_size=1, max_size=4))
def test_escaped_text_gives_the_same_values(items: list[dict[str, Any]]) -> None:
    # A server that escapes every non-ASCII character: the text path keeps
    # the escapes, the values are the same.
    body = body_of(items, ascii_only=True)
    fast, _ = lines_of(body)
    if fast is None:
        return
    expected = reference(body)
    assert fast.count(b"\n") == expected.count(b"\n") == len(items)
    assert [json.loads(x, parse_float=Decimal) for x in fast.splitlines()] == [
        json.loads(x, parse_float=Decimal) for x in expected.splitlines()
    ]


# Attribute values the way DynamoDB's own pages have them: no escapes, plain numbers.
plain_numbers = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(lambda d: f"{d:f}"),
).filter(lambda n: (n != "-0.000" and not n.startswith("-0")) or n.startswith("-0."))
plain_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\{}[]'), max_size=10
)
#: Type names but M (an item or map whose first attribute is an M holding a
#: map is left to the ordinary path: see test_what_the_text_path_hands_back).
plain_names = st.one_of(st.sampled_from(TYPE_NAMES), plain_text).filter(
    lambda name: name not in ("", "M")
)
plain_values = st.recursive(
    st.one_of(
        st.builds(lambda s: {"S": s}, plain_text),
        st.builds(lambda n: {"N": n}, plain_numbers),
        st.builds(lambda b: {"B": b}, st.binary(max_size=20)),
        st.builds(lambda b: {"BOOL": b}, st.booleans()),
        st.just({"NULL": True}),
        st.builds(lambda s: {"SS": list(s)}, st.sets(plain_text, min_size=1, max_size=4)),
        st.builds(
            lambda s: {"NS": [str(n) for n in s]}, st.sets(st.integers(0, 10**17), min_size=1)
        ),
        st.builds(lambda s: {"BS": list(s)}, st.sets(st.binary(max_size=6), min_size=1)),
    ),
    lambda inner: st.one_of(
        st.builds(lambda xs: {"L": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda m: {"M": m}, st.dictionaries(plain_names, inner, max_size=3)),
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(plain_names, plain_values, min_size=1, max_size=6), max_size=6))
def test_pages_as_dynamodb_sends_them_take_the_text_path(items: list[dict[str, Any]]) -> None:
    body = body_of(items)
    fast, _ = lines_of(body)
    assert fast == reference(body)


@pytest.mark.parametrize(
    ("item", "taken"),
    [
        ({"a": {"N": "1E+2"}}, False),  # not plain digits
        ({"a": {"N": "007"}}, False),
        ({"a": {"S": "x},{y"}, "b": {"S": "z"}}, True),  # '},{"' is never in a string
        ({"a": {"S": 'x"}'}}, False),  # an escaped quote before a brace
        ({"a": {"M": {"b": {"S": "}}"}}}}, False),  # closing braces in a string
        ({"a": {"L": [{"S": "]}"}]}}, False),
        ({"M": {"M": {"b": {"S": "x"}}}}, False),  # first attribute named M, holding a map
        ({"M": {"S": "x"}, "a": {"M": {"M": {"NULL": True}}}}, True),
        ({"b": {"S": "x"}, "M": {"M": {"c": {"M": {}}}}}, True),  # not first: a wrapper
        ({"B": {"S": ""}, "S": {"B": "AA=="}, "N": {"S": "5"}}, True),
    ],
)
def test_what_the_text_path_takes(item: dict[str, Any], taken: bool) -> None:
    body = body_of([item, {"k": {"S": "v"}}])
    fast, lines = lines_of(body)
    expected = reference(body)
    assert fast == (expected if taken else None)
    assert lines.encoded() == (expected, 2)


def test_a_new_type_is_handed_back() -> None:
    body = body_of([{"a": {"X": "new type"}}])
    fast, lines = lines_of(body)
    assert fast is None
    with pytest.raises(ConfigurationError, match="not a DynamoDB item"):
        lines.encoded()


def test_whitespace_between_tokens_is_handed_back() -> None:
    page = {"Count": 1, "Items": [{"a": {"S": "x"}, "n": {"N": "1"}}], "ScannedCount": 1}
    body = json.dumps(page).encode()  # ", " and ": " as separators
    cut = split_page(body)
    if cut is not None:
        _, lines = cut
        assert plain_lines(body[lines._start : lines._end], 1) is None


@pytest.mark.parametrize(
    "more",
    [
        {},
        {"LastEvaluatedKey": {"pk": {"S": 'a],"Count":2'}}},
        {"LastEvaluatedKey": {"Items": {"S": "],x"}}, "ConsumedCapacity": {"TableName": "t"}},
    ],
)
def test_split_page_finds_the_items_wherever_they_are(more: dict[str, Any]) -> None:
    items = [{"pk": {"S": "a"}, "l": {"L": [{"N": "1"}]}}, {"pk": {"S": "b"}}]
    body = body_of(items, **more)
    fast, _ = lines_of(body)
    assert fast == b'{"pk":"a","l":[1]}\n{"pk":"b"}\n'
    # The items last: the array ends the body.
    reordered = json.dumps(
        {"Count": 2, **more, "Items": [wire(i) for i in items]}, separators=(",", ":")
    ).encode()
    assert lines_of(reordered)[0] == fast
    meta, _ = split_page(reordered) or (b"", None)
    assert json.loads(meta) == {"Count": 2, **more, "Items": []}


def test_split_page_without_items() -> None:
    assert split_page(b'{"Count":3,"ScannedCount":3}') is None
    assert split_page(b"{}") is None
    fast, lines = lines_of(b'{"Count":0,"Items":[],"ScannedCount":5}')
    assert fast == b""
    assert len(lines) == 0
    assert lines.encoded() == (b"", 0)


def test_item_lines_reads_as_the_typed_items() -> None:
    items = [{"pk": {"S": f"k{i}"}, "n": {"N": str(i)}, "b": {"B": b"\x00\xff"}} for i in range(5)]
    body = body_of(items)
    _, lines = lines_of(body)
    assert len(lines) == 5
    assert list(lines) == [wire(i) for i in items]
    assert lines[1:3] == [wire(i) for i in items[1:3]]
    assert lines.records(2) == [
        {"pk": "k0", "n": 0, "b": "AP8="},
        {"pk": "k1", "n": 1, "b": "AP8="},
    ]
    assert lines.encoded(2) == (b'{"pk":"k0","n":0,"b":"AP8="}\n{"pk":"k1","n":1,"b":"AP8="}\n', 2)
    assert lines.encoded(99) == (reference(body), 5)


def test_a_count_that_does_not_match_is_an_error() -> None:
    body = body_of([{"pk": {"S": "a"}}, {"pk": {"S": "b"}}])
    cut = split_page(body)
    assert cut is not None
    _, lines = cut
    lines.set_count(3)
    with pytest.raises(PaginationError, match="Count=3 but holds 2"):
        lines.encoded()


def test_odd_numbers_are_written_as_the_converter_writes_them() -> None:
    odd = ["+5", "007", "-0", "0.0", "-0.000", "1.", ".5", "1e2", "1E+2", "1.50", "0012"]
    items = [{"n": {"N": n}} for n in [*odd, "123456789012345678901234", "-7"]]
    body = body_of(items)
    _, lines = lines_of(body)
    assert lines.encoded() == (reference(body), len(items))


# -- through the command, against the local endpoint ---------------------------


@pytest.fixture(scope="module")
def mixed_endpoint() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(tables=[Table("mixed", 700, item_shape="mixed")]) as ep:
        yield ep


def botocore_lines(url: str, table: str) -> list[bytes]:
    """Every item of ``table`` as botocore parses it, written by the converter."""
    client = boto3.client(
        "dynamodb", region_name="us-east-1", endpoint_url=url,
        aws_access_key_id="a", aws_secret_access_key="b",
    )  # fmt: skip
    out = []
    for page in client.get_paginator("scan").paginate(TableName=table):
        out += [plain_to_json_line(dynamodb_to_json_ready(i)) for i in page["Items"]]
    return out


def test_the_endpoints_pages_take_the_text_path(mixed_endpoint: LocalEndpoint) -> None:
    request = urllib.request.Request(
        mixed_endpoint.url,
        data=json.dumps({"TableName": "mixed", "Limit": 300}).encode(),
        headers={
            "X-Amz-Target": "DynamoDB_20120810.Scan",
            "Content-Type": "application/x-amz-json-1.0",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
    fast, lines = lines_of(body)
    assert len(lines) == 300
    assert fast == reference(body)


def test_export_writes_botocores_items(mixed_endpoint: LocalEndpoint, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    common = ("dynamodb", "mixed", "--endpoint-url", mixed_endpoint.url, "--region", "us-east-1")
    run(*common, "-o", str(out), "--segments", "3", "--page-size", "64")
    written = out.read_bytes().splitlines(keepends=True)
    assert sorted(written) == sorted(botocore_lines(mixed_endpoint.url, "mixed"))
    assert len(written) == 700
    # --max-items stops inside a page: those lines are the converter's too.
    few = tmp_path / "few.jsonl"
    run(*common, "-o", str(few), "--segments", "1", "--page-size", "64", "--max-items", "100")
    assert few.read_bytes().splitlines(keepends=True) == sorted(written, key=_pk)[:100]
    assert [r["pk"] for r in read_records(few)] == sorted(r["pk"] for r in read_records(few))


def _pk(line: bytes) -> str:
    return str(json.loads(line)["pk"])
