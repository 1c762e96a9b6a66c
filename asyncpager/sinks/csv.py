"""CSV: one row per item, a header that never changes, safe to open in a spreadsheet.

Columns
-------
A CSV header is written once, at the top, so it cannot grow when a later item
brings a new key. The columns are the ``columns`` given, or else the keys of
the first batch written (in the order they first appear), plus one last
column, ``_extra``, that holds any other key of an item as a JSON object
(empty when there is none). Nothing is dropped, and the file stays one
rectangular table however the items vary. ``extra_column=None`` drops the
keys outside the columns instead (when the caller chose the columns on
purpose). The columns are kept in the sink's state, so a resumed export
goes on with the same ones.

Cells
-----
Strings as they are; numbers with their exact digits; ``true``/``false``;
empty for ``None`` and for a missing key; datetimes ISO 8601; bytes base64;
lists, maps and sets as compact JSON text. The :mod:`csv` module quotes
cells (and header names) holding commas, quotes or newlines. Rows end in
CRLF, as RFC 4180 says.

A cell of text that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return would run as a formula when the file is opened in a
spreadsheet (CSV injection, OWASP). Such cells, header names included, get a
leading ``'``; ``raw_formulas=True`` writes them unchanged. Numbers are never
prefixed: ``-5`` is a number, not a formula.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import IO, Any, ClassVar

from asyncpager.convert import (
    TypedItems,
    canonical_number,
    decimal_text,
    dynamodb_to_plain,
    dynamodb_value_to_json_ready,
    dynamodb_value_to_plain,
    float_text,
    plain_to_json,
    to_jsonable,
)
from asyncpager.errors import ConfigurationError
from asyncpager.item_lines import ObjectRows, object_csv_rows, object_row_columns
from asyncpager.sinks._base import ByteSink

__all__ = ["CsvSink"]

_FORMULA_START = frozenset("=+-@\t\r")


def _same(value: Any) -> Any:
    return value


#: DynamoDB types whose plain values are written as JSON text.
_JSON_TAGS = frozenset({"M", "L", "SS", "NS", "BS"})


class CsvSink(ByteSink):
    """Items as CSV rows (see the module docstring for columns and cells)."""

    format: ClassVar[str] = "csv"

    def __init__(
        self,
        path: str | None,
        *,
        stream: IO[bytes] | None = None,
        compression: str | None = None,
        compresslevel: int | None = None,
        buffer_size: int = 1 << 20,
        columns: Sequence[str] | None = None,
        extra_column: str | None = "_extra",
        raw_formulas: bool = False,
        durable: bool = True,
    ) -> None:
        super().__init__(
            path,
            stream=stream,
            compression=compression,
            compresslevel=compresslevel,
            buffer_size=buffer_size,
            durable=durable,
        )
        if columns is not None:
            columns = list(columns)
            if not columns:
                raise ConfigurationError("columns must not be empty")
            if len(set(columns)) != len(columns):
                raise ConfigurationError("columns must not repeat a name")
            if extra_column is not None and extra_column in columns:
                raise ConfigurationError(
                    f"extra_column {extra_column!r} is also one of the columns"
                )
        self._given = columns
        self._extra_name = extra_column
        self._raw_formulas = raw_formulas
        self._columns: list[str] | None = None
        self._colset: frozenset[str] = frozenset()
        self._extra: str | None = None

    # -- state ------------------------------------------------------------

    def extra_state(self) -> dict[str, Any]:
        return {"columns": self._columns, "extra_column": self._extra}

    def restore(self, state: Mapping[str, Any]) -> None:
        columns = state.get("columns")
        if columns is None:
            return  # nothing was committed yet: the header comes with the next write
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise ConfigurationError("the checkpoint's CSV columns are damaged")
        if self._given is not None and self._given != columns:
            raise ConfigurationError(
                "the checkpoint's CSV columns differ from the columns asked for now"
            )
        self._set_columns(columns, state.get("extra_column"))

    def _set_columns(self, columns: list[str], extra: Any) -> None:
        self._columns = columns
        self._colset = frozenset(columns)
        self._extra = extra if isinstance(extra, str) else None

    # -- encoding ---------------------------------------------------------

    def _text(self, value: str) -> str:
        if value and not self._raw_formulas and value[0] in _FORMULA_START:
            return "'" + value
        return value

    def _cell(self, value: Any) -> str:
        t = type(value)
        if t is str:
            return self._text(value)
        if value is None:
            return ""
        if t is bool:
            return "true" if value else "false"
        if t is int:
            return int.__repr__(value)
        if t is Decimal:
            return "" if not value.is_finite() else decimal_text(value)
        if t is float:
            text = float_text(value)
            return "" if text == "null" else text
        if t is dict or t is list or t is tuple or t is set or t is frozenset:
            return plain_to_json(value).decode("utf-8")
        if isinstance(value, _dt.datetime | _dt.date | _dt.time):
            return value.isoformat()
        if isinstance(value, Decimal):
            return self._cell(Decimal(value))
        # bytes (base64 text can start with '+'), subclasses, enums, ...
        plain = to_jsonable(value)
        if type(plain) is t:
            raise TypeError(f"cannot write a {t.__name__} in a CSV cell")
        return self._cell(plain)

    def _header(self, records: Sequence[Mapping[str, Any]]) -> tuple[list[str], str | None]:
        if self._given is not None:
            columns = list(self._given)
        else:
            seen: dict[str, None] = {}
            for record in records:
                seen.update(dict.fromkeys(k for k in record if type(k) is str))
            columns = list(seen)
        extra = self._extra_name
        if extra is not None:
            while extra in columns:
                extra += "_"
        return columns, extra

    def _typed_cells(self, values: Sequence[Any]) -> list[str]:
        """A column of DynamoDB attribute values (``None`` where an item has
        none) as the cells of their plain values (see
        :class:`~asyncpager.convert.TypedItems`)."""
        cells: list[str] = []
        append, text, cell = cells.append, self._text, self._cell
        for value in values:
            if value is None:
                append("")
                continue
            (tag,) = value
            raw = value[tag]
            if tag == "S" and type(raw) is str:
                append(text(raw))
            elif tag == "N" and type(raw) is str and canonical_number(raw) is not None:
                append(raw)
            elif tag == "NULL":
                append("")
            elif tag == "BOOL" and type(raw) is bool:
                append("true" if raw else "false")
            elif tag in _JSON_TAGS:
                append(plain_to_json(dynamodb_value_to_json_ready(value)).decode("utf-8"))
            else:
                # A blob (base64 text, as a plain value is), or anything odd.
                append(cell(dynamodb_value_to_plain(value)))
        return cells

    def _plain_cells(self, values: Sequence[Any]) -> list[str]:
        """A column of plain values (``None`` where a record has none) as
        its cells: :meth:`_cell` of each, with the commonest types written
        inline (a 1,000-object S3 page: 5.1-6.1 ms against 6.1-9.2 for a
        call per cell)."""
        cells: list[str] = []
        append, cell = cells.append, self._cell
        guard = not self._raw_formulas
        for value in values:
            kind = type(value)
            if kind is str:
                append("'" + value if guard and value and value[0] in _FORMULA_START else value)
            elif value is None:
                append("")
            elif kind is int:
                append(int.__repr__(value))
            else:
                append(cell(value))
        return cells

    def _rows(
        self,
        records: Sequence[Mapping[str, Any]],
        columns: list[str],
        extra: str | None,
        colset: frozenset[str],
        column_cells: Callable[[Sequence[Any]], list[str]],
        plain: Callable[[Any], Any],
    ) -> list[Sequence[str]]:
        """The rows of ``records``, made column by column: ``column_cells``
        makes a column's cells, ``plain`` the plain value of one left for
        the extra column."""
        cells = [column_cells([record.get(c) for record in records]) for c in columns]
        if extra is not None:
            cells.append(
                [
                    ""
                    if record.keys() <= colset
                    else plain_to_json(
                        {k: plain(v) for k, v in record.items() if k not in colset}
                    ).decode("utf-8")
                    for record in records
                ]
            )
        return list(zip(*cells, strict=True)) if cells else [()] * len(records)

    def _object_rows(self, objects: ObjectRows) -> bytes | None:
        """S3 objects of the usual shape, with or without their checksum,
        written straight from their lines
        (:func:`~asyncpager.item_lines.object_csv_rows`), header first if
        none was written: the bytes the records would make. ``None`` when
        the columns are not theirs or a line is not of that shape; nothing
        is changed then."""
        if self._columns is not None:
            return object_csv_rows(objects.lines, self._columns, self._extra is not None)
        if self._given is not None:
            wanted = list(self._given)
        else:
            wanted = list(object_row_columns(objects.lines))
        extra = self._extra_name
        if extra is not None:
            while extra in wanted:
                extra += "_"
        rows = object_csv_rows(objects.lines, wanted, extra is not None)
        if rows is None:
            return None
        buffer = io.StringIO()
        names = wanted + ([extra] if extra is not None else [])
        csv.writer(buffer, lineterminator="\r\n").writerow([self._text(n) for n in names])
        self._set_columns(wanted, extra)
        return buffer.getvalue().encode("utf-8", "backslashreplace") + rows

    def encode(self, records: Sequence[Mapping[str, Any]]) -> bytes:
        """``records`` as CSV rows (and the header, before the first). A
        :class:`~asyncpager.convert.TypedItems` is written cell by cell from
        its typed values, as its plain records would be; an
        :class:`~asyncpager.item_lines.ObjectRows` of the usual shape, row by
        row from its lines."""
        if isinstance(records, ObjectRows):
            made = self._object_rows(records)
            if made is not None:
                return made
            records = records.records()
        typed = records.typed if isinstance(records, TypedItems) else None
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        if self._columns is None:
            columns, extra = self._header(typed if typed is not None else records)
            names = columns + ([extra] if extra is not None else [])
            writer.writerow([self._text(name) for name in names])
        else:
            columns, extra = self._columns, self._extra
        colset = self._colset if self._columns is not None else frozenset(columns)
        if typed is not None:
            try:
                rows = self._rows(
                    typed, columns, extra, colset, self._typed_cells, dynamodb_value_to_plain
                )
            except (KeyError, ValueError, TypeError, AttributeError, ArithmeticError):
                # Not attribute values: the item, in the converter's words.
                for item in typed:
                    dynamodb_to_plain(item)
                raise
        else:
            rows = self._rows(records, columns, extra, colset, self._plain_cells, _same)
        writer.writerows(rows)
        # Only now, with the whole batch encoded: a batch that fails leaves
        # the header to the next one.
        if self._columns is None:
            self._set_columns(columns, extra)
        # A lone surrogate cannot be UTF-8: keep it visible as an escape.
        return buffer.getvalue().encode("utf-8", "backslashreplace")
