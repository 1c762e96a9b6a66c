"""Parquet: one part file per commit, merged into the output by ``close()``.

A Parquet file cannot be appended to or cut back (its index sits at the end),
so the crash-safe unit is a whole file::

    OUT.parquet.parts/.part-000003.parquet.tmp    being written (row groups)
    OUT.parquet.parts/part-000001.parquet         committed: in the state
    OUT.parquet.parts/part-000002.parquet         committed: in the state
    OUT.parquet                                   written by close()

A commit closes the part being written, ``fsync``'s it and renames it to its
final name; the state lists the committed parts. Resuming deletes every file
of the parts directory that the state does not list (a half-written part, a
part committed after the state was saved). ``close()`` merges the parts, in
order, into a temporary file, ``fsync``'s it, renames it to ``OUT.parquet``,
then renames the parts directory to ``OUT.parquet.parts.done`` and deletes
it. Killed anywhere in there, running ``close()`` again from the same state
either merges again (the parts are still there) or sees the merge finished
(the parts directory is gone and the output exists) and just cleans up.

Columns and types
-----------------
Columns are the top-level keys of the items, in the order they first appear
(or exactly the ``columns`` given). A column's type is set by its first
non-null value and never changes afterwards:

============================  =====================================================
value                         Parquet column
============================  =====================================================
``str``                       string
``int`` (64-bit)              int64 (a larger one makes a ``decimal`` column)
``float``                     double (also takes ints up to 2**53, exactly)
``bool``                      boolean
``Decimal`` (DynamoDB ``N``)  string holding the exact digits (kind ``decimal``)
``datetime``                  timestamp[us, UTC] (timezone-aware), timestamp[us]
``bytes``                     binary
``dict``, ``list``, ``set``   string holding compact JSON (kind ``json``)
============================  =====================================================

DynamoDB numbers stay exact as text because no Parquet number type holds
them all (38 digits, exponents from -130 to +125); cast them in the query
engine. The kind is kept in each field's metadata (``asyncpager.kind``). A
column whose values are all null is written as string. A value that does
not fit its column (text in an int64 column) is not lost: it goes, with
any key outside fixed ``columns``, into the JSON object of an ``_extra``
column, added only when needed. Schemas of parts written before a column
was first seen or typed are widened when the parts are merged.

Rows are converted as they are written, column by column, and kept as those
columns until their row group is written. DynamoDB items as sent
(:class:`~asyncpager.convert.TypedItems`, what the export command hands this
sink) are converted straight from their typed values into what their plain
records would give, value for value: making each item a dict of plain values
first, to convert every value once more here, was half of the CPU of a
Parquet export of a DynamoDB table. S3 objects as the JSON Lines the export
writes (:class:`~asyncpager.item_lines.ObjectColumns`) are read by pyarrow's
JSON reader, in C, into the columns their records would make.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib
import io
import os
import shutil
from binascii import b2a_base64
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar

from asyncpager.convert import (
    TypedItems,
    canonical_number,
    decimal_text,
    dynamodb_to_plain,
    dynamodb_value_to_plain,
    dynamodb_values_to_json,
    plain_to_json,
    to_jsonable,
)
from asyncpager.errors import ConfigurationError
from asyncpager.item_lines import ObjectColumns, ObjectLines, object_row_columns
from asyncpager.sinks._base import (
    FILE_MODE,
    STATE_VERSION,
    cannot_write,
    check_phase,
    check_state,
    fsync_dir,
)

__all__ = ["ParquetSink"]

_CODECS = {
    "none": "none",
    "uncompressed": "none",
    "snappy": "snappy",
    "gzip": "gzip",
    "gz": "gzip",
    "zstd": "zstd",
    "zst": "zstd",
    "lz4": "lz4",
    "brotli": "brotli",
}

_KINDS = (
    "null",
    "string",
    "int64",
    "float64",
    "bool",
    "decimal",
    "binary",
    "timestamp_utc",
    "timestamp",
    "json",
)


def load_pyarrow() -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.parquet)``, or the one-line error saying what to install."""
    try:
        pa = importlib.import_module("pyarrow")
        pq = importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise ConfigurationError(
            "parquet output needs pyarrow: pip install 'asyncpager[parquet]'"
        ) from None
    return pa, pq


class _Misfit:
    """A value that does not fit its column's type."""


_MISFIT = _Misfit()
_NATIVE = frozenset({str, int, float, bool, Decimal, dict, list, type(None)})
_INT64 = 1 << 63
_EXACT_FLOAT = 1 << 53


def _kind_of(value: Any) -> str:
    t = type(value)
    if t is str:
        return "string"
    if t is bool:
        return "bool"
    if t is int:
        return "int64" if -_INT64 <= value < _INT64 else "decimal"
    if t is float:
        return "float64"
    if t is Decimal:
        return "decimal"
    if isinstance(value, _dt.datetime):
        return "timestamp" if value.tzinfo is None else "timestamp_utc"
    if isinstance(value, bytes | bytearray | memoryview):
        return "binary"
    if t is dict or t is list or isinstance(value, Mapping | list | tuple | set | frozenset):
        return "json"
    plain = to_jsonable(value)
    return "json" if type(plain) is t else _kind_of(plain)


def _to_string(v: Any) -> Any:
    return str.__str__(v) if isinstance(v, str) else _MISFIT


def _to_int64(v: Any) -> Any:
    if isinstance(v, int) and not isinstance(v, bool) and -_INT64 <= v < _INT64:
        return int(v)
    return _MISFIT


def _to_float64(v: Any) -> Any:
    if isinstance(v, float):
        return float(v)
    if isinstance(v, int) and not isinstance(v, bool) and -_EXACT_FLOAT <= v <= _EXACT_FLOAT:
        return float(v)
    return _MISFIT


def _to_bool(v: Any) -> Any:
    return v if type(v) is bool else _MISFIT


def _to_decimal(v: Any) -> Any:
    if isinstance(v, Decimal):
        return decimal_text(v) if v.is_finite() else _MISFIT
    if isinstance(v, int) and not isinstance(v, bool):
        return int.__repr__(v)
    return _MISFIT


def _to_binary(v: Any) -> Any:
    return bytes(v) if isinstance(v, bytes | bytearray | memoryview) else _MISFIT


def _to_timestamp_utc(v: Any) -> Any:
    return v if isinstance(v, _dt.datetime) and v.tzinfo is not None else _MISFIT


def _to_timestamp(v: Any) -> Any:
    return v if isinstance(v, _dt.datetime) and v.tzinfo is None else _MISFIT


def _to_json(v: Any) -> Any:
    return plain_to_json(v).decode("utf-8")


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "string": _to_string,
    "int64": _to_int64,
    "float64": _to_float64,
    "bool": _to_bool,
    "decimal": _to_decimal,
    "binary": _to_binary,
    "timestamp_utc": _to_timestamp_utc,
    "timestamp": _to_timestamp,
    "json": _to_json,
}


def _convert(kind: str, value: Any) -> Any:
    out = _CONVERTERS[kind](value)
    if out is _MISFIT and type(value) not in _NATIVE:
        # A date, an enum, a str subclass: try its JSON-ready form.
        plain = to_jsonable(value)
        if type(plain) is not type(value):
            out = _CONVERTERS[kind](plain)
    return out


#: The one type whose values a column of each kind takes as they are
#: (int64 within its bounds): what _convert gives them unchanged.
_AS_IS: dict[str, type] = {
    "string": str,
    "int64": int,
    "float64": float,
    "bool": bool,
    "binary": bytes,
}


def _plain_column(kind: str, values: Sequence[Any], column: list[Any]) -> list[int]:
    """``values`` appended to ``column`` as :func:`_convert` converts them
    (``None`` stays ``None``); returns the indexes of the misfits, appended
    as ``None``. Values of the column's own type are taken without a call
    (the calls per value were 7% of an S3 export to Parquet, profiled)."""
    misfits: list[int] = []
    append = column.append
    exact = _AS_IS.get(kind)
    # A misfit's index in values: where the column stands, less where it began.
    base = len(column)
    if kind == "int64":
        low, high = -_INT64, _INT64
        for value in values:
            if value is None or (type(value) is int and low <= value < high):
                append(value)
            else:
                _convert_one(kind, value, len(column) - base, append, misfits)
    elif kind == "timestamp_utc" or kind == "timestamp":
        aware = kind == "timestamp_utc"
        moment = _dt.datetime
        for value in values:
            if value is None or (type(value) is moment and (value.tzinfo is not None) is aware):
                append(value)
            else:
                _convert_one(kind, value, len(column) - base, append, misfits)
    elif exact is not None:
        for value in values:
            if value is None or type(value) is exact:
                append(value)
            else:
                _convert_one(kind, value, len(column) - base, append, misfits)
    else:
        for value in values:
            if value is None:
                append(None)
            else:
                _convert_one(kind, value, len(column) - base, append, misfits)
    return misfits


def _convert_one(
    kind: str, value: Any, at: int, append: Callable[[Any], None], misfits: list[int]
) -> None:
    out = _convert(kind, value)
    if out is _MISFIT:
        misfits.append(at)
        out = None
    append(out)


#: The kinds the members of an S3 object's usual shape take, as
#: ObjectLines writes them (see asyncpager.item_lines.object_lines).
_OBJECT_KINDS = {
    "Key": "string",
    "LastModified": "timestamp_utc",
    "ETag": "string",
    # A list: its JSON text, as the records' lists are written.
    "ChecksumAlgorithm": "json",
    "ChecksumType": "string",
    "Size": "int64",
    "StorageClass": "string",
}


#: The one member of the usual shape that is a list.
_ALGORITHMS = "ChecksumAlgorithm"


# -- DynamoDB items as sent ------------------------------------------------------

#: The kind a column takes from a typed value: that of its plain value (see
#: _kind_of; blobs are base64 text, sets sorted lists, numbers Decimals).
_TAG_KINDS = {
    "S": "string",
    "B": "string",
    "N": "decimal",
    "BOOL": "bool",
    "M": "json",
    "L": "json",
    "SS": "json",
    "NS": "json",
    "BS": "json",
}


def _typed_kind(values: Sequence[Any]) -> str:
    """The kind of the column whose first non-null value is among ``values``."""
    for value in values:
        if value is not None:
            (tag,) = value
            if tag != "NULL":
                kind = _TAG_KINDS.get(tag)
                return kind if kind is not None else _kind_of(dynamodb_value_to_plain(value))
    return "null"


def _typed_column(kind: str, values: Sequence[Any], column: list[Any]) -> list[tuple[int, Any]]:
    """``values`` (typed attribute values, or None where an item has none)
    appended to ``column`` as :func:`_convert` appends their plain values;
    returns the misfits, ``(index, plain value)``.

    The common case of each kind is written out, one loop per kind: S (and
    B, as bytes or base64 text) in a string column, a canonical N in a
    decimal one, BOOL in a bool one, any value in a JSON one (by the
    JSON-ready decoders, the same text). Any other value takes the plain
    path, value by value."""
    misfits: list[tuple[int, Any]] = []
    append = column.append

    def other(i: int, value: Any) -> None:
        plain = dynamodb_value_to_plain(value)
        out = None if plain is None else _convert(kind, plain)
        if out is _MISFIT:
            misfits.append((i, plain))
            out = None
        append(out)

    if kind == "string":
        for i, value in enumerate(values):
            if value is None:
                append(None)
                continue
            (tag,) = value
            raw = value[tag]
            # A B value: bytes from botocore's parse, or the text as sent
            # from the export's raw parse, already base64 (as _binary takes it).
            if type(raw) is str and (tag == "S" or tag == "B"):
                append(raw)
            elif tag == "B" and type(raw) is bytes:
                append(b2a_base64(raw, newline=False).decode("ascii"))
            else:
                other(i, value)
    elif kind == "decimal":
        canonical = canonical_number
        for i, value in enumerate(values):
            if value is None:
                append(None)
                continue
            (tag,) = value
            if tag == "N":
                text = value["N"]
                if type(text) is str and canonical(text) is not None:
                    append(text)
                    continue
            other(i, value)
    elif kind == "bool":
        for i, value in enumerate(values):
            if value is None:
                append(None)
                continue
            (tag,) = value
            flag = value[tag]
            if tag == "BOOL" and type(flag) is bool:
                append(flag)
            else:
                other(i, value)
    elif kind == "json":
        column.extend(dynamodb_values_to_json(values))
    else:
        for i, value in enumerate(values):
            if value is None:
                append(None)
            else:
                other(i, value)
    return misfits


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create(path: str) -> None:
    """Create ``path`` empty with the output mode; pyarrow then writes into it
    (opening an existing file keeps its mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.close(fd)


class ParquetSink:
    """Items as one Parquet file, written as committed parts and merged on
    :meth:`close` (see the module docstring). Needs ``pyarrow``.

    ``compression`` is Parquet's own codec (``snappy``, the default, ``zstd``,
    ``gzip``, ``lz4``, ``brotli``, ``none``): a Parquet file is not
    compressed from outside.
    """

    format: ClassVar[str] = "parquet"

    def __init__(
        self,
        path: str,
        *,
        compression: str | None = None,
        compresslevel: int | None = None,
        row_group_size: int = 64 * 1024,
        columns: Sequence[str] | None = None,
        extra_column: str | None = "_extra",
    ) -> None:
        self._pa, self._pq = load_pyarrow()
        codec = _CODECS.get((compression or "snappy").lower())
        if codec is None:
            raise ConfigurationError(
                f"unknown Parquet compression {compression!r}: "
                "use snappy, zstd, gzip, lz4, brotli or none"
            )
        if row_group_size < 1:
            raise ConfigurationError("row_group_size must be at least 1")
        self.path = os.fspath(path)
        self.compression = codec
        self._level = compresslevel
        self._row_group_size = row_group_size
        self._parts_dir = self.path + ".parts"
        self._done_dir = self.path + ".parts.done"
        self._fixed = columns is not None
        self._kinds: dict[str, str] = {}
        if columns is not None:
            names = list(columns)
            if not names or len(set(names)) != len(names):
                raise ConfigurationError("columns must be a non-empty list of distinct names")
            if extra_column is not None and extra_column in names:
                raise ConfigurationError(
                    f"extra_column {extra_column!r} is also one of the columns"
                )
            self._kinds = dict.fromkeys(names, "null")
        self._extra_wanted = extra_column
        self._extra: str | None = None  # its name, once a value needed it
        self._parts: list[str] = []  # committed
        self._written: list[tuple[str, str]] = []  # (tmp, final) closed since the last commit
        self._next = 1
        # The rows of the row group being made, converted as they came:
        # column by column, each a list of chunks (lists of values, or arrays
        # pyarrow read), and what of each row goes to the extra column.
        self._columns: dict[str, list[Any]] = {}
        self._extras: list[dict[str, Any] | None] = []
        self._buffered = 0
        self._writer: Any = None
        self._writer_schema: Any = None
        self._writer_file: tuple[str, str] | None = None
        self._records = 0
        self._pending = 0
        self._finished = False
        self._state: dict[str, Any] | None = None
        self._phase = "new"

    @property
    def state(self) -> dict[str, Any] | None:
        """The state of the last commit (``None`` before the first)."""
        return self._state

    # -- the protocol -----------------------------------------------------

    def open(self, state: Mapping[str, Any] | None) -> None:
        if self._phase != "new":
            raise ConfigurationError("a sink can be opened only once")
        try:
            if state is None:
                # A fresh start: the leftovers of an earlier run are not ours to keep.
                for leftover in (self._parts_dir, self._done_dir):
                    if os.path.isdir(leftover):
                        shutil.rmtree(leftover)
            else:
                self._restore(state)
        except OSError as exc:
            raise cannot_write(self.path, exc) from exc
        self._phase = "open"

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Convert ``records`` into the row group being made (nothing of them
        is kept: they may change after this call). A
        :class:`~asyncpager.convert.TypedItems` is converted from its typed
        values, into what its plain records would give."""
        self._check_open()
        if not records:
            return
        with self._breaks():
            if isinstance(records, TypedItems):
                self._take_typed(records.typed)
            elif isinstance(records, ObjectColumns):
                self._take_lines(records)
            else:
                self._take(records)
            self._pending += len(records)
            if self._buffered >= self._row_group_size:
                self._flush_rows()

    def commit(self) -> dict[str, Any]:
        if self._finished and self._phase == "open" and not self._pending:
            # Resumed after the merge had finished: nothing left to commit.
            assert self._state is not None
            return dict(self._state)
        self._check_open()
        try:
            with self._breaks():
                self._flush_rows()
                self._close_writer()
                if self._written:
                    for tmp, final in self._written:
                        os.replace(tmp, final)
                    fsync_dir(self._parts_dir)
                    self._parts.extend(os.path.basename(final) for _, final in self._written)
                    self._written.clear()
        except OSError as exc:
            raise cannot_write(self.path, exc) from exc
        self._records += self._pending
        self._pending = 0
        self._state = self._make_state()
        return dict(self._state)

    def close(self) -> None:
        if self._phase in ("closed", "aborted"):
            return
        if self._phase == "new":
            self._phase = "closed"
            return
        try:
            if not self._finished:
                self.commit()
                self._merge()
            self._clean_up()
        except BaseException:
            self.abort()
            raise
        self._phase = "closed"

    def abort(self) -> None:
        if self._phase not in ("open", "broken"):
            self._phase = "aborted" if self._phase == "new" else self._phase
            return
        self._phase = "aborted"
        self._columns.clear()
        self._extras.clear()
        self._buffered = 0
        self._pending = 0
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        leftovers = [tmp for tmp, _ in self._written]
        if self._writer_file is not None:
            leftovers.append(self._writer_file[0])
        self._written.clear()
        self._writer_file = None
        for tmp in leftovers:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    # -- state ------------------------------------------------------------

    def _make_state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "format": self.format,
            "compression": self.compression,
            "path": os.path.abspath(self.path),
            "records": self._records,
            "parts": list(self._parts),
            "next_part": self._next,
            "columns": [[name, kind] for name, kind in self._kinds.items()],
            "fixed_columns": self._fixed,
            "extra_column": self._extra,
        }

    def _restore(self, state: Mapping[str, Any]) -> None:
        check_state(state, fmt=self.format, path=self.path, compression=self.compression)
        try:
            parts = [str(p) for p in state["parts"]]
            next_part = int(state["next_part"])
            records = int(state["records"])
            kinds = {str(name): str(kind) for name, kind in state["columns"]}
            fixed = bool(state["fixed_columns"])
            extra = state["extra_column"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError("the checkpoint's output state is damaged") from exc
        if any(kind not in _KINDS for kind in kinds.values()) or any(
            os.path.basename(p) != p for p in parts
        ):
            raise ConfigurationError("the checkpoint's output state is damaged")
        if fixed != self._fixed or (fixed and list(kinds) != list(self._kinds)):
            raise ConfigurationError(
                "the checkpoint's Parquet columns differ from the columns asked for now"
            )
        self._parts, self._next, self._records = parts, next_part, records
        self._kinds = kinds
        self._extra = extra if isinstance(extra, str) else None
        self._state = dict(state)
        if os.path.isdir(self._parts_dir):
            keep = set(parts)
            for name in os.listdir(self._parts_dir):
                if name not in keep:
                    target = os.path.join(self._parts_dir, name)
                    if os.path.isdir(target):
                        shutil.rmtree(target)
                    else:
                        os.unlink(target)
            missing = [p for p in parts if not os.path.exists(os.path.join(self._parts_dir, p))]
            if missing:
                raise ConfigurationError(
                    f"cannot resume {self.path}: committed part {missing[0]} is missing"
                )
        elif parts:
            if os.path.isdir(self._done_dir) or os.path.exists(self.path):
                # Killed after the merge had put the output in place.
                self._finished = True
            else:
                raise ConfigurationError(
                    f"cannot resume {self.path}: its parts directory {self._parts_dir} is missing"
                )

    # -- writing parts ----------------------------------------------------

    def _check_open(self) -> None:
        check_phase(self._phase)
        if self._finished:
            raise ConfigurationError(f"{self.path} is already finalised")

    @contextlib.contextmanager
    def _breaks(self) -> Iterator[None]:
        """Rows taken out of the buffer and not written (a value with no JSON
        form, a full disk) would be counted as committed: refuse to go on.
        ``abort()`` keeps what was committed."""
        try:
            yield
        except BaseException:
            self._phase = "broken"
            raise

    def _extra_name(self) -> str:
        if self._extra is None:
            assert self._extra_wanted is not None
            name = self._extra_wanted
            while name in self._kinds:
                name += "_"
            self._extra = name
        return self._extra

    def _arrow_type(self, kind: str) -> Any:
        pa = self._pa
        return {
            "null": pa.null(),
            "string": pa.string(),
            "int64": pa.int64(),
            "float64": pa.float64(),
            "bool": pa.bool_(),
            "decimal": pa.string(),
            "binary": pa.binary(),
            "timestamp_utc": pa.timestamp("us", tz="UTC"),
            "timestamp": pa.timestamp("us"),
            "json": pa.string(),
        }[kind]

    def _schema(self, *, final: bool) -> Any:
        pa = self._pa
        fields = []
        for name, kind in self._kinds.items():
            if final and kind == "null":
                kind = "string"
            fields.append(
                pa.field(name, self._arrow_type(kind), metadata={"asyncpager.kind": kind})
            )
        if self._extra is not None:
            fields.append(pa.field(self._extra, pa.string(), metadata={"asyncpager.kind": "json"}))
        return pa.schema(fields)

    def _new_columns(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Columns for the keys of ``rows`` not seen before, in the order
        they appear (unless the columns are fixed)."""
        if self._fixed:
            return
        kinds, reserved = self._kinds, self._extra
        for row in rows:
            for key in row:
                if key not in kinds and type(key) is str and key != reserved:
                    kinds[key] = "null"

    def _chunks(self, name: str) -> list[Any]:
        chunks = self._columns.get(name)
        if chunks is None:
            # First seen now (or known from a checkpoint): null so far.
            chunks = self._columns[name] = [[None] * self._buffered]
        return chunks

    def _column(self, name: str) -> list[Any]:
        """The list the column's next values are appended to."""
        chunks = self._chunks(name)
        last = chunks[-1]
        if type(last) is not list:
            last = []
            chunks.append(last)
        return last

    def _misfit(self, extras: list[dict[str, Any] | None], i: int, name: str, value: Any) -> None:
        if self._extra_wanted is None:
            raise ConfigurationError(
                f"a value fits no Parquet column (in {name}); "
                "keep an extra_column to hold such values"
            )
        extra = extras[i]
        if extra is None:
            extra = extras[i] = {}
        extra[name] = value

    def _take(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Plain records into the row group."""
        self._new_columns(rows)
        kinds = self._kinds
        # Per row: the values that go to the extra column, if any.
        extras: list[dict[str, Any] | None] = [None] * len(rows)
        for name, kind in kinds.items():
            values = [row.get(name) for row in rows]
            if kind == "null":
                first = next((v for v in values if v is not None), None)
                if first is not None:
                    kind = kinds[name] = _kind_of(first)
            column = self._column(name)
            if kind == "null":
                column.extend(values)  # all None
                continue
            for i in _plain_column(kind, values, column):
                self._misfit(extras, i, name, values[i])
        self._outside(rows, extras, lambda value: value)
        self._extras.extend(extras)
        self._buffered += len(rows)

    def _take_typed(self, items: Sequence[Mapping[str, Any]]) -> None:
        """DynamoDB items as sent into the row group, each value converted
        into what :meth:`_take` makes of its plain value (``_typed_column``
        says how); an item that is not made of attribute values raises
        what ``dynamodb_to_plain`` raises."""
        self._new_columns(items)
        kinds = self._kinds
        extras: list[dict[str, Any] | None] = [None] * len(items)
        try:
            for name, kind in kinds.items():
                values = [item.get(name) for item in items]
                if kind == "null":
                    kind = kinds[name] = _typed_kind(values)
                column = self._column(name)
                if kind == "null":
                    column.extend([None] * len(values))
                    continue
                for i, value in _typed_column(kind, values, column):
                    self._misfit(extras, i, name, value)
        except (KeyError, ValueError, TypeError, AttributeError, ArithmeticError):
            # Not attribute values (a value with two keys, an unknown type):
            # the item, in the converter's own words. (The sink is broken by
            # now either way; see _breaks.)
            for item in items:
                dynamodb_to_plain(item)
            raise
        self._outside(items, extras, dynamodb_value_to_plain)
        self._extras.extend(extras)
        self._buffered += len(items)

    def _take_lines(self, objects: ObjectColumns) -> None:
        """S3 objects as JSON Lines into the row group, read by pyarrow into
        the columns their records would make (the members of the usual
        shape, in the kinds they take); any other page, or one pyarrow
        refuses, as its records."""
        count = len(objects)
        table = None if self._fixed else self._read_lines(objects.lines, count)
        if table is None:
            self._take(objects.records())
            return
        kinds = self._kinds
        for name in table.column_names:
            kinds[name] = _OBJECT_KINDS[name]
        for name in kinds:
            if name in table.column_names:
                self._chunks(name).append(table.column(name).combine_chunks())
            else:
                self._column(name).extend([None] * count)
        self._extras.extend([None] * count)
        self._buffered += count

    def _read_lines(self, objects: ObjectLines, count: int) -> Any:
        """The table pyarrow reads of the objects' lines, or ``None`` where
        it would not be what the records make."""
        lines = objects.lines
        if not lines:
            return None
        # The records' columns: the first object's members, then those that
        # come later (a checksum some objects have), as the CSV sink's.
        names = list(object_row_columns(objects))
        for name in names:
            kind = _OBJECT_KINDS.get(name)
            if (
                kind is None
                or name == self._extra
                or self._kinds.get(name, kind)
                not in (
                    kind,
                    "null",
                )
            ):
                return None
        pa = self._pa
        pa_json = importlib.import_module("pyarrow.json")
        # The list is read as a list, and made its text below.
        listed = pa.list_(pa.string())
        schema = pa.schema(
            [(n, listed if n == _ALGORITHMS else self._arrow_type(_OBJECT_KINDS[n])) for n in names]
        )
        try:
            table = pa_json.read_json(
                io.BytesIO(lines),
                # One block: a line must not straddle two.
                read_options=pa_json.ReadOptions(use_threads=False, block_size=len(lines) + 1),
                parse_options=pa_json.ParseOptions(
                    explicit_schema=schema, unexpected_field_behavior="error"
                ),
            )
        except pa.ArrowException:
            # A member in some object only, a size beyond 64 bits.
            return None
        if table.num_rows != count:
            return None
        if _ALGORITHMS in names:
            index = table.column_names.index(_ALGORITHMS)
            text = self._algorithms_text(table.column(index))
            if text is None:
                return None
            table = table.set_column(index, _ALGORITHMS, text)
        return table

    def _algorithms_text(self, lists: Any) -> Any:
        """The JSON text of each object's list of checksum algorithms (null
        where it has none), as the records' lists are written: in C, for
        lists of one name in capitals and digits, as S3 lists them (anything
        else, ``None``, for the records to be written instead)."""
        pc = importlib.import_module("pyarrow.compute")
        lengths = pc.list_value_length(lists)
        if pc.any(pc.not_equal(lengths, 1), min_count=0).as_py():
            return None
        names = pc.list_element(lists, 0)
        if not pc.all(pc.match_substring_regex(names, "^[A-Z0-9]+$"), min_count=0).as_py():
            return None
        return pc.binary_join_element_wise('["', names, '"]', "")

    def _outside(
        self,
        rows: Sequence[Mapping[str, Any]],
        extras: list[dict[str, Any] | None],
        plain: Callable[[Any], Any],
    ) -> None:
        """Keys outside the columns (fixed columns, or not a str) into the
        extra column too; without one they are dropped, as asked."""
        if self._extra_wanted is None:
            return
        kinds = self._kinds
        for i, row in enumerate(rows):
            if not row.keys() <= kinds.keys():
                others = {k: plain(v) for k, v in row.items() if k not in kinds}
                extra = extras[i]
                extras[i] = others if extra is None else {**extra, **others}
        if self._extra is None and any(e is not None for e in extras):
            self._extra_name()

    def _flush_rows(self) -> None:
        rows = self._buffered
        if not rows:
            return
        columns, self._columns = self._columns, {}
        extras, self._extras = self._extras, []
        self._buffered = 0
        pa = self._pa
        arrays = []
        for name, kind in self._kinds.items():
            chunks = columns.get(name)
            arrow_type = self._arrow_type(kind)
            if kind == "null" or chunks is None:
                arrays.append(pa.nulls(rows, arrow_type))
                continue
            pieces = [
                pa.array(chunk, type=arrow_type) if type(chunk) is list else chunk
                for chunk in chunks
                if len(chunk)
            ]
            arrays.append(pieces[0] if len(pieces) == 1 else pa.concat_arrays(pieces))
        if self._extra is not None:
            arrays.append(
                pa.array(
                    [None if e is None else plain_to_json(e).decode("utf-8") for e in extras],
                    type=pa.string(),
                )
            )
        schema = self._schema(final=False)
        table = pa.Table.from_arrays(arrays, schema=schema)
        if self._writer is not None and not self._writer_schema.equals(schema, check_metadata=True):
            # A new column or a newly typed one: this part ends here.
            self._close_writer()
        if self._writer is None:
            self._open_writer(schema)
        self._writer.write_table(table, row_group_size=self._row_group_size)

    def _open_writer(self, schema: Any) -> None:
        if not os.path.isdir(self._parts_dir):
            os.makedirs(self._parts_dir, exist_ok=True)
            fsync_dir(os.path.dirname(os.path.abspath(self._parts_dir)))
        final = os.path.join(self._parts_dir, f"part-{self._next:06d}.parquet")
        tmp = os.path.join(self._parts_dir, f".part-{self._next:06d}.parquet.tmp")
        self._next += 1
        _create(tmp)
        self._writer_file = (tmp, final)
        self._writer = self._pq.ParquetWriter(
            tmp, schema, compression=self.compression, compression_level=self._level
        )
        self._writer_schema = schema

    def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        writer.close()
        assert self._writer_file is not None
        _fsync_file(self._writer_file[0])
        self._written.append(self._writer_file)
        self._writer_file = None

    # -- the final file ---------------------------------------------------

    def _conform(self, batch: Any, schema: Any) -> Any:
        """``batch`` in the final schema: columns it lacks (first seen
        later) become nulls, columns typed later are cast from null."""
        pa = self._pa
        names = set(batch.schema.names)
        columns = []
        for field in schema:
            if field.name in names:
                column = batch.column(field.name)
                if column.type != field.type:
                    column = column.cast(field.type)
                columns.append(column)
            else:
                columns.append(pa.nulls(batch.num_rows, field.type))
        return pa.Table.from_arrays(columns, schema=schema)

    def _merge(self) -> None:
        pa, pq = self._pa, self._pq
        schema = self._schema(final=True)
        os.makedirs(self._parts_dir, exist_ok=True)
        tmp = os.path.join(self._parts_dir, ".merged.parquet.tmp")
        _create(tmp)
        pending: list[Any] = []
        pending_rows = 0
        with pq.ParquetWriter(
            tmp, schema, compression=self.compression, compression_level=self._level
        ) as writer:
            for part in self._parts:
                with pq.ParquetFile(os.path.join(self._parts_dir, part)) as source:
                    for batch in source.iter_batches(batch_size=self._row_group_size):
                        pending.append(self._conform(batch, schema))
                        pending_rows += batch.num_rows
                        if pending_rows >= self._row_group_size:
                            # Whole row groups, however small the parts were.
                            writer.write_table(
                                pa.concat_tables(pending), row_group_size=self._row_group_size
                            )
                            pending, pending_rows = [], 0
            if pending or not self._parts:
                table = pa.concat_tables(pending) if pending else schema.empty_table()
                writer.write_table(table, row_group_size=self._row_group_size)
        _fsync_file(tmp)
        os.replace(tmp, self.path)
        parent = os.path.dirname(os.path.abspath(self.path))
        fsync_dir(parent)
        # Renaming the parts away marks the merge as done, in one step.
        if os.path.isdir(self._done_dir):
            shutil.rmtree(self._done_dir)
        os.replace(self._parts_dir, self._done_dir)
        fsync_dir(parent)
        self._finished = True

    def _clean_up(self) -> None:
        if os.path.isdir(self._done_dir):
            shutil.rmtree(self._done_dir)
