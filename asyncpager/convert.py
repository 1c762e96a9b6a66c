"""Items to JSON: DynamoDB's typed values to plain ones, and page items to JSON text.

Two jobs, both on the hot path of an export (millions of items):

* :func:`dynamodb_to_plain` turns DynamoDB's typed attribute values
  (``{"N": "12.50"}``, ``{"M": {...}}``, ...) into plain Python values.
* :func:`plain_to_json_line` writes any botocore page item (after the first
  step, or an S3 object, an EC2 instance, ...) as one line of JSON.

Numbers are exact
-----------------
A DynamoDB number has up to 38 significant digits and an exponent from -130 to
+125: a ``float`` cannot hold it. ``N`` becomes a :class:`decimal.Decimal`
(exactly the value sent, whatever its length; the same type boto3's
``TypeDeserializer`` gives, but without its 38-digit context, which refuses
some values), never an ``int`` or a ``float``, so one attribute has one type
whatever its value. In JSON a ``Decimal`` is written in positional notation
with every digit it has: ``12.50`` stays ``12.50``,
``12345678901234567890.123456789`` appears verbatim, and only the exponent
form is spelled out (``1E+2`` becomes ``100``, ``1.5E-3`` becomes ``0.0015``),
which is also how DynamoDB itself returns numbers. A leading ``+`` or leading
zeros (valid for DynamoDB, not in JSON) are dropped.

The other DynamoDB types: ``B`` (``bytes`` in aiobotocore's parsed responses)
becomes a standard base64 string (a ``str`` already, as in DynamoDB's raw JSON,
is taken to be base64 and kept); ``SS``, ``NS`` and ``BS`` become lists
*sorted* (by code point, numeric value, bytes), because DynamoDB's sets have
no order and two exports of the same table should be byte-identical;
``NULL`` becomes ``None``.

One JSON text, two encoders
---------------------------
With ``orjson`` (>= 3.11.7) installed the encoder uses it; otherwise a small
encoder in pure Python (on the standard library's string escaper). Both
write *the same bytes*, which the tests check value by value: compact
separators, UTF-8 (not ``\\u`` escapes) except for control characters,
datetimes as ISO 8601 (``datetime.isoformat()``: ``2024-05-01T12:00:00+00:00``
for botocore's timezone-aware timestamps, the form the AWS CLI prints),
bytes as base64, sets as sorted lists, ``Decimal`` as described above, floats
as orjson writes them (the shortest digits that round-trip, in exponent form
below 1e-5 and from 1e16), NaN and infinities as ``null``. The standard library's
``json`` cannot be the second encoder: it has no way to write a ``Decimal``'s
digits unquoted, and spells floats differently. An older orjson, whose
floats are written differently, is detected at import and not used.
"""

from __future__ import annotations

import datetime as _dt
import enum
import importlib
import json.encoder
import math
import re
import uuid
from binascii import a2b_base64, b2a_base64
from collections.abc import Callable, Iterator, Mapping, Sequence, Set
from decimal import Decimal
from typing import Any, overload

from asyncpager.errors import ConfigurationError

__all__ = [
    "RecordsView",
    "TypedItems",
    "canonical_number",
    "decimal_text",
    "dynamodb_to_json_ready",
    "dynamodb_to_plain",
    "dynamodb_value_to_json_ready",
    "dynamodb_value_to_plain",
    "dynamodb_values_to_json",
    "float_text",
    "json_backend",
    "plain_to_json",
    "plain_to_json_line",
    "to_jsonable",
]


# -- DynamoDB -----------------------------------------------------------------


def _binary(raw: Any) -> str:
    if type(raw) is str:
        return raw
    return b2a_base64(raw, newline=False).decode("ascii")


def _list(raw: Any) -> list[Any]:
    out: list[Any] = []
    decoders = _DECODERS
    for v in raw:
        ((tag, value),) = v.items()
        out.append(decoders[tag](value))
    return out


def _map(raw: Any) -> dict[str, Any]:
    # A loop with the lookup inlined: the hottest function of an export.
    out: dict[str, Any] = {}
    decoders = _DECODERS
    for k, v in raw.items():
        # An attribute value has exactly one key; unpacking checks that for free.
        ((tag, value),) = v.items()
        out[k] = decoders[tag](value)
    return out


def _number_set(raw: Any) -> list[Decimal]:
    return sorted(map(Decimal, raw))


def _binary_set(raw: Any) -> list[str]:
    if raw and type(raw[0]) is str:
        # Already base64 (DynamoDB's raw JSON): order by the bytes they stand for.
        return sorted(raw, key=a2b_base64)
    return [_binary(b) for b in sorted(bytes(b) for b in raw)]


def _null(raw: Any) -> None:
    return None


def _same(raw: Any) -> Any:
    return raw


#: One function per type key: a dict lookup on the single key of an attribute
#: value is faster than a chain of tests on the value's shape.
_DECODERS: dict[str, Callable[[Any], Any]] = {
    "S": _same,
    "N": Decimal,
    "B": _binary,
    "BOOL": _same,
    "NULL": _null,
    "M": _map,
    "L": _list,
    "SS": sorted,
    "NS": _number_set,
    "BS": _binary_set,
}


# -- JSON-ready: numbers kept as their text --------------------------------------

_CANONICAL_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?").fullmatch

#: Whether a DynamoDB number's text is already what :func:`decimal_text`
#: writes of its ``Decimal`` (positional, no leading zero or plus sign), as
#: DynamoDB sends numbers: a match, or ``None``.
canonical_number: Callable[[str], re.Match[str] | None] = _CANONICAL_NUMBER


def _json_number(raw: Any) -> Any:
    if type(raw) is str:
        # Most numbers are small counts and ids: an int is cheaper than a
        # fragment, and orjson writes what decimal_text would (up to 18
        # digits, well inside 64 bits; leading zeros dropped by both).
        if raw.isdigit() and raw.isascii() and len(raw) < 19:
            return int(raw)
        if _CANONICAL_NUMBER(raw) is not None:
            return _Fragment(raw)
    return Decimal(raw)


#: Ints written as ints: up to 18 digits, as _json_number (orjson's are 64-bit).
_INT_LIMIT = 10**18


def _json_number_set(raw: Any) -> list[Any]:
    # Ordered by value as _number_set orders them (a stable sort on the same
    # keys); each written as its text when that is already canonical. Sets
    # of counts and ids are sorted as ints: the same order, and numbers of
    # equal value are the same int (a Decimal key per number was most of the
    # cost of a set).
    joined = "".join(raw)
    if joined.isdigit() and joined.isascii():
        ints = sorted(map(int, raw))
        if ints[-1] < _INT_LIMIT:
            return ints
    return [_json_number(text) for text in sorted(raw, key=Decimal)]


def _map_json(raw: Any) -> dict[str, Any]:
    # _map with the commonest types tested inline: a call per attribute
    # value costs as much as the conversion itself. The one key is unpacked
    # from the dict itself, cheaper than from items() (anything but a
    # one-key dict raises ValueError or TypeError here).
    out: dict[str, Any] = {}
    for k, v in raw.items():
        (tag,) = v
        value = v[tag]
        if tag == "S":
            out[k] = value
        elif tag == "N":
            out[k] = _json_number(value)
        elif tag == "M":
            out[k] = _map_json(value)
        else:
            out[k] = _JSON_DECODERS[tag](value)
    return out


def _list_json(raw: Any) -> list[Any]:
    out: list[Any] = []
    decoders = _JSON_DECODERS
    for v in raw:
        (tag,) = v  # as in _map_json
        value = v[tag]
        if tag == "S":
            out.append(value)
        elif tag == "N":
            out.append(_json_number(value))
        else:
            out.append(decoders[tag](value))
    return out


_JSON_DECODERS: dict[str, Callable[[Any], Any]] = {
    **_DECODERS,
    "N": _json_number,
    "M": _map_json,
    "L": _list_json,
    "NS": _json_number_set,
}


def _value(av: Any) -> Any:
    ((tag, raw),) = av.items()
    return _DECODERS[tag](raw)


def _bad_item(item: Any, exc: Exception) -> ConfigurationError:
    shown = repr(item)
    if len(shown) > 200:
        shown = shown[:200] + "..."
    return ConfigurationError(
        f"not a DynamoDB item ({type(exc).__name__}: {exc}): {shown}",
    )


def dynamodb_to_plain(item: Mapping[str, Any]) -> dict[str, Any]:
    """One DynamoDB item (``{"id": {"S": "a"}, "n": {"N": "1.50"}}``) as plain
    values (``{"id": "a", "n": Decimal("1.50")}``); see the module docstring
    for each type.

    Raises :class:`ConfigurationError` when ``item`` is not made of DynamoDB
    attribute values (an unknown type key, a value with two keys, a number
    that does not parse).
    """
    try:
        return _map(item)
    except (KeyError, ValueError, TypeError, ArithmeticError, AttributeError) as exc:
        raise _bad_item(item, exc) from exc


def dynamodb_to_json_ready(item: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`dynamodb_to_plain` for an item that will only be written as
    JSON by :func:`plain_to_json_line`: the same bytes come out, faster.

    A number whose text is already what :func:`decimal_text` writes
    (``-?(0|[1-9][0-9]*)(.[0-9]+)?``, which is how DynamoDB sends numbers)
    stays that text, handed to orjson as a fragment, instead of becoming a
    ``Decimal`` that the encoder turns back into the same text through a
    callback (that round trip was a tenth of a DynamoDB export's CPU;
    conversion and encoding of the benchmark's items: 17.9 -> 14.5 us).
    Other numbers, and everything when orjson is not in use, are converted
    as :func:`dynamodb_to_plain` does. Not for records that anything but
    :func:`plain_to_json_line` reads (CSV, Parquet: they need the
    ``Decimal``)."""
    if _Fragment is None:
        return dynamodb_to_plain(item)
    try:
        return _map_json(item)
    except (KeyError, ValueError, TypeError, ArithmeticError, AttributeError) as exc:
        raise _bad_item(item, exc) from exc


def dynamodb_value_to_plain(value: Mapping[str, Any]) -> Any:
    """One DynamoDB attribute value (``{"N": "7"}``) as a plain value."""
    try:
        return _value(value)
    except (KeyError, ValueError, TypeError, ArithmeticError, AttributeError) as exc:
        raise _bad_item(value, exc) from exc


def dynamodb_value_to_json_ready(value: Mapping[str, Any]) -> Any:
    """One attribute value as :func:`dynamodb_to_json_ready` converts it:
    for :func:`plain_to_json` only, the same bytes as its plain value."""
    if _Fragment is None:
        return dynamodb_value_to_plain(value)
    try:
        ((tag, raw),) = value.items()
        return _JSON_DECODERS[tag](raw)
    except (KeyError, ValueError, TypeError, ArithmeticError, AttributeError) as exc:
        raise _bad_item(value, exc) from exc


def dynamodb_values_to_json(values: Sequence[Mapping[str, Any] | None]) -> list[str | None]:
    """Attribute values (or ``None``) as the compact JSON text of their plain
    values (``plain_to_json``), ``None`` for ``None`` and ``NULL``: a
    column of them, in one loop with the commonest types inline."""
    if _Fragment is None:
        plains = [None if v is None else dynamodb_value_to_plain(v) for v in values]
        return [None if p is None else plain_to_json(p).decode("utf-8") for p in plains]
    out: list[str | None] = []
    append, dumps, decoders = out.append, plain_to_json, _JSON_DECODERS
    plain: Any
    for value in values:
        if value is None:
            append(None)
            continue
        try:
            (tag,) = value  # as in _map_json
            raw = value[tag]
            if tag == "M":
                plain = _map_json(raw)
            elif tag == "L":
                plain = _list_json(raw)
            elif tag == "NULL":
                append(None)
                continue
            else:
                plain = decoders[tag](raw)
        except (KeyError, ValueError, TypeError, ArithmeticError, AttributeError) as exc:
            raise _bad_item(value, exc) from exc
        append(dumps(plain).decode("utf-8"))
    return out


class RecordsView(Sequence[Mapping[str, Any]]):
    """A page's records kept in another form for a sink that reads that
    form itself; read as a sequence, the records (:meth:`records`, made on
    first use) that anything else is given."""

    __slots__ = ()

    def records(self) -> list[dict[str, Any]]:
        """The records, as the export makes them of the page."""
        raise NotImplementedError

    def head(self, limit: int) -> RecordsView:
        """The first ``limit`` records, in the same form."""
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return self.records()[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records())


class TypedItems(RecordsView):
    """A page's DynamoDB items as sent (typed attribute values), for a sink
    that converts them itself, value by value into its own columns or cells
    (:class:`~asyncpager.sinks.ParquetSink`, :class:`~asyncpager.sinks.CsvSink`):
    making every item a dict of plain values first, for the sink to convert
    each value again, was half of a Parquet export's CPU.

    Read as a sequence, it holds the plain records
    (:func:`dynamodb_to_plain`), made on first use, so that anything else
    that is handed it reads what it would have been given otherwise."""

    __slots__ = ("_plain", "typed")

    def __init__(self, typed: Sequence[Mapping[str, Any]]) -> None:
        self.typed = typed
        self._plain: list[dict[str, Any]] | None = None

    def head(self, limit: int) -> TypedItems:
        """The first ``limit`` items, still typed."""
        return self if limit >= len(self.typed) else TypedItems(self.typed[:limit])

    def records(self) -> list[dict[str, Any]]:
        """The items as plain records."""
        if self._plain is None:
            self._plain = [dynamodb_to_plain(item) for item in self.typed]
        return self._plain

    def __len__(self) -> int:
        return len(self.typed)


# -- text of numbers -----------------------------------------------------------


def decimal_text(value: Decimal) -> str:
    """The JSON text of a ``Decimal``: positional, every digit kept
    (``Decimal("12.50")`` -> ``12.50``, ``Decimal("1E+2")`` -> ``100``);
    ``null`` for NaN and infinities, which JSON cannot hold."""
    # ``str`` is three times as fast as ``format``, and the same text when it
    # has only digits, a sign and a point (no exponent, NaN or Infinity).
    text = value.__str__()
    if not text.strip(_POSITIONAL):
        return text
    if not value.is_finite():
        return "null"
    return format(value, "f")


_POSITIONAL = "-0123456789."


def float_text(value: float) -> str:
    """The JSON text of a float: what orjson (>= 3.11.7) writes, built from
    ``repr`` so that both encoders agree. The same shortest digits that
    round-trip, but ``1e-5`` <= |x| < ``1e-4`` is positional and exponents
    are not zero-padded (``2.5e-7``, ``1e+16``); ``null`` for NaN and
    infinities."""
    if not math.isfinite(value):
        return "null"
    text = float.__repr__(value)
    mantissa, e, exponent = text.partition("e")
    if not e:
        return text
    power = int(exponent)
    if power == -5:
        sign = "-" if mantissa[0] == "-" else ""
        return f"{sign}0.0000{mantissa.lstrip('-').replace('.', '')}"
    return f"{mantissa}e{'+' if power > 0 else '-'}{abs(power)}"


# -- values JSON has no type for ------------------------------------------------


class _Raw:
    """JSON text to write as it is (the digits of a ``Decimal``)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _sorted_members(value: Set[Any]) -> list[Any]:
    try:
        return sorted(value)
    except TypeError:
        # Members of different types: order by their JSON text instead.
        return sorted(value, key=_stdlib_dumps)


def _replace(obj: Any) -> Any:
    """What to write for a value that is not a JSON type: a JSON-native
    value, or a :class:`_Raw` text. Shared by both encoders, so they agree."""
    if isinstance(obj, Decimal):
        return _Raw(decimal_text(obj))
    if isinstance(obj, _dt.datetime | _dt.date | _dt.time):
        return obj.isoformat()
    if isinstance(obj, bytes | bytearray | memoryview):
        return b2a_base64(obj, newline=False).decode("ascii")
    if isinstance(obj, Set):
        return _sorted_members(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, list | tuple):
        return list(obj)
    if isinstance(obj, str):
        return str.__str__(obj)
    if isinstance(obj, bool | int):
        return int(obj) if type(obj) is not bool else obj
    if isinstance(obj, float):
        return float(obj)
    raise TypeError(f"cannot write a {type(obj).__name__} as JSON: {obj!r:.100}")


# -- the pure-Python encoder ----------------------------------------------------

_escape: Callable[[str], str] = json.encoder.encode_basestring  # C-accelerated


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return _escape(key)
    if key is None or isinstance(key, bool):
        return '"null"' if key is None else ('"true"' if key else '"false"')
    if isinstance(key, int):
        return f'"{int.__repr__(key)}"'
    if isinstance(key, float):
        return f'"{float_text(key)}"'
    if isinstance(key, Decimal):
        return f'"{decimal_text(key)}"'
    raise TypeError(f"cannot write a {type(key).__name__} as a JSON object key")


def _encode(obj: Any, out: list[str]) -> None:
    # Exact type tests, commonest first; subclasses and other types go
    # through _replace once and come back as JSON-native values.
    t = type(obj)
    if t is str:
        out.append(_escape(obj))
    elif t is dict:
        if not obj:
            out.append("{}")
            return
        sep = "{"
        for k, v in obj.items():
            out.append(sep)
            out.append(_escape(k) if type(k) is str else _key_text(k))
            out.append(":")
            _encode(v, out)
            sep = ","
        out.append("}")
    elif t is int:
        out.append(int.__repr__(obj))
    elif t is Decimal:
        out.append(decimal_text(obj))
    elif obj is None:
        out.append("null")
    elif t is bool:
        out.append("true" if obj else "false")
    elif t is list or t is tuple:
        if not obj:
            out.append("[]")
            return
        sep = "["
        for v in obj:
            out.append(sep)
            _encode(v, out)
            sep = ","
        out.append("]")
    elif t is float:
        out.append(float_text(obj))
    elif t is _dt.datetime:
        # An S3 listing has one per item; the text is digits and punctuation.
        out.append(f'"{obj.isoformat()}"')
    elif isinstance(obj, enum.Enum):
        _encode(obj.value, out)
    elif isinstance(obj, str):
        out.append(_escape(obj))
    elif isinstance(obj, int):
        out.append("true" if obj is True else "false" if obj is False else int.__repr__(obj))
    elif isinstance(obj, float):
        out.append(float_text(obj))
    elif isinstance(obj, dict):
        _encode(dict(obj), out)
    elif isinstance(obj, list):
        _encode(list(obj), out)
    else:
        replaced = _replace(obj)
        if isinstance(replaced, _Raw):
            out.append(replaced.text)
        else:
            _encode(replaced, out)


def _stdlib_dumps(obj: Any) -> bytes:
    out: list[str] = []
    _encode(obj, out)
    # A lone surrogate (not valid UTF-8) becomes its JSON escape: it can only
    # appear inside a string literal, where ``\udc80`` means the same thing.
    return "".join(out).encode("utf-8", "backslashreplace")


def _stdlib_dumps_line(obj: Any) -> bytes:
    out: list[str] = []
    _encode(obj, out)
    out.append("\n")
    return "".join(out).encode("utf-8", "backslashreplace")


# -- orjson ----------------------------------------------------------------------


def _load_orjson() -> Any:
    try:
        orjson = importlib.import_module("orjson")
    except ImportError:
        return None
    if not hasattr(orjson, "Fragment") or not hasattr(orjson, "OPT_PASSTHROUGH_DATETIME"):
        return None
    probes: list[Any] = [
        [1e-5, 1.5e-5, 2.5e-7, 1e-4, 0.1, 1e15, 1e16, 1.2e30, 5e-324, -0.0, -1.5e-5],
        [1.7976931348623157e308, 123.456, 1e22, 100.0, float("nan")],
        '\x00\x1f\x7f\u2028"\\/é😀',
    ]
    for probe in probes:
        try:
            theirs = orjson.dumps(probe)
        except Exception:
            return None
        if theirs != _stdlib_dumps(probe):
            return None
    return orjson


_orjson: Any = _load_orjson()
_Fragment: Any = None if _orjson is None else _orjson.Fragment


def _orjson_default(obj: Any) -> Any:
    t = type(obj)
    if t is Decimal:
        return _orjson.Fragment(decimal_text(obj))
    if t is _dt.datetime:
        return obj.isoformat()
    replaced = _replace(obj)
    if isinstance(replaced, _Raw):
        return _orjson.Fragment(replaced.text)
    return replaced


if _orjson is not None:
    # Datetimes and dataclasses go through the shared _replace, so both
    # encoders write them the same way.
    _OPTIONS: int = _orjson.OPT_PASSTHROUGH_DATETIME | _orjson.OPT_PASSTHROUGH_DATACLASS
    _OPTIONS_LINE: int = _OPTIONS | _orjson.OPT_APPEND_NEWLINE
    _orjson_dumps_raw: Callable[..., bytes] = _orjson.dumps
    _OrjsonError: type[Exception] = _orjson.JSONEncodeError

    def _orjson_dumps(obj: Any) -> bytes:
        try:
            return _orjson_dumps_raw(obj, default=_orjson_default, option=_OPTIONS)
        except _OrjsonError:
            # Integers beyond 64 bits, lone surrogates, non-str keys: the
            # pure-Python encoder writes those (or raises the real error).
            return _stdlib_dumps(obj)

    def _orjson_dumps_line(obj: Any) -> bytes:
        try:
            return _orjson_dumps_raw(obj, default=_orjson_default, option=_OPTIONS_LINE)
        except _OrjsonError:
            return _stdlib_dumps_line(obj)

    plain_to_json: Callable[[Any], bytes] = _orjson_dumps
    plain_to_json_line: Callable[[Any], bytes] = _orjson_dumps_line
else:
    plain_to_json = _stdlib_dumps
    plain_to_json_line = _stdlib_dumps_line

plain_to_json.__doc__ = """``obj`` as compact JSON text (UTF-8 bytes, no newline)."""
plain_to_json_line.__doc__ = """``obj`` as one line of JSON (UTF-8 bytes ending in ``\\n``).

Any botocore page item: datetimes as ISO 8601, bytes as base64, ``Decimal``
with its exact digits, sets as sorted lists. Raises ``TypeError`` for a value
with no JSON form."""


def json_backend() -> str:
    """``"orjson"`` or ``"stdlib"``: which encoder :func:`plain_to_json_line` uses."""
    return "orjson" if _orjson is not None else "stdlib"


def to_jsonable(obj: Any) -> Any:
    """``obj`` made of JSON-native values only: ``dict`` (with ``str`` keys),
    ``list``, ``str``, ``int``, ``float``, ``bool``, ``None``, and
    ``Decimal``, kept so that no digit is lost (:func:`decimal_text` writes
    it). Datetimes become ISO 8601 strings, bytes base64, sets sorted lists,
    as in :func:`plain_to_json_line`."""
    t = type(obj)
    if t is str or t is int or t is float or t is bool or obj is None or t is Decimal:
        return obj
    if t is dict:
        return {
            (k if type(k) is str else json.loads(_key_text(k))): to_jsonable(v)
            for k, v in obj.items()
        }
    if t is list or t is tuple:
        return [to_jsonable(v) for v in obj]
    replaced = _replace(obj)
    return obj if isinstance(replaced, _Raw) else to_jsonable(replaced)
