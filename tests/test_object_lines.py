"""S3 listings made into JSON Lines from the XML that came (asyncpager.item_lines).

What must hold: whenever the text path takes a page, its lines are the bytes
the export wrote before (botocore's page, keys URL-decoded as botocore's
handler does, written by ``plain_to_json_line``); it takes the pages S3
sends unasked; it declines every other shape; and the command's output
through it is the listing boto3 gives.
"""

from __future__ import annotations

import json
import random
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus
from xml.sax.saxutils import escape

import boto3
import botocore.handlers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncpager.convert import plain_to_json_line
from asyncpager.item_lines import (
    HELD_LINES,
    OBJECT_CHECKSUM_COLUMNS,
    OBJECT_ROW_COLUMNS,
    ItemLines,
    LabelledLines,
    ObjectLines,
    ObjectRows,
    object_lines,
)
from asyncpager.parsers._compiler import _xml_root
from asyncpager.parsers._install import _handle_200_error_lines
from asyncpager.parsers._xmlrun import split_lines
from asyncpager.testing import Bucket, LocalEndpoint
from tests.test_cli import run
from tests.test_parsers import both_ways, response_dict
from tests.test_xml_run import _HEAD, _HEADERS, _KEY_CHARS, _SPEC, _TAIL, _xml_text

# The reference lines keep the exact bytes only with orjson's encoder.
pytest.importorskip("orjson")

URL_HEAD = _HEAD.replace("<IsTruncated>", "<EncodingType>url</EncodingType><IsTruncated>")


def element(key: str, when: str = "2024-05-01T10:20:30.123Z", extra: str = "") -> str:
    return (
        f"<Contents><Key>{key}</Key><LastModified>{when}</LastModified>"
        f"<ETag>&quot;0123456789abcdef&quot;</ETag>{extra}<Size>12</Size>"
        "<StorageClass>STANDARD</StorageClass></Contents>"
    )


CHECKSUM_COLUMNS = ("ChecksumAlgorithm", "ChecksumType")
#: An object's checksum members, as S3 lists them (None: it has none). The
#: last two are of no shape the rows are made from: the page is records.
CHECKSUMS = [
    None,
    ("CRC64NVME", "FULL_OBJECT"),
    ("CRC32C", "COMPOSITE"),
    ("SHA1", "FULL_OBJECT"),
    ("crc32", "FULL_OBJECT"),
    ("CRC32", "full-object"),
]


def checksum_element(algorithm: str, kind: str) -> str:
    return f"<ChecksumAlgorithm>{algorithm}</ChecksumAlgorithm><ChecksumType>{kind}</ChecksumType>"


def page(*elements: str, head: str = _HEAD) -> bytes:
    return (head + "".join(elements) + _TAIL).encode()


def generated_page(
    objects: list[tuple[str, str]],
    url_encoded: bool,
    rng: random.Random,
    checksums: list[tuple[str, str] | None] | None = None,
) -> bytes:
    """A page of ``(key, milliseconds)`` objects, its keys URL-encoded or
    written as XML text with references drawn by ``rng``, each with its
    ``checksums`` entry (algorithm and type) if any."""
    elements = []
    sums = checksums or [None] * len(objects)
    for (key, millis), checksum in zip(objects, sums, strict=True):
        text = quote_plus(key, safe="/") if url_encoded else _xml_text(key, rng)
        extra = checksum_element(*checksum) if checksum else ""
        elements.append(element(text, f"2023-11-30T23:59:59.{millis}Z", extra))
    return page(*elements, head=URL_HEAD if url_encoded else _HEAD)


def reference(body: bytes, decode: bool = True) -> list[bytes]:
    """The lines written before: botocore's page, its keys URL-decoded as
    botocore's after-call handler does (when it set the encoding itself)."""
    _, theirs = both_ways("s3", "ListObjectsV2", response_dict("ListObjectsV2", body, _HEADERS))
    assert not isinstance(theirs, Exception), theirs
    botocore.handlers.decode_list_object_v2(theirs, {"encoding_type_auto_set": decode})
    return [plain_to_json_line(item) for item in theirs.get("Contents", [])]


def finished_lines(body: bytes, decode: bool = True) -> ObjectLines | None:
    """The text path's lines of a page, with botocore's decision on decoding
    keys (``decode``: it set the page's encoding itself)."""
    assert _SPEC is not None
    encoded = b"<EncodingType>url</EncodingType>" in body
    made = split_lines(body, _SPEC, _xml_root, partial(object_lines, url_encoded=encoded))
    if made is None:
        return None
    made[1].finish(decode)
    return made[1]


def lines_of(body: bytes, decode: bool = True) -> tuple[bytes, int] | None:
    """The text path's lines and their count (see :func:`finished_lines`)."""
    made = finished_lines(body, decode)
    return None if made is None else made.encoded()


TAKEN = {
    "plain": page(element("a"), element("b/c.txt"), element("d")),
    "entities": page(element("a&amp;b &lt;c&gt; &apos;q&apos; &quot;x&quot; &amp;lt;")),
    "quotes, backslashes, tabs and newlines": page(element('a"b\\c\td\ne')),
    "unicode": page(element("ünïcödé/ключ/鍵/😀")),
    "an empty key": page(element("")),
    "a zero fraction": page(element("a", "2024-05-01T10:20:30.000Z")),
    "one checksum and its type": page(
        element("a"),
        element(
            "b",
            extra="<ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm>"
            "<ChecksumType>FULL_OBJECT</ChecksumType>",
        ),
    ),
    "every object with its checksum": page(
        element(
            "a",
            extra="<ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm>"
            "<ChecksumType>FULL_OBJECT</ChecksumType>",
        ),
        element(
            "b",
            extra="<ChecksumAlgorithm>CRC32C</ChecksumAlgorithm>"
            "<ChecksumType>COMPOSITE</ChecksumType>",
        ),
    ),
    "a multipart upload's ETag, and an empty one": page(
        element("a").replace("0123456789abcdef", "d41d8cd98f00b204e9800998ecf8427e-12"),
        element("b").replace("0123456789abcdef", ""),
    ),
    "URL-encoded without anything to decode": page(element("a/b.txt"), head=URL_HEAD),
    "percent signs when not URL-encoded": page(element("100%+1")),
    "URL-encoded keys to decode": page(
        element(quote_plus('a b/ü &<>"\\')), element("plain"), head=URL_HEAD
    ),
}
DECLINED = {
    "URL-encoded keys beside a reference": page(
        element(quote_plus("a b")), element("x&amp;y"), head=URL_HEAD
    ),
    "a character reference": page(element("a&#233;b")),
    "two checksum algorithms": page(
        element(
            "a",
            extra="<ChecksumAlgorithm>CRC32</ChecksumAlgorithm>"
            "<ChecksumAlgorithm>SHA256</ChecksumAlgorithm><ChecksumType>FULL_OBJECT</ChecksumType>",
        )
    ),
    "an owner": page(element("a").replace("</Contents>", "<Owner><ID>x</ID></Owner></Contents>")),
    "no fraction in a timestamp": page(element("a", "2024-05-01T10:20:30Z")),
    "six digits of fraction": page(element("a", "2024-05-01T10:20:30.000100Z")),
    "a thirteenth month": page(element("a", "2024-13-01T10:20:30.123Z")),
    "a size with a leading zero": page(element("a").replace("<Size>12", "<Size>012")),
    "an ETag without its quotes": page(element("a").replace("&quot;", "")),
    "an ETag with a reference inside its quotes": page(
        element("a").replace("0123456789abcdef", "01&amp;23")
    ),
    "no storage class": page(element("a").replace("<StorageClass>STANDARD</StorageClass>", "")),
    "space between elements": page(element("a"), " ", element("b")),
}


@pytest.mark.parametrize("name", list(TAKEN))
def test_pages_the_text_path_takes(name: str) -> None:
    body = TAKEN[name]
    made = lines_of(body)
    assert made is not None
    expected = reference(body)
    assert made == (b"".join(expected), len(expected))


def parse_in_lines_mode(body: bytes) -> Any:
    """The page a client in raw "lines" mode gets (or the exception)."""
    from asyncpager.parsers._install import FastParserFactory
    from tests.test_parsers import _SESSION

    response = response_dict("ListObjectsV2", body, _HEADERS)
    model = _SESSION.get_service_model("s3")
    operation = model.operation_model("ListObjectsV2")
    factory = FastParserFactory(botocore.parsers.ResponseParserFactory(), model, raw="lines")
    try:
        _handle_200_error_lines(operation, response)
        return factory.create_parser("rest-xml").parse(response, operation.output_shape)
    except Exception as exc:
        return exc


@pytest.mark.parametrize("name", list(DECLINED))
def test_pages_the_text_path_declines(name: str) -> None:
    body = DECLINED[name]
    assert lines_of(body) is None
    # The page is parsed as in raw "json" mode, with the same outcome.
    got = parse_in_lines_mode(body)
    ours, _ = both_ways(
        "s3", "ListObjectsV2", response_dict("ListObjectsV2", body, _HEADERS), raw="json"
    )
    if isinstance(ours, Exception):
        assert type(got) is type(ours)
    else:
        assert HELD_LINES not in got
        assert got["Contents"] == ours["Contents"]


@given(
    st.lists(
        st.tuples(_KEY_CHARS, st.sampled_from(["000", "007", "123", "999", "100", "010"])),
        min_size=1,
        max_size=15,
    ),
    st.booleans(),
    st.randoms(use_true_random=False),
    st.booleans(),
)
@settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
def test_generated_pages_write_what_botocores_page_writes(
    objects: list[tuple[str, str]], url_encoded: bool, rng: random.Random, checksums: bool
) -> None:
    sums = [rng.choice(CHECKSUMS) for _ in objects] if checksums else None
    body = generated_page(objects, url_encoded, rng, sums)
    made = lines_of(body)
    expected = reference(body)
    if made is not None:
        assert made == (b"".join(expected), len(expected))
    if b"&#" not in body:
        assert made is not None


@given(
    st.lists(_KEY_CHARS, min_size=1, max_size=8),
    st.dictionaries(
        st.sampled_from(["_bucket", "_region", "Key", "Size"]),
        st.text(max_size=6) | st.integers(),
        min_size=1,
        max_size=3,
    ),
    st.none() | st.integers(min_value=0, max_value=9),
)
@settings(max_examples=200, deadline=None, database=None)
def test_labelled_lines_write_what_labelled_records_write(
    keys: list[str], labels: dict[str, Any], limit: int | None
) -> None:
    # A listing of several buckets adds _bucket to every line: the text way
    # writes what the records, updated with the labels, write; labels that
    # name a field of the object ("Key") replace it in its place, as a
    # dict update does.
    body = page(*(element(escape(key, {'"': "&quot;"})) for key in keys))
    made = lines_of(body)
    assert made is not None
    labelled = LabelledLines(ObjectLines(*made), labels)
    records = [{**json.loads(line), **labels} for line in reference(body)][:limit]
    assert labelled.encoded(limit) == (b"".join(map(plain_to_json_line, records)), len(records))
    assert labelled.records(limit) == records
    assert len(labelled) == len(keys)
    assert labelled[0] == {**json.loads(reference(body)[0]), **labels}


def test_labelled_lines_of_items_and_of_empty_objects() -> None:
    # DynamoDB's text path; an empty item has no comma to put the label after.
    items = b'{"pk":{"S":"a"},"n":{"N":"5"}},{}'
    labelled = LabelledLines(ItemLines(items, 0, len(items), 2), {"_table": "t"})
    assert labelled.encoded() == (b'{"pk":"a","n":5,"_table":"t"}\n{"_table":"t"}\n', 2)
    assert labelled.encoded(1) == (b'{"pk":"a","n":5,"_table":"t"}\n', 1)
    assert list(labelled) == [{"pk": "a", "n": 5, "_table": "t"}, {"_table": "t"}]
    no_labels = LabelledLines(ItemLines(items, 0, len(items), 2), {})
    assert no_labels.encoded() == (b'{"pk":"a","n":5}\n{}\n', 2)


def test_keys_a_caller_asked_to_encode_stay_encoded() -> None:
    # botocore decodes only the encoding it set itself; so does the text path.
    body = TAKEN["URL-encoded keys to decode"]
    expected = reference(body, decode=False)
    assert lines_of(body, decode=False) == (b"".join(expected), len(expected))
    assert b"%" in b"".join(expected)


def test_unfinished_lines_say_so() -> None:
    assert _SPEC is not None
    body = TAKEN["URL-encoded keys to decode"]
    made = split_lines(body, _SPEC, _xml_root, partial(object_lines, url_encoded=True))
    assert made is not None
    with pytest.raises(RuntimeError, match="never finished"):
        made[1].encoded()


def test_object_lines_read_as_the_raw_json_pages_objects() -> None:
    body = TAKEN["one checksum and its type"]
    made = lines_of(body)
    assert made is not None
    objects = ObjectLines(*made)
    ours, _ = both_ways(
        "s3", "ListObjectsV2", response_dict("ListObjectsV2", body, _HEADERS), raw="json"
    )
    assert len(objects) == 2
    assert objects[-1] == ours["Contents"][-1]
    assert objects.keys() == ["a", "b"]
    assert objects.keys(2) == ["a"]
    assert list(objects) == ours["Contents"]
    assert objects.records(1) == ours["Contents"][:1]
    assert objects.encoded(1) == (plain_to_json_line(ours["Contents"][0]), 1)
    assert objects.encoded(0) == (b"", 0)
    assert objects.encoded() == made


def test_cut_object_lines_stay_lines() -> None:
    # A shard's last page is bisected at its bound and cut there; a resumed
    # page drops what was delivered: both keep the rest as its lines.
    body = page(*(element(f"k{n:02d}", extra="") for n in range(7)))
    made = lines_of(body)
    assert made is not None
    lines = made[0].splitlines(keepends=True)
    for cut in (slice(None, 3), slice(2, None), slice(0, 0), slice(-2, None), slice(None)):
        objects = ObjectLines(*made)
        part = objects[cut]
        assert isinstance(part, ObjectLines)
        assert part.encoded() == (b"".join(lines[cut]), len(lines[cut]))
        assert list(part) == [json.loads(line) for line in lines[cut]]
    objects = ObjectLines(*made)
    assert [objects[n]["Key"] for n in (0, 3, 6, -7)] == ["k00", "k03", "k06", "k00"]
    with pytest.raises(IndexError):
        objects[7]
    # A step reads the objects, as a list would give them.
    assert objects[::3] == [json.loads(lines[n]) for n in (0, 3, 6)]
    # Once read, the objects are what indexing and cutting give.
    assert objects[1:3] == [json.loads(line) for line in lines[1:3]]


@pytest.mark.parametrize("name", ["plain", "URL-encoded keys to decode"])
def test_the_lines_handler_holds_them_past_botocores_handlers(name: str) -> None:
    from asyncpager.parsers._install import _finish_object_lines

    body = TAKEN[name]
    parsed = parse_in_lines_mode(body)
    # What the client emits after the call, with the request's context.
    botocore.handlers.decode_list_object_v2(parsed, {"encoding_type_auto_set": True})
    _finish_object_lines(parsed=parsed, context={"encoding_type_auto_set": True})
    # Empty while botocore's handlers run; the lines wait beside the page.
    assert parsed["Contents"] == []
    member, held = parsed[HELD_LINES]
    assert member == "Contents"
    assert isinstance(held, ObjectLines)
    assert held.encoded()[0] == b"".join(reference(body))


def _s3_client(url: str) -> Any:
    return boto3.client(
        "s3", region_name="us-east-1", endpoint_url=url,
        aws_access_key_id="a", aws_secret_access_key="b",
    )  # fmt: skip


def test_export_writes_boto3s_listing(tmp_path: Path) -> None:
    with LocalEndpoint(buckets=[Bucket("uni", 3_000, "unicode")]) as ep:
        out = tmp_path / "out.jsonl"
        run("s3", "s3://uni", "--endpoint-url", ep.url, "--region", "us-east-1",
            "-o", str(out), "--shards", "4", "--page-size", "400", "--workers", "1")  # fmt: skip
        client = _s3_client(ep.url)
        expected: list[Any] = []
        for listed in client.get_paginator("list_objects_v2").paginate(Bucket="uni"):
            expected += [plain_to_json_line(item) for item in listed.get("Contents", [])]
    written = out.read_bytes().splitlines(keepends=True)
    assert sorted(written) == sorted(expected)
    assert len(written) == 3_000
    assert any(ord(ch) > 127 for line in written for ch in json.loads(line)["Key"])


def _export_two_buckets(out: Path) -> list[dict[str, Any]]:
    """The command's export of two buckets to ``out``, and boto3's listing
    of them, each object labelled with its bucket as the command labels it."""
    buckets = [Bucket("uni", 1_500, "unicode"), Bucket("deep", 1_200, "deep")]
    with LocalEndpoint(buckets=buckets) as ep:
        run("s3", "s3://uni", "s3://deep", "--endpoint-url", ep.url, "--region", "us-east-1",
            "-o", str(out), "--shards", "3", "--page-size", "300", "--workers", "1")  # fmt: skip
        client = _s3_client(ep.url)
        expected: list[dict[str, Any]] = []
        for name in ("uni", "deep"):
            for listed in client.get_paginator("list_objects_v2").paginate(Bucket=name):
                expected += [{**item, "_bucket": name} for item in listed.get("Contents", [])]
    return expected


def test_export_of_several_buckets_labels_boto3s_listing(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    expected = [plain_to_json_line(item) for item in _export_two_buckets(out)]
    written = out.read_bytes().splitlines(keepends=True)
    assert sorted(written) == sorted(expected)
    assert len(written) == 2_700


def _csv_of(records: list[dict[str, Any]], path: Path) -> list[bytes]:
    """The CSV the sink writes of ``records``, as botocore's parse gives
    them (one batch: the header, then a row per record)."""
    from asyncpager.sinks import CsvSink

    sink = CsvSink(str(path))
    return sink.encode(records).splitlines(keepends=True)


def test_export_to_csv_writes_the_csv_of_boto3s_listing(tmp_path: Path) -> None:
    # S3 pages to CSV are parsed as lines, read back with their timestamps
    # as text: the file is the one botocore's datetimes make, cell for cell.
    out = tmp_path / "out.csv"
    reference = _csv_of(_export_two_buckets(out), tmp_path / "ref.csv")
    written = out.read_bytes().splitlines(keepends=True)
    assert written[0] == reference[0]
    assert sorted(written[1:]) == sorted(reference[1:])
    assert len(written) == 2_701
    # The timestamps were datetimes on boto3's side: their text is the same.
    assert any(b"+00:00" in row for row in written[1:])


def test_object_lines_read_as_json_loads_reads_them() -> None:
    from asyncpager.item_lines import _read_lines

    for body in TAKEN.values():
        made = lines_of(body)
        assert made is not None
        lines = made[0]
        assert _read_lines(lines) == [json.loads(line) for line in lines.splitlines()]
    # What orjson refuses (an escaped lone surrogate) is read line by line.
    odd = b'{"Key":"a\\ud800b","Size":1}\n{"Key":"c","Size":2}\n'
    assert _read_lines(odd) == [{"Key": "a\ud800b", "Size": 1}, {"Key": "c", "Size": 2}]
    assert _read_lines(b"") == []
    assert _read_lines(b'{"Key":"z","Size":3}') == [{"Key": "z", "Size": 3}]


_ROW_OPTIONS: list[dict[str, Any]] = [
    {},
    {"raw_formulas": True},
    {"extra_column": None},
    {"columns": ["Key", "LastModified", "ETag", "Size", "StorageClass"]},
    {"columns": ["Key", "LastModified", "ETag", "Size", "StorageClass"], "extra_column": None},
    {"columns": list(OBJECT_CHECKSUM_COLUMNS)},
    {"columns": [*OBJECT_ROW_COLUMNS, "ChecksumAlgorithm", "ChecksumType"]},
    {"columns": ["Key", "Size"]},
]


def _object_rows_of(
    keys: list[str], etag: str, size: str, checksums: list[tuple[str, str] | None] | None = None
) -> ObjectRows | None:
    sums = checksums or [None] * len(keys)
    body = page(
        *(
            element(escape(key), "2024-02-29T01:02:03.450Z", checksum_element(*s) if s else "")
            .replace("0123456789abcdef", escape(etag))
            .replace("<Size>12", f"<Size>{size}")
            for key, s in zip(keys, sums, strict=True)
        )
    )
    made = finished_lines(body)
    return None if made is None else ObjectRows(made)


@given(
    st.lists(
        st.lists(
            st.tuples(
                _KEY_CHARS | st.sampled_from(["=1+1", "a,b", "-x", "@y", "+", "k"]),
                st.sampled_from(CHECKSUMS[:4]) | st.sampled_from(CHECKSUMS),
            ),
            min_size=1,
            max_size=6,
        ),
        min_size=1,
        max_size=3,
    ),
    st.sampled_from(["0123456789abcdef", "abc-12", "", "ABCDEF", "g h"]),
    st.sampled_from(["0", "12", "5497558138880"]),
    st.sampled_from(_ROW_OPTIONS),
)
@settings(max_examples=400, deadline=None, database=None)
def test_object_rows_write_the_csv_their_records_write(
    pages: list[list[tuple[str, tuple[str, str] | None]]],
    etag: str,
    size: str,
    options: dict[str, Any],
) -> None:
    # Batch after batch into one sink, straight from the lines where they
    # take that path, against the same records written as records. Objects
    # with and without a checksum mix on a page and between pages, so the
    # header may come from either.
    from asyncpager.sinks import CsvSink

    fast, slow = CsvSink("fast.csv", **options), CsvSink("slow.csv", **options)
    for objects in pages:
        keys = [key for key, _ in objects]
        rows = _object_rows_of(keys, etag, size, [s for _, s in objects])
        if rows is None:
            continue
        assert fast.encode(rows) == slow.encode(list(rows.records()))
        assert len(rows) == len(keys)


def test_object_rows_take_the_usual_shape_and_leave_the_rest() -> None:
    from asyncpager.item_lines import object_csv_rows

    usual = _object_rows_of(["a/b.txt", "c d", "ünï/x"], "0123456789abcdef", "12")
    assert usual is not None
    assert object_csv_rows(usual.lines, OBJECT_ROW_COLUMNS, True) == (
        b'a/b.txt,2024-02-29T01:02:03.450000+00:00,"""0123456789abcdef""",12,STANDARD,\r\n'
        b'c d,2024-02-29T01:02:03.450000+00:00,"""0123456789abcdef""",12,STANDARD,\r\n'
        + "ünï/x".encode()
        + b',2024-02-29T01:02:03.450000+00:00,"""0123456789abcdef""",12,STANDARD,\r\n'
    )
    assert usual.head(1).records() == usual.records()[:1]
    # A cell the writer would quote or the sink guard: the page is records.
    for key in ("a,b", "=1", 'q"q', "back\\slash"):
        odd = _object_rows_of(["fine", key], "0123456789abcdef", "12")
        assert odd is not None
        assert object_csv_rows(odd.lines, OBJECT_ROW_COLUMNS, True) is None
    # Columns other than those the records of such lines make: records.
    assert object_csv_rows(usual.lines, ["Key", "Size"], True) is None


def test_object_rows_with_checksums_in_each_order_of_columns() -> None:
    from asyncpager.item_lines import object_csv_rows, object_row_columns

    crc = ("CRC64NVME", "FULL_OBJECT")
    mixed = _object_rows_of(["a", "b"], "0123456789abcdef", "12", [crc, None])
    later = _object_rows_of(["a", "b"], "0123456789abcdef", "12", [None, crc])
    assert mixed is not None
    assert later is not None
    # The header's order is the records' first come, first written.
    assert object_row_columns(mixed.lines) == OBJECT_CHECKSUM_COLUMNS
    assert object_row_columns(later.lines) == (*OBJECT_ROW_COLUMNS, *CHECKSUM_COLUMNS)
    when, etag = b"2024-02-29T01:02:03.450000+00:00", b'"""0123456789abcdef"""'
    assert object_csv_rows(mixed.lines, OBJECT_CHECKSUM_COLUMNS, False) == (
        b'a,%s,%s,"[""CRC64NVME""]",FULL_OBJECT,12,STANDARD\r\n' % (when, etag)
        + b"b,%s,%s,,,12,STANDARD\r\n" % (when, etag)
    )
    assert object_csv_rows(later.lines, (*OBJECT_ROW_COLUMNS, *CHECKSUM_COLUMNS), True) == (
        b"a,%s,%s,12,STANDARD,,,\r\n" % (when, etag)
        + b'b,%s,%s,12,STANDARD,"[""CRC64NVME""]",FULL_OBJECT,\r\n' % (when, etag)
    )
    # Columns without the checksum: it goes to the extra column, or nowhere.
    extra = b'"{""ChecksumAlgorithm"":[""CRC64NVME""],""ChecksumType"":""FULL_OBJECT""}"'
    assert object_csv_rows(later.lines, OBJECT_ROW_COLUMNS, True) == (
        b"a,%s,%s,12,STANDARD,\r\n" % (when, etag)
        + b"b,%s,%s,12,STANDARD,%s\r\n" % (when, etag, extra)
    )
    assert object_csv_rows(later.lines, OBJECT_ROW_COLUMNS, False) == (
        b"a,%s,%s,12,STANDARD\r\n" % (when, etag) + b"b,%s,%s,12,STANDARD\r\n" % (when, etag)
    )
