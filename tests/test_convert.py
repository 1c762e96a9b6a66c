"""asyncpager.convert: DynamoDB values to plain ones, and items to JSON text.

What must hold: a number's digits reach the JSON text exactly as DynamoDB
sent them; binary survives base64; sets come out in one order; the orjson
encoder and the pure-Python one write the same bytes for any value; and a
real Scan page from moto converts to what boto3's ``TypeDeserializer`` gives.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from asyncpager import convert
from asyncpager.convert import (
    decimal_text,
    dynamodb_to_plain,
    dynamodb_value_to_plain,
    float_text,
    plain_to_json,
    plain_to_json_line,
    to_jsonable,
)
from asyncpager.errors import ConfigurationError
from tests.conftest import create_table

# ---------------------------------------------------------------------------
# Strategies: DynamoDB attribute values

digits = st.text(alphabet="0123456789", min_size=1, max_size=37)
signs = st.sampled_from(["", "-"])


def _positional(sign: str, whole: int, fraction: str | None) -> str:
    return f"{sign}{whole}" + ("" if fraction is None else f".{fraction}")


#: Numbers the way they are usually written: already valid JSON, so they must
#: appear in the output character for character (trailing zeros included).
positional_numbers = st.builds(_positional, signs, st.integers(0, 10**38 - 1), st.none() | digits)
#: Numbers DynamoDB accepts but JSON spells differently.
exponent_numbers = st.builds(
    lambda sign, lead, fraction, e, power: f"{sign}{lead}{fraction}{e}{power}",
    signs,
    st.integers(1, 9),
    st.sampled_from(["", ".5", ".25", ".0001"]),
    st.sampled_from(["e", "E"]),
    st.integers(-130, 125).map(lambda p: f"{p:+d}" if p % 2 else str(p)),
)
#: More digits than DynamoDB keeps: the conversion still loses none.
huge_numbers = st.builds(
    lambda sign, whole, fraction: f"{sign}{whole}.{fraction}",
    signs,
    st.integers(10**40, 10**80),
    st.text(alphabet="0123456789", min_size=1, max_size=60),
)
numbers = st.one_of(positional_numbers, exponent_numbers)


def _distinct_numbers(texts: list[str]) -> list[str]:
    seen: dict[Decimal, str] = {}
    for text in texts:
        seen.setdefault(Decimal(text), text)
    return list(seen.values())


scalar_values = st.one_of(
    st.builds(lambda s: {"S": s}, st.text(max_size=20)),
    st.builds(lambda n: {"N": n}, numbers),
    st.builds(lambda b: {"B": b}, st.binary(max_size=40)),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.just({"NULL": True}),
    st.builds(lambda s: {"SS": sorted(s)}, st.sets(st.text(max_size=8), min_size=1, max_size=5)),
    st.builds(
        lambda ns: {"NS": _distinct_numbers(ns)},
        st.lists(numbers, min_size=1, max_size=5),
    ),
    st.builds(lambda s: {"BS": list(s)}, st.sets(st.binary(max_size=8), min_size=1, max_size=5)),
)
attribute_values = st.recursive(
    scalar_values,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"L": xs}, st.lists(inner, max_size=4)),
        st.builds(
            lambda m: {"M": m}, st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=4)
        ),
    ),
    max_leaves=12,
)
items = st.dictionaries(st.text(min_size=1, max_size=10), attribute_values, max_size=6)


def expected_plain(av: dict[str, Any]) -> Any:
    """An independent spelling of the conversion, for comparison."""
    ((tag, raw),) = av.items()
    if tag == "N":
        return Decimal(raw)
    if tag == "B":
        return base64.b64encode(raw).decode()
    if tag == "NULL":
        return None
    if tag == "L":
        return [expected_plain(v) for v in raw]
    if tag == "M":
        return {k: expected_plain(v) for k, v in raw.items()}
    if tag == "SS":
        return sorted(raw)
    if tag == "NS":
        return sorted(Decimal(n) for n in raw)
    if tag == "BS":
        return [base64.b64encode(b).decode() for b in sorted(raw)]
    return raw


def loads_exact(data: bytes) -> Any:
    """JSON text back to values, numbers as ``Decimal`` (nothing lost)."""
    return json.loads(data, parse_float=Decimal, parse_int=Decimal)


def numbers_as_decimal(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: numbers_as_decimal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [numbers_as_decimal(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return value


# ---------------------------------------------------------------------------
# DynamoDB -> plain -> JSON


@settings(max_examples=200, deadline=None)
@given(items)
def test_items_convert_and_survive_json(item: dict[str, Any]) -> None:
    plain = dynamodb_to_plain(item)
    assert plain == {k: expected_plain(v) for k, v in item.items()}
    line = plain_to_json_line(plain)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert loads_exact(line) == numbers_as_decimal(plain)
    # Whichever encoder wrote it, the pure-Python one writes the same bytes.
    assert convert._stdlib_dumps_line(plain) == line


@settings(max_examples=300, deadline=None)
@given(st.one_of(positional_numbers, huge_numbers))
@example("12345678901234567890.123456789")
@example("12.50")
@example("-0.000000000000000000000000000000000001")
def test_number_digits_appear_verbatim(text: str) -> None:
    plain = dynamodb_to_plain({"n": {"N": text}})
    assert plain["n"] == Decimal(text)
    assert plain_to_json_line(plain) == b'{"n":' + text.encode() + b"}\n"
    assert convert._stdlib_dumps_line(plain) == b'{"n":' + text.encode() + b"}\n"


@settings(max_examples=200, deadline=None)
@given(exponent_numbers)
@example("1E+2")
@example("1.5E-3")
@example("1e-130")
def test_exponent_numbers_are_written_positional_and_exact(text: str) -> None:
    written = plain_to_json(dynamodb_value_to_plain({"N": text})).decode()
    assert "e" not in written.lower()
    assert Decimal(written) == Decimal(text)
    assert loads_exact(written.encode()) == Decimal(text)


def test_number_normalisation_examples() -> None:
    assert decimal_text(Decimal("1E+2")) == "100"
    assert decimal_text(Decimal("1.5E-3")) == "0.0015"
    assert decimal_text(Decimal("0.00000001")) == "0.00000001"
    assert decimal_text(Decimal("+007.50")) == "7.50"
    assert decimal_text(Decimal("NaN")) == "null"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_binary_roundtrips_through_base64(data: bytes) -> None:
    plain = dynamodb_to_plain({"b": {"B": data}, "bs": {"BS": [data, data + b"\x00"]}})
    decoded = json.loads(plain_to_json_line(plain))
    assert base64.b64decode(decoded["b"], validate=True) == data
    assert [base64.b64decode(x) for x in decoded["bs"]] == [data, data + b"\x00"]


def test_sets_are_sorted_and_raw_base64_is_kept() -> None:
    plain = dynamodb_to_plain(
        {
            "ss": {"SS": ["b", "é", "a", "B"]},
            "ns": {"NS": ["10", "9", "-1.5", "1"]},
            "bs": {"BS": [b"\x02", b"\x01\xff", b"\x01"]},
            "raw": {"B": "AQI="},
            "raw_bs": {"BS": ["Ag==", "AQ=="]},
        }
    )
    assert plain["ss"] == ["B", "a", "b", "é"]
    assert plain["ns"] == [Decimal("-1.5"), Decimal("1"), Decimal("9"), Decimal("10")]
    assert plain["bs"] == ["AQ==", "Af8=", "Ag=="]
    assert plain["raw"] == "AQI="
    assert plain["raw_bs"] == ["AQ==", "Ag=="]


@pytest.mark.parametrize(
    "item",
    [
        {"a": {"X": "1"}},
        {"a": {"S": "x", "N": "1"}},
        {"a": {}},
        {"a": {"N": "twelve"}},
        {"a": {"M": {"b": {"L": [{"Q": 1}]}}}},
        {"a": "not an attribute value"},
    ],
)
def test_malformed_items_raise_configuration_error(item: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="not a DynamoDB item"):
        dynamodb_to_plain(item)


# ---------------------------------------------------------------------------
# JSON-ready: numbers kept as their text, the same bytes written

#: Numbers DynamoDB accepts that are not in canonical JSON form, and some that are.
odd_numbers = st.sampled_from(
    [
        *("+5", "007", "-0", "0", "0.0", "-0.000", "1.", ".5", "1e2", "1E+2", "1.50"),
        *(
            "0.0000001",
            "42",
            "999999999999999999",
            "1000000000000000000",
            "0012345678901234567890",
            "123456789012345678901234",
        ),
    ]
)
json_ready_items = st.dictionaries(
    st.text(min_size=1, max_size=10),
    st.one_of(
        attribute_values,
        st.builds(lambda n: {"N": n}, odd_numbers),
        st.builds(lambda ns: {"NS": _distinct_numbers(ns)}, st.lists(odd_numbers, min_size=1)),
        # DynamoDB's raw JSON: blobs as base64 text.
        st.builds(lambda b: {"B": base64.b64encode(b).decode()}, st.binary(max_size=12)),
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(json_ready_items)
@example({"n": {"NS": ["1.0", "1", "-0", "0"]}})
@example({"n": {"NS": ["10", "9", "007", "999999999999999999"]}})
@example({"n": {"NS": ["5", "1000000000000000000", "12"]}})
@example({"n": {"L": [{"N": "1e2"}, {"M": {"m": {"N": "12.50"}}}, {"S": "x"}]}})
def test_json_ready_items_write_the_same_bytes(item: dict[str, Any]) -> None:
    _need_orjson()
    ready = convert.dynamodb_to_json_ready(item)
    assert plain_to_json_line(ready) == plain_to_json_line(dynamodb_to_plain(item))


def test_json_ready_keeps_canonical_numbers_as_text() -> None:
    _need_orjson()
    ready = convert.dynamodb_to_json_ready({"a": {"N": "12.50"}, "b": {"N": "1E+2"}})
    assert type(ready["a"]) is not Decimal
    assert ready["b"] == Decimal("1E+2")
    assert plain_to_json(ready) == b'{"a":12.50,"b":100}'


@pytest.mark.parametrize(
    "item",
    [
        {"a": {"X": "1"}},
        {"a": {"S": "x", "N": "1"}},
        {"a": {"N": "twelve"}},
        {"a": {"NS": ["1", "x"]}},
        {"a": {"NS": ["1", ""]}},
        {"a": {"M": {"b": {"L": [{"Q": 1}]}}}},
        {"a": "not an attribute value"},
    ],
)
def test_json_ready_malformed_items_raise_configuration_error(item: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="not a DynamoDB item"):
        convert.dynamodb_to_json_ready(item)


# ---------------------------------------------------------------------------
# The JSON encoder for any page item

UTC = dt.UTC


def test_datetimes_are_iso_8601_with_their_offset() -> None:
    from dateutil.tz import tzutc  # what botocore puts on parsed timestamps

    s3_object = {
        "Key": "logs/a.gz",
        "LastModified": dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=tzutc()),
        "Size": 5,
        "Owner": {"ID": "x"},
    }
    line = plain_to_json_line(s3_object)
    assert line == (
        b'{"Key":"logs/a.gz","LastModified":"2024-05-01T12:00:00+00:00",'
        b'"Size":5,"Owner":{"ID":"x"}}\n'
    )
    paris = dt.timezone(dt.timedelta(hours=2))
    moments = [
        dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
        dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=paris),
    ]
    for moment in moments:
        text = json.loads(plain_to_json(moment))
        parsed = dt.datetime.fromisoformat(text)
        assert parsed == moment
        assert parsed.utcoffset() == moment.utcoffset()


class Colour(enum.Enum):
    RED = "red"


def test_other_values_and_to_jsonable() -> None:
    ident = uuid.UUID(int=7)
    value = {
        "set": {3, 1, 2},
        "tuple": (1, "a"),
        "bytes": b"\x00\xff",
        "enum": Colour.RED,
        "uuid": ident,
        "date": dt.date(2024, 1, 2),
        "dec": Decimal("1.10"),
        "big": 2**80,
        1: "int key",
    }
    assert to_jsonable(value) == {
        "set": [1, 2, 3],
        "tuple": [1, "a"],
        "bytes": "AP8=",
        "enum": "red",
        "uuid": str(ident),
        "date": "2024-01-02",
        "dec": Decimal("1.10"),
        "big": 2**80,
        "1": "int key",
    }
    assert plain_to_json(value) == (
        b'{"set":[1,2,3],"tuple":[1,"a"],"bytes":"AP8=","enum":"red",'
        b'"uuid":"' + str(ident).encode() + b'","date":"2024-01-02","dec":1.10,'
        b'"big":1208925819614629174706176,"1":"int key"}'
    )
    with pytest.raises(TypeError, match="cannot write a object"):
        plain_to_json({"x": object()})


def test_lone_surrogates_become_escapes() -> None:
    line = plain_to_json_line({"k": "a\udc80b"})
    assert line == b'{"k":"a\\udc80b"}\n'
    assert json.loads(line) == {"k": "a\udc80b"}


# -- the two encoders agree, byte for byte ----------------------------------

json_keys = st.text(max_size=6)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.decimals(allow_nan=True, places=None),
    st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=10),
    st.binary(max_size=10),
    st.datetimes(timezones=st.sampled_from([UTC, dt.timezone(dt.timedelta(hours=-7))])),
    st.datetimes(),
    st.dates(),
    st.frozensets(st.integers(), max_size=4),
    st.sets(st.text(max_size=4), max_size=4),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(json_keys, inner, max_size=4),
        st.dictionaries(st.integers(), inner, max_size=2),
    ),
    max_leaves=15,
)


def _need_orjson() -> None:
    pytest.importorskip("orjson")
    if convert.json_backend() != "orjson":
        pytest.skip("the installed orjson writes floats differently; it is not used")


@settings(max_examples=400, deadline=None)
@given(values)
def test_orjson_and_stdlib_paths_write_the_same_bytes(value: Any) -> None:
    _need_orjson()
    assert convert._orjson_dumps(value) == convert._stdlib_dumps(value)
    assert convert._orjson_dumps_line(value) == convert._stdlib_dumps_line(value)


@settings(max_examples=1000, deadline=None)
@given(st.floats())
@example(1e-5)
@example(1.5e-5)
@example(2.5e-7)
@example(1e16)
@example(5e-324)
def test_float_text_matches_orjson_and_roundtrips(value: float) -> None:
    text = float_text(value)
    if text == "null":
        assert value != value or value in (float("inf"), float("-inf"))
    else:
        assert float(text) == value
        assert str(float(text)) == repr(value)
    if convert.json_backend() == "orjson":
        assert convert._orjson.dumps(value).decode() == text


@settings(max_examples=100, deadline=None)
@given(st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text()), st.lists))
def test_stdlib_path_is_valid_json(value: Any) -> None:
    assert json.loads(convert._stdlib_dumps(value)) == value


# ---------------------------------------------------------------------------
# A real Scan page


def _typed_items() -> list[dict[str, Any]]:
    return [
        {
            "pk": {"S": f"item-{i}"},
            "price": {"N": "12.50"},
            "big": {"N": "12345678901234567890.123456789"},
            "count": {"N": str(i)},
            "blob": {"B": bytes([i, 255, 0])},
            "ok": {"BOOL": i % 2 == 0},
            "nothing": {"NULL": True},
            "tags": {"SS": ["z", "a", "m"]},
            "scores": {"NS": ["3", "1.5", "-2"]},
            "blobs": {"BS": [b"\x02", b"\x01"]},
            "nested": {
                "M": {
                    "list": {"L": [{"S": "x"}, {"N": "7"}, {"M": {"deep": {"BOOL": True}}}]},
                    "text": {"S": 'é, "quoted"\nline'},
                }
            },
        }
        for i in range(5)
    ]


def _normalise_deserialized(value: Any) -> Any:
    from boto3.dynamodb.types import Binary

    if isinstance(value, Binary):
        return base64.b64encode(value.value).decode()
    if isinstance(value, set):
        members = [_normalise_deserialized(v) for v in value]
        if members and isinstance(next(iter(value)), Binary):
            return [base64.b64encode(b).decode() for b in sorted(v.value for v in value)]
        return sorted(members)
    if isinstance(value, dict):
        return {k: _normalise_deserialized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise_deserialized(v) for v in value]
    return value


@pytest.mark.anyio
async def test_moto_scan_page_matches_type_deserializer(boto3_client: Any, aio_client: Any) -> None:
    from boto3.dynamodb.types import TypeDeserializer

    table = f"convert-{uuid.uuid4().hex[:8]}"
    ddb = boto3_client("dynamodb")
    create_table(ddb, table)
    try:
        for item in _typed_items():
            ddb.put_item(TableName=table, Item=item)
        client = await aio_client("dynamodb")
        page = await client.scan(TableName=table)
        assert len(page["Items"]) == 5
        assert isinstance(page["Items"][0]["blob"]["B"], bytes)
        deserializer = TypeDeserializer()
        for raw in page["Items"]:
            ours = dynamodb_to_plain(raw)
            theirs = {k: deserializer.deserialize(v) for k, v in raw.items()}
            assert ours == _normalise_deserialized(theirs)
            assert isinstance(ours["price"], Decimal)
            line = plain_to_json_line(ours)
            assert b'"big":12345678901234567890.123456789' in line
            assert b'"price":12.50' in line or b'"price":12.5' in line
            assert loads_exact(line)["nested"]["text"] == 'é, "quoted"\nline'
    finally:
        ddb.delete_table(TableName=table)
