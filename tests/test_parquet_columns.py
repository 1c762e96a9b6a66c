"""Rows into Parquet columns: plain records, and DynamoDB items from their
typed values.

What must hold: a column of plain values is what converting each value
gives, whatever its type; a :class:`TypedItems` page written to a ``ParquetSink`` gives
the file its plain records (``dynamodb_to_plain``) give, schema, metadata and
values alike, whatever the mix of types under one attribute name, the row
groups, the fixed columns and the extra column; a malformed item is refused
in one line; and the command's Parquet export of a DynamoDB table is the file
the plain records of botocore's own scan make.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import enum
import io
import random
import tempfile
from collections.abc import Iterator, Sequence
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import Any

import anyio
import boto3
import botocore.handlers
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asyncpager import convert
from asyncpager.convert import (
    TypedItems,
    dynamodb_to_plain,
    dynamodb_value_to_plain,
    dynamodb_values_to_json,
    plain_to_json,
    plain_to_json_line,
)
from asyncpager.errors import ConfigurationError
from asyncpager.export import _prepare
from asyncpager.item_lines import ObjectColumns
from asyncpager.streams import Stream
from asyncpager.testing import Bucket, LocalEndpoint, Table
from tests.test_cli import run
from tests.test_convert import attribute_values, odd_numbers, scalar_values
from tests.test_object_lines import CHECKSUMS, TAKEN, finished_lines, generated_page
from tests.test_parsers import both_ways, response_dict
from tests.test_xml_run import _HEADERS, _KEY_CHARS

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from asyncpager.sinks import CsvSink, ParquetSink  # noqa: E402
from asyncpager.sinks.parquet import _KINDS, _MISFIT, _convert, _plain_column  # noqa: E402

# Few names, so that one name holds values of several types across items
# (a column typed by its first value, the others misfits).
NAMES = ["pk", "a", "b", "_extra"]
values = st.one_of(
    attribute_values,
    scalar_values,
    st.builds(lambda n: {"N": n}, odd_numbers),
    st.just({"NULL": True}),
    # The export's raw parse: blobs as the base64 text sent.
    st.builds(lambda b: {"B": base64.b64encode(b).decode()}, st.binary(max_size=6)),
    st.builds(
        lambda bs: {"BS": [base64.b64encode(b).decode() for b in bs]},
        st.sets(st.binary(max_size=4), min_size=1, max_size=3),
    ),
)
FIXTURE = [HealthCheck.function_scoped_fixture]
typed_items = st.lists(st.dictionaries(st.sampled_from(NAMES), values, max_size=4), max_size=12)


def write(path: Path, batches: Sequence[Any], **options: Any) -> Any:
    """The table a sink writes from ``batches``, committing after each."""
    sink = ParquetSink(str(path), **options)
    sink.open(None)
    for batch in batches:
        sink.write(batch)
        sink.commit()
    sink.close()
    return pq.read_table(path)


def cut(items: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def both(tmp_path: Path, items: list[dict[str, Any]], size: int, **options: Any) -> tuple[Any, Any]:
    """(typed, plain): the tables written both ways, or the errors raised."""
    out = []
    for way in ("typed", "plain"):
        batches = [
            TypedItems(b) if way == "typed" else [dynamodb_to_plain(i) for i in b]
            for b in cut(items, size)
        ]
        try:
            out.append(write(tmp_path / f"{way}.parquet", batches, **options))
        except ConfigurationError as exc:
            out.append(type(exc))
    return out[0], out[1]


def same(typed: Any, plain: Any) -> None:
    if isinstance(plain, type):
        assert typed is plain
        return
    assert typed.schema.equals(plain.schema, check_metadata=True)
    assert typed.to_pylist() == plain.to_pylist()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(typed_items, st.integers(1, 5), st.integers(1, 4))
@example([{"a": {"N": "1"}}, {"a": {"S": "x"}}, {"a": {"NULL": True}}, {"a": {"B": b"\x00"}}], 1, 2)
@example([{"a": {"S": "x"}}, {"a": {"B": b"\xff"}}, {"a": {"N": "007"}}], 2, 1)
@example([{"a": {"BOOL": True}}, {"a": {"N": "1"}}, {"b": {"M": {"x": {"N": "1E+2"}}}}], 1, 1)
@example([{"a": {"N": "1E+2"}}, {"a": {"N": "-0.000"}}, {"a": {"N": "+5"}}], 3, 2)
def test_typed_items_write_what_their_plain_records_write(
    tmp_path: Path, items: list[dict[str, Any]], size: int, row_group: int
) -> None:
    typed, plain = both(tmp_path, items, size, row_group_size=row_group)
    same(typed, plain)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(typed_items, st.integers(1, 5))
@example([{"a": {"N": "1"}}, {"a": {"S": "x"}}], 1)
def test_fixed_columns_and_no_extra_column_agree_too(
    tmp_path: Path, items: list[dict[str, Any]], size: int
) -> None:
    same(*both(tmp_path, items, size, columns=["a", "pk"]))
    # Without an extra column a misfit is refused, by both, in one line.
    same(*both(tmp_path, items, size, extra_column=None))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), values), max_size=8), st.booleans())
@example([{"N": "1E+2"}, {"NS": ["007", "1"]}, {"B": b"\x01"}, {"BS": [b"b", b"a"]}, None], True)
@example([{"NULL": True}, None, {"S": "x"}], False)
def test_a_column_of_json_is_the_plain_values_json(column: list[Any], stdlib: bool) -> None:
    if stdlib:
        # Without orjson: the standard library's encoder, no fragments.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(convert, "_Fragment", None)
            patch.setattr(convert, "plain_to_json", convert._stdlib_dumps)
            got = dynamodb_values_to_json(column)
    else:
        got = dynamodb_values_to_json(column)
    expected = [
        None
        if v is None or dynamodb_value_to_plain(v) is None
        else plain_to_json(dynamodb_value_to_plain(v)).decode()
        for v in column
    ]
    assert got == expected


class Label(str):
    """A str subclass: taken as its plain text."""


class Color(enum.Enum):
    RED = "red"


UTC = dt.UTC
plain_values = st.one_of(
    st.none(),
    st.text(max_size=5),
    st.builds(Label, st.text(max_size=5)),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.floats(allow_nan=True),
    st.decimals(allow_nan=True, places=3),
    st.binary(max_size=4),
    st.builds(bytearray, st.binary(max_size=4)),
    st.datetimes(),
    st.datetimes(timezones=st.just(UTC)),
    st.dates(),
    st.just(Color.RED),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([k for k in _KINDS if k != "null"]), st.lists(plain_values, max_size=8))
@example("int64", [2**63, -(2**63), True, 1.0])
@example("timestamp_utc", [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, tzinfo=UTC)])
@example("string", [Label("x"), Color.RED, 5])
def test_a_plain_column_is_each_value_converted(kind: str, column: list[Any]) -> None:
    expected, misfits = [], []
    for i, value in enumerate(column):
        out = None if value is None else _convert(kind, value)
        if out is _MISFIT:
            misfits.append(i)
            out = None
        expected.append(out)
    # Appended after what the column already holds.
    got: list[Any] = ["earlier"]
    assert _plain_column(kind, column, got) == misfits
    assert got[1:] == expected
    assert [type(v) for v in got[1:]] == [type(v) for v in expected]


@pytest.mark.parametrize(
    "item",
    [
        {"a": {"X": "1"}},
        {"a": {"S": "x", "N": "1"}},
        {"a": {"N": "twelve"}},
        {"a": {"M": {"b": {"L": [{"Q": 1}]}}}},
        {"a": "not an attribute value"},
    ],
)
def test_a_malformed_item_is_refused_in_one_line(tmp_path: Path, item: dict[str, Any]) -> None:
    sink = ParquetSink(str(tmp_path / "out.parquet"))
    sink.open(None)
    sink.write(TypedItems([{"a": {"S": "fine"}}]))
    sink.commit()
    with pytest.raises(ConfigurationError, match="not a DynamoDB item") as caught:
        sink.write(TypedItems([{"a": {"S": "fine"}}, item]))
    assert "\n" not in str(caught.value)
    # What was committed before stays: the sink must be aborted, not closed.
    sink.abort()
    assert not (tmp_path / "out.parquet").exists()


def test_typed_items_read_as_their_plain_records() -> None:
    typed = [{"pk": {"S": "a"}, "n": {"N": "1.50"}}, {"pk": {"S": "b"}, "b": {"B": b"\x00"}}]
    items = TypedItems(typed)
    assert len(items) == 2
    assert items[0] == {"pk": "a", "n": Decimal("1.50")}
    assert list(items) == [dynamodb_to_plain(i) for i in typed]
    assert items.head(1).typed == typed[:1]
    assert items.head(5) is items


def test_the_export_hands_typed_pages_on_and_cuts_them_at_the_limit() -> None:
    page = {"Items": [{"pk": {"S": str(i)}} for i in range(5)]}
    stream = Stream("dynamodb", "Scan", {"TableName": "t"}, region="us-east-1")

    def records(_stream: Stream, got: dict[str, Any]) -> TypedItems:
        return TypedItems(got["Items"])

    batch, count = _prepare(records, stream, page, 3, None)
    assert isinstance(batch, TypedItems)
    assert count == 3
    assert batch.typed == page["Items"][:3]

    # An encoder that knows nothing of them reads plain records.
    def lines(batch: Sequence[Any]) -> bytes:
        return b"".join(plain_to_json_line(record) for record in batch)

    data, count = _prepare(records, stream, page, None, lines)
    assert count == 5
    assert data == b"".join(plain_to_json_line({"pk": str(i)}) for i in range(5))


@pytest.fixture(scope="module")
def mixed_endpoint() -> Iterator[LocalEndpoint]:
    with LocalEndpoint(tables=[Table("mixed", 600, item_shape="mixed")]) as ep:
        yield ep


def botocore_items(url: str) -> list[dict[str, Any]]:
    """The plain records of boto3's own scan of the mixed table, by key."""
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="a",
        aws_secret_access_key="b",
    )
    items = [
        dynamodb_to_plain(item)
        for page in client.get_paginator("scan").paginate(TableName="mixed")
        for item in page["Items"]
    ]
    items.sort(key=lambda r: r["pk"])
    return items


def botocore_table(url: str, path: Path) -> Any:
    """The Parquet file the plain records of boto3's own scan make."""
    return write(path, [botocore_items(url)])


def test_the_commands_parquet_export_is_botocores_items(
    mixed_endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    common = ("dynamodb", "mixed", "--endpoint-url", mixed_endpoint.url, "--region", "us-east-1")
    out = tmp_path / "out.parquet"
    run(*common, "-o", str(out), "--segments", "3", "--page-size", "64", "--workers", "1")
    written = pq.read_table(out)
    expected = botocore_table(mixed_endpoint.url, tmp_path / "expected.parquet")
    assert written.schema.equals(expected.schema, check_metadata=True)
    rows = sorted(written.to_pylist(), key=lambda r: r["pk"])
    assert rows == expected.to_pylist()
    assert len(rows) == 600
    # Blobs as base64 text, numbers as their digits, nested values as JSON.
    kinds = {f.name: f.metadata[b"asyncpager.kind"].decode() for f in written.schema}
    assert kinds["blob"] == "string"
    assert kinds["score"] == "decimal"
    assert kinds["profile"] == "json"
    # --max-items stops inside a page: the same rows as the first of a full export.
    few = tmp_path / "few.parquet"
    run(*common, "-o", str(few), "--segments", "1", "--page-size", "64", "--max-items", "100")
    got = pq.read_table(few).to_pylist()
    assert got == sorted(got, key=lambda r: r["pk"])
    assert got == expected.to_pylist()[:100]


def test_a_cluster_export_to_parquet_is_botocores_items(
    mixed_endpoint: LocalEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asyncpager.cluster import LocalBackend, export_on_cluster
    from asyncpager.plan.dynamodb import plan_scan

    typed = []
    take_typed = ParquetSink._take_typed

    def counted(self: ParquetSink, items: Sequence[Any]) -> None:
        typed.append(len(items))
        take_typed(self, items)

    monkeypatch.setattr(ParquetSink, "_take_typed", counted)

    async def main() -> Any:
        plan = await plan_scan(
            "mixed", region="us-east-1", endpoint_url=mixed_endpoint.url, segments=4
        )
        async with LocalBackend(slots=2) as backend:
            return await export_on_cluster(
                plan.streams, tmp_path / "out.parquet", backend=backend, tasks=2
            )

    result = anyio.run(main)
    assert result.complete
    written = pq.read_table(tmp_path / "out.parquet")
    expected = botocore_table(mixed_endpoint.url, tmp_path / "expected.parquet")
    assert written.schema.equals(expected.schema, check_metadata=True)
    assert sorted(written.to_pylist(), key=lambda r: r["pk"]) == expected.to_pylist()
    # Every item went to the sink as sent, not as plain records.
    assert sum(typed) == 600


# -- CSV: cells from typed values -----------------------------------------------


def csv_both(items: list[dict[str, Any]], size: int, **options: Any) -> tuple[Any, Any]:
    """(typed, plain): the bytes two CSV sinks encode of ``items`` in
    batches of ``size``, or the type of the error raised."""
    out: list[Any] = []
    for way in ("typed", "plain"):
        sink = CsvSink(None, stream=io.BytesIO(), **options)
        try:
            out.append(
                b"".join(
                    sink.encode(
                        TypedItems(b) if way == "typed" else [dynamodb_to_plain(i) for i in b]
                    )
                    for b in cut(items, size)
                )
            )
        except (ConfigurationError, TypeError) as exc:
            out.append(type(exc))
    return out[0], out[1]


@settings(max_examples=200, deadline=None)
@given(typed_items, st.integers(1, 5), st.booleans())
@example([{"a": {"S": "=1+1"}}, {"a": {"B": b"\xfb\xff"}}, {"a": {"N": "-5"}}], 1, False)
@example([{"a": {"N": "1E+2"}}, {"b": {"NS": ["007", "1"]}}, {"pk": {"NULL": True}}], 2, True)
def test_typed_items_make_the_csv_their_plain_records_make(
    items: list[dict[str, Any]], size: int, raw_formulas: bool
) -> None:
    typed, plain = csv_both(items, size, raw_formulas=raw_formulas)
    assert typed == plain
    typed, plain = csv_both(items, size, columns=["a", "pk"])
    assert typed == plain
    typed, plain = csv_both(items, size, columns=["b"], extra_column=None)
    assert typed == plain


def test_a_malformed_item_is_refused_by_the_csv_encoder_in_one_line() -> None:
    sink = CsvSink(None, stream=io.BytesIO())
    with pytest.raises(ConfigurationError, match="not a DynamoDB item") as caught:
        sink.encode(TypedItems([{"a": {"S": "fine"}}, {"a": {"S": "x", "N": "1"}}]))
    assert "\n" not in str(caught.value)


def test_the_commands_csv_export_is_botocores_items(
    mixed_endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    out = tmp_path / "out.csv"
    run(
        "dynamodb", "mixed", "--endpoint-url", mixed_endpoint.url, "--region", "us-east-1",
        "-o", str(out), "--segments", "3", "--page-size", "64", "--workers", "1",
    )  # fmt: skip
    items = botocore_items(mixed_endpoint.url)
    reference = CsvSink(None, stream=io.BytesIO()).encode(items).split(b"\r\n")
    written = out.read_bytes().split(b"\r\n")
    assert written[0] == reference[0]  # the header
    assert sorted(written[1:]) == sorted(reference[1:])
    assert len(written) == 600 + 2  # the header, the rows, and after the last CRLF


# -- S3: objects read from their lines -----------------------------------------


def botocore_objects(body: bytes, decode: bool = True) -> list[dict[str, Any]]:
    """The objects of botocore's parse of a ListObjectsV2 body, keys
    URL-decoded as its handler does."""
    _, theirs = both_ways("s3", "ListObjectsV2", response_dict("ListObjectsV2", body, _HEADERS))
    assert not isinstance(theirs, Exception), theirs
    botocore.handlers.decode_list_object_v2(theirs, {"encoding_type_auto_set": decode})
    return list(theirs.get("Contents", []))


def object_columns(body: bytes, decode: bool = True) -> ObjectColumns | None:
    made = finished_lines(body, decode)
    return None if made is None else ObjectColumns(made)


@pytest.mark.parametrize("name", list(TAKEN))
def test_objects_read_from_their_lines_write_what_botocores_objects_write(
    tmp_path: Path, name: str
) -> None:
    body = TAKEN[name]
    columns = object_columns(body)
    assert columns is not None
    expected = botocore_objects(body)
    assert columns.records() == expected
    # Alone, after botocore's objects and before them, in row groups of two.
    for batches in ([columns], [expected, columns], [columns, expected, columns]):
        plain = [expected if b is columns else b for b in batches]
        got = write(tmp_path / "lines.parquet", batches, row_group_size=2)
        want = write(tmp_path / "plain.parquet", plain, row_group_size=2)
        same(got, want)


@given(
    st.lists(
        st.tuples(_KEY_CHARS, st.sampled_from(["000", "007", "123", "999"])),
        min_size=1,
        max_size=12,
    ),
    st.booleans(),
    st.randoms(use_true_random=False),
    st.integers(1, 5),
    st.sampled_from(["none", "all", "some"]),
)
@settings(max_examples=150, deadline=None, database=None, suppress_health_check=FIXTURE)
def test_generated_pages_read_from_lines_write_what_botocores_objects_write(
    tmp_path: Path,
    objects: list[tuple[str, str]],
    url_encoded: bool,
    rng: random.Random,
    limit: int,
    checksums: str,
) -> None:
    # Checksums as S3 lists them on every object written since it adds one,
    # on some objects only, or (lower case, a type with a dash) as it does not.
    sums: list[tuple[str, str] | None] | None = None
    if checksums == "all":
        sums = [rng.choice(CHECKSUMS[1:]) for _ in objects]
    elif checksums == "some":
        sums = [rng.choice(CHECKSUMS) for _ in objects]
    body = generated_page(objects, url_encoded, rng, sums)
    columns = object_columns(body)
    if columns is None:
        return  # a character reference: the plain path writes botocore's objects
    expected = botocore_objects(body)
    got = write(tmp_path / "lines.parquet", [columns, columns.head(limit)])
    want = write(tmp_path / "plain.parquet", [expected, expected[:limit]])
    same(got, want)


def test_fixed_columns_and_an_extra_column_named_as_a_member_take_the_records() -> None:
    body = TAKEN["plain"]
    columns = object_columns(body)
    assert columns is not None
    expected = botocore_objects(body)
    with tempfile.TemporaryDirectory() as folder:
        for options in ({"columns": ["Key", "Size"]}, {"extra_column": "Size"}):
            got = write(Path(folder) / "a.parquet", [columns], **options)
            want = write(Path(folder) / "b.parquet", [expected], **options)
            same(got, want)


def test_the_commands_parquet_export_of_s3_is_boto3s_listing(tmp_path: Path) -> None:
    buckets = [Bucket("uni", 3_000, "unicode"), Bucket("deep", 2_500, "deep")]
    with LocalEndpoint(buckets=buckets) as ep:
        client = boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=ep.url,
            aws_access_key_id="a",
            aws_secret_access_key="b",
        )
        for bucket in ("uni", "deep"):
            out = tmp_path / f"{bucket}.parquet"
            run(
                "s3", f"s3://{bucket}", "--endpoint-url", ep.url, "--region", "us-east-1",
                "-o", str(out), "--shards", "4", "--workers", "1",
            )  # fmt: skip
            listing = [
                obj
                for p in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                for obj in p.get("Contents", [])
            ]
            want = write(tmp_path / f"{bucket}-want.parquet", [listing])
            got = pq.read_table(out)
            assert got.schema.equals(want.schema, check_metadata=True)
            assert sorted(got.to_pylist(), key=lambda r: r["Key"]) == want.to_pylist()
        # Several buckets: the objects carry their bucket's name.
        both = tmp_path / "both.parquet"
        run(
            "s3", "s3://uni", "s3://deep", "--endpoint-url", ep.url, "--region", "us-east-1",
            "-o", str(both), "--workers", "1",
        )  # fmt: skip
        rows = pq.read_table(both).to_pylist()
        assert len(rows) == 5_500
        assert {r["_bucket"] for r in rows} == {"uni", "deep"}
        assert all(r["LastModified"].tzinfo is not None for r in rows)


def test_pages_of_the_usual_shape_are_read_by_pyarrow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[int] = []
    take = ParquetSink._take

    def counted(self: ParquetSink, rows: Sequence[Any]) -> None:
        taken.append(len(rows))
        take(self, rows)

    monkeypatch.setattr(ParquetSink, "_take", counted)
    columns = object_columns(TAKEN["URL-encoded keys to decode"])
    assert columns is not None
    write(tmp_path / "a.parquet", [columns])
    assert taken == []
    # Objects with their checksum algorithm (a list, written as its JSON
    # text) are read by pyarrow too.
    columns = object_columns(TAKEN["every object with its checksum"])
    assert columns is not None
    write(tmp_path / "b.parquet", [columns])
    assert taken == []
    # And where only some objects have one (the first one not).
    columns = object_columns(TAKEN["one checksum and its type"])
    assert columns is not None
    write(tmp_path / "c.parquet", [columns])
    assert taken == []
    # A list pyarrow would read, but not as the records write it: records.
    odd = TAKEN["every object with its checksum"].replace(b">CRC32C<", b">crc32c<")
    columns = object_columns(odd)
    assert columns is not None
    write(tmp_path / "d.parquet", [columns])
    assert taken == [2]


def rows_one_by_one(sink: CsvSink, records: list[dict[str, Any]]) -> bytes:
    """The CSV the encoder wrote before it went column by column: each cell
    by ``_cell``, row after row (for the header and columns, the sink's)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    columns, extra = sink._header(records)
    writer.writerow([sink._text(n) for n in columns + ([extra] if extra is not None else [])])
    for record in records:
        row = [sink._cell(record[c]) if c in record else "" for c in columns]
        if extra is not None:
            others = {k: v for k, v in record.items() if k not in columns}
            row.append(plain_to_json(others).decode("utf-8") if others else "")
        writer.writerow(row)
    return buffer.getvalue().encode("utf-8", "backslashreplace")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.sampled_from(["Key", "n", "=x", "_extra"]), plain_values, max_size=4),
        min_size=1,
        max_size=8,
    ),
    st.booleans(),
)
@example([{"Key": "=1+1", "n": 5}, {"Key": "-3", "n": True}, {"n": None}], False)
@example([{"Key": "+x", "n": dt.datetime(2024, 1, 1, tzinfo=UTC)}, {"=x": -7}], True)
def test_plain_records_make_the_csv_their_cells_make_one_by_one(
    records: list[dict[str, Any]], raw_formulas: bool
) -> None:
    def encoded(sink: CsvSink, how: Any) -> Any:
        try:
            return how(sink, records)
        except TypeError as exc:
            return type(exc)

    ours = encoded(CsvSink(None, stream=io.BytesIO(), raw_formulas=raw_formulas), CsvSink.encode)
    theirs = encoded(CsvSink(None, stream=io.BytesIO(), raw_formulas=raw_formulas), rows_one_by_one)
    assert ours == theirs


@pytest.mark.parametrize("share", [1.0, 0.5])
def test_the_commands_exports_of_objects_with_checksums_are_boto3s_listing(
    tmp_path: Path, share: float
) -> None:
    # S3 lists a checksum on every object written since it adds one itself:
    # on all of a new bucket's, on some of an older one's. Each format takes
    # its fast path from those lines, and writes the file boto3's listing
    # makes. Where objects with and without one mix, the columns' order is
    # the first page's: compared as sets.
    with LocalEndpoint(buckets=[Bucket("sums", 2_500, "deep", 3, checksums=share)]) as ep:
        for fmt in ("jsonl", "csv", "parquet"):
            run(
                "s3", "s3://sums", "--endpoint-url", ep.url, "--region", "us-east-1",
                "-o", str(tmp_path / f"out.{fmt}"), "--shards", "4", "--workers", "1",
            )  # fmt: skip
        client = boto3.client(
            "s3", region_name="us-east-1", endpoint_url=ep.url,
            aws_access_key_id="a", aws_secret_access_key="b",
        )  # fmt: skip
        listing = [
            obj
            for p in client.get_paginator("list_objects_v2").paginate(Bucket="sums")
            for obj in p.get("Contents", [])
        ]
    assert len(listing) == 2_500
    assert sum("ChecksumAlgorithm" in o for o in listing) >= 1_000
    lines = (tmp_path / "out.jsonl").read_bytes().splitlines(keepends=True)
    assert sorted(lines) == sorted(plain_to_json_line(o) for o in listing)

    reference = CsvSink(str(tmp_path / "ref.csv")).encode(listing).decode("utf-8")
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as written:
        got = list(csv.reader(written))
    want = list(csv.reader(io.StringIO(reference, newline="")))
    assert len(got) == len(want) == 2_501
    if share == 1.0:
        assert got[0] == want[0]
    assert sorted(got[0]) == sorted(want[0])
    by_name = sorted(tuple(sorted(zip(got[0], row, strict=True))) for row in got[1:])
    assert by_name == sorted(tuple(sorted(zip(want[0], row, strict=True))) for row in want[1:])

    table = pq.read_table(tmp_path / "out.parquet")
    expected = write(tmp_path / "want.parquet", [listing])
    if share == 1.0:
        assert table.schema.equals(expected.schema, check_metadata=True)
    assert sorted(table.schema, key=lambda f: f.name) == sorted(
        expected.schema, key=lambda f: f.name
    )
    key = itemgetter("Key")
    assert sorted(table.to_pylist(), key=key) == sorted(expected.to_pylist(), key=key)
