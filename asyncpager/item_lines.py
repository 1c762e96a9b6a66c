"""Pages written as JSON Lines straight from the text that came.

**DynamoDB.** Exporting a ``Scan`` page to JSON Lines the ordinary way
decodes every typed attribute value into a Python object, converts each
into its plain value, and encodes each item again: three quarters of a
plain DynamoDB export's CPU (about 50 us per ten-attribute item). Yet the
plain JSON of an item is its typed JSON with the type wrappers taken off:
``{"pk":{"S":"a"},"n":{"N":"5"}}`` is ``{"pk":"a","n":5}``.
:func:`plain_lines` does that to the whole ``Items`` array at once, with
byte-string replacements and a few regular expressions that run in C, and
hands each item back as one line: what
:func:`asyncpager.convert.dynamodb_to_json_ready` and
:func:`asyncpager.convert.plain_to_json_line` would write, byte for byte
(for text sent without escapes, as DynamoDB sends it; an escape is kept as
sent, the same string either way). Only sets go through Python, to be
sorted as the converter sorts them.

Why replacing text is safe here: in JSON a double quote inside a string is
always escaped, so every sequence that starts with a ``{`` and an unescaped
quote (``{"S":"``, ``{"L":[``, ``{"M":{``) is structure, never a string's
content. Each kind of wrapper is taken off in one pass, in an order where no
pass leaves text that a later pass would take for a wrapper (an attribute
named ``N`` holding the string ``"5"`` stays a string). The closings that
cannot be told apart from string content (``"}``, ``]}``, ``}}``) are
counted against the openings they belong to: a string that holds one makes
the counts differ, and the page is converted the ordinary way. So is
anything else unexpected (whitespace between tokens, a number not written as
plain digits, a new type): :func:`plain_lines` returns ``None`` rather than
guess.

**S3.** A ListObjectsV2 page's ``<Contents>`` elements become the lines the
export wrote of botocore's page (timestamps as the ISO 8601 text of its
datetimes) through one regular expression that must read the whole run, a
``%`` format per object and a few replacements (:func:`object_lines`):
parsing each object into a dict of values, its timestamp into a datetime,
and encoding it again was most of an S3 export's CPU. Pages of any other
shape (an owner, a restore status, character references) are read the
ordinary way. URL-encoded keys are decoded one by one, once botocore's own
handlers have shown whether botocore would.

:class:`ItemLines` and :class:`ObjectLines` carry a page's items as that
text from the parse to the writer: the queued page holds bytes, not
thousands of small objects, and anything that reads the items as a list
gets what the ordinary parse gives, made on first use.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import sys
from binascii import a2b_base64
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache, partial
from operator import itemgetter
from typing import Any, NamedTuple, Self, overload
from urllib.parse import unquote_plus

from asyncpager import convert
from asyncpager.convert import (
    RecordsView,
    _json_number_set,
    dynamodb_to_json_ready,
    plain_to_json,
    plain_to_json_line,
)

__all__ = [
    "HELD_LINES",
    "EncodedLines",
    "ItemLines",
    "LabelledLines",
    "ObjectColumns",
    "ObjectLines",
    "ObjectRows",
    "object_csv_rows",
    "object_row_columns",
    "with_datetimes",
    "object_lines",
    "plain_lines",
    "split_page",
]

_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
#: A number that is already what the converter writes: orjson writes an int
#: up to 18 digits as its digits, anything longer is kept as its text.
_NUMBER = re.compile(rb'\{"N":"(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?)"\}')
_STRING_SET = re.compile(rb'\{"SS":\["([^"\\]*(?:","[^"\\]*)*)"\]\}')
_INT_SET = re.compile(rb'\{"NS":\["((?:0|[1-9][0-9]{0,17})(?:","(?:0|[1-9][0-9]{0,17}))*)"\]\}')
_BLOB_SET = re.compile(rb'\{"BS":\["([A-Za-z0-9+/=]*(?:","[A-Za-z0-9+/=]*)*)"\]\}')
_SET = re.compile(rb'\{"(SS|NS|BS)":\[(' + _STRING + rb"(?:," + _STRING + rb")*)\]\}")
# Lists and maps, once unwrapped, are written with bytes that JSON text never
# holds raw (control characters are escaped in strings and not allowed
# outside them), so that their closings are not counted with the wrappers'.
_MAP_OPEN, _MAP_CLOSE, _LIST_OPEN, _LIST_CLOSE = b"\x01", b"\x02", b"\x03", b"\x04"
_RESTORE = bytes.maketrans(b"\x01\x02\x03\x04", b"{}[]")
_ITEMS = b'"Items":['

#: Where a parsed page holds ``(member, lines)`` until botocore's handlers
#: have run (see :class:`ObjectLines`); the page stream puts them in place.
HELD_LINES = "asyncpager_lines"


def plain_lines(items: bytes, count: int) -> bytes | None:
    """The ``count`` typed items of ``items`` (the text between the brackets
    of a response's ``Items`` array, compact as DynamoDB sends it) as plain
    JSON Lines, each ending in a newline; ``None`` when the text is not what
    this handles (see the module docstring), for the caller to convert it
    the ordinary way."""
    if not count:
        return b"" if not items else None
    # A string ending in an escaped backslash, or holding an escaped quote
    # before a brace, reads as a wrapper's end; the placeholders must be new.
    if b'\\"}' in items or any(mark in items for mark in (b"\x01", b"\x02", b"\x03", b"\x04")):
        return None
    # Numbers first: no later pass makes text that reads as a number wrapper,
    # but unwrapping a string does ({"N":{"S":"5"}} is the string "5").
    text = b"".join(_NUMBER.split(items))
    if b'{"N":"' in text:
        return None
    # Blobs become strings (the base64 text is what is written) in one pass
    # with strings: in two, the first would leave '{"B":"' or '{"S":"' where
    # an attribute of that name holds the other ({"B":{"S":"x"}}).
    unwrapped = _unwrap(text.replace(b'{"B":"', b'{"S":"'), b'{"S":"', b'"', b'"}', b'"')
    if unwrapped is None:
        return None
    # NULL before BOOL: {"NULL":{"BOOL":true}} is an attribute named NULL.
    text = unwrapped.replace(b'{"NULL":true}', b"null")
    text = text.replace(b'{"BOOL":true}', b"true").replace(b'{"BOOL":false}', b"false")
    text, sets_made = _sort_sets(text)
    # Every structural "]}" now ends a list wrapper: sets are placeholders,
    # and the Items array's own "]" is not in the text.
    unwrapped = _unwrap(text, b'{"L":[', b"[", b"]}", b"]")
    # A map wrapper ends with its map's "}" and its own: a run of closing
    # braces is some of those pairs, then perhaps one item's end. The one
    # opening that is not a wrapper's: an item or map whose first attribute
    # is named M and holds a map ('{"M":{"M":{'), left to the ordinary path.
    if unwrapped is None or b'{"M":{"M":{' in unwrapped:
        return None
    unwrapped = _unwrap(unwrapped, b'{"M":{', _MAP_OPEN, b"}}", _MAP_CLOSE)
    if unwrapped is None:
        return None
    text = unwrapped
    # Left: the items, each "{" plus attributes plus "}", nothing else with
    # a brace and a quote (an unknown type would be one). So every '},{"' is
    # the end of one item and the start of the next.
    if text.count(b'{"') != count:
        return None
    text = text.replace(b'},{"', b'}\n{"')
    if sets_made or _MAP_OPEN in text:
        text = text.translate(_RESTORE)
    return text + b"\n"


def _unwrap(
    text: bytes, opening: bytes, opened: bytes, closing: bytes, closed: bytes
) -> bytes | None:
    """Every ``opening`` replaced by ``opened`` and every ``closing`` by
    ``closed``; ``None`` when there are not as many of each (a closing in a
    string). The counts are read off the lengths the replacements took
    away: a pass to count costs as much as one to replace."""
    size = len(text)
    text = text.replace(opening, opened)
    count = (size - len(text)) // (len(opening) - len(opened))
    size = len(text)
    text = text.replace(closing, closed)
    return text if (size - len(text)) // (len(closing) - len(closed)) == count else None


def _sort_sets(text: bytes) -> tuple[bytes, bool]:
    """Every set wrapper in ``text`` replaced by its elements in the
    converter's order, between list placeholders; and whether there was
    one. Sets are sorted (DynamoDB sends them in no order); the commonest
    kinds are done in one comprehension each, without a call per set."""
    made = False
    # Strings with no escapes: each element's text is what the encoder
    # writes, and UTF-8 sorts as code points do.
    parts = _STRING_SET.split(text)
    if len(parts) > 1:
        made = True
        parts[1::2] = [
            b'\x03"%s"\x04' % b'","'.join(sorted(inner.split(b'","'))) for inner in parts[1::2]
        ]
        text = b"".join(parts)
    # Integers the encoder writes as their digits (up to 18, no leading zero).
    parts = _INT_SET.split(text)
    if len(parts) > 1:
        made = True
        parts[1::2] = [
            b"\x03%s\x04" % b",".join(sorted(inner.split(b'","'), key=int)) for inner in parts[1::2]
        ]
        text = b"".join(parts)
    # Blobs, ordered by the bytes they stand for.
    parts = _BLOB_SET.split(text)
    if len(parts) > 1:
        made = True
        parts[1::2] = [
            b'\x03"%s"\x04' % b'","'.join(sorted(inner.split(b'","'), key=a2b_base64))
            for inner in parts[1::2]
        ]
        text = b"".join(parts)
    # Anything else (escapes, other numbers), one call each.
    parts = _SET.split(text)
    if len(parts) > 1:
        made = True
        tags, inners = parts[1::3], parts[2::3]
        sets = [_sorted_set(tag, inner) for tag, inner in zip(tags, inners, strict=True)]
        del parts[2::3]
        parts[1::2] = sets
        text = b"".join(parts)
    return text, made


def _sorted_set(tag: bytes, inner: bytes) -> bytes:
    """A set the comprehensions above did not take (escapes, numbers other
    than plain integers) as the converter writes it: decoded, sorted
    (strings by code point, numbers by value, blobs by their bytes), and
    encoded between list placeholders."""
    from asyncpager.parsers._compiler import json_loads

    values = json_loads(b"[" + inner + b"]")
    if tag == b"SS":
        values.sort()
    elif tag == b"NS":
        values = _json_number_set(values)
    else:
        values.sort(key=a2b_base64)
    return _LIST_OPEN + plain_to_json_line(values)[1:-2] + _LIST_CLOSE


def split_page(body: bytes) -> tuple[bytes, ItemLines] | None:
    """A ``Scan`` or ``Query`` response body as the body without its items
    (``"Items":[]``, for the ordinary parse) and the items as
    :class:`ItemLines`; ``None`` when the body has no items array to cut
    out. The count is checked later, against the response's ``Count``."""
    start = body.find(_ITEMS)
    if start < 0:
        return None
    start += len(_ITEMS)
    end = _items_end(body, start)
    if end is None:
        return None
    return body[:start] + body[end:], ItemLines(body, start, end)


def _items_end(body: bytes, start: int) -> int | None:
    # Inside the items, a "]" always closes a list wrapper and is followed by
    # "}"; a string's closing quote is never followed by a letter. So '],"'
    # and a letter is only ever the array's end followed by the next member.
    # Searched from the back: what follows the items is short.
    pos = len(body)
    while True:
        pos = body.rfind(b'],"', start, pos)
        if pos < 0:
            break
        if body[pos + 3 : pos + 4].isalpha():
            return pos
    # Or the array is the last member.
    tail = body.rstrip()
    if tail.endswith(b"]}") and len(tail) - 2 >= start:
        return len(tail) - 2
    return None


class EncodedLines(Sequence[Mapping[str, Any]]):
    """A page's items kept as text until they are written: what the export
    asks of :class:`ItemLines` and :class:`ObjectLines`."""

    __slots__ = ()

    def records(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The first ``limit`` items (all by default) as the records the
        export writes."""
        raise NotImplementedError

    def encoded(self, limit: int | None = None) -> tuple[bytes, int]:
        """The first ``limit`` items (all by default) as JSON Lines, and how
        many there are."""
        raise NotImplementedError


class ItemLines(EncodedLines):
    """A page's DynamoDB items, kept as the text they came in.

    Read as a sequence, it is the typed items as sent (what the page would
    hold otherwise), decoded on first use. :meth:`encoded` is the point:
    the items as plain JSON Lines, without decoding them."""

    __slots__ = ("_body", "_count", "_end", "_start", "_typed")

    def __init__(self, body: bytes, start: int, end: int, count: int | None = None) -> None:
        self._body = body
        self._start = start
        self._end = end
        self._count = count
        self._typed: list[dict[str, Any]] | None = None

    def set_count(self, count: int) -> None:
        """The response's ``Count``: how many items the text holds."""
        self._count = count

    def _items(self) -> list[dict[str, Any]]:
        if self._typed is None:
            from asyncpager.parsers._compiler import json_loads

            typed = json_loads(b"[" + self._body[self._start : self._end] + b"]")
            if self._count is not None and len(typed) != self._count:
                from asyncpager.errors import PaginationError

                raise PaginationError(
                    f"a DynamoDB page says Count={self._count} but holds {len(typed)} items"
                )
            self._typed = typed
        return self._typed

    def __len__(self) -> int:
        return self._count if self._count is not None else len(self._items())

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return self._items()[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._items())

    def __repr__(self) -> str:
        return f"ItemLines({len(self)} items, {self._end - self._start} bytes)"

    def __sizeof__(self) -> int:
        # The whole answer it keeps alive, for the engine's byte budget
        # (asyncpager._footprint); decoded items are left out: reading them
        # is the consumer's business, after the page was counted.
        return object.__sizeof__(self) + sys.getsizeof(self._body)

    def records(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The first ``limit`` items (all by default) as JSON-ready plain
        values (:func:`~asyncpager.convert.dynamodb_to_json_ready`)."""
        items = self._items() if limit is None else self._items()[:limit]
        return [dynamodb_to_json_ready(item) for item in items]

    def encoded(self, limit: int | None = None) -> tuple[bytes, int]:
        """The first ``limit`` items (all by default) as plain JSON Lines,
        and how many there are."""
        whole = limit is None or limit >= len(self)
        if whole and self._typed is None and self._count is not None:
            text = plain_lines(self._body[self._start : self._end], self._count)
            if text is not None:
                return text, self._count
        records = self.records(limit)
        return b"".join(map(plain_to_json_line, records)), len(records)


class LabelledLines(EncodedLines):
    """Encoded lines with the same fields added to every item: the labels
    (``_bucket``...) that tell the items of a listing of several sources
    apart. The records are ``{**item, **labels}``, as the export makes them
    of decoded items, and :meth:`encoded` writes the same bytes without
    decoding: each line's closing brace gets the fields' text before it.

    That is safe because a line is one JSON object whose strings escape
    every newline, so a newline is only ever a line's end and ``}`` the
    byte before it. Lines that already hold a label's name (an item's own
    field would be overwritten, in its place) or an empty object (no comma
    to add) are decoded and written the ordinary way instead."""

    __slots__ = ("_close", "_labels", "_lines", "_names")

    def __init__(self, lines: EncodedLines, labels: Mapping[str, Any]) -> None:
        self._lines = lines
        self._labels = dict(labels)
        # The writer's own text for the fields, so both ways write the same.
        self._close = b"," + plain_to_json(self._labels)[1:-1] + b"}\n"
        self._names = [plain_to_json(name) for name in self._labels]

    def records(self, limit: int | None = None) -> list[dict[str, Any]]:
        labels = self._labels
        return [{**item, **labels} for item in self._lines.records(limit)]

    def encoded(self, limit: int | None = None) -> tuple[bytes, int]:
        text, count = self._lines.encoded(limit)
        if not self._labels or not count:
            return text, count
        if text.startswith(b"{}\n") or b"\n{}\n" in text or any(n in text for n in self._names):
            records = self.records(limit)
            return b"".join(map(plain_to_json_line, records)), len(records)
        return text.replace(b"}\n", self._close), count

    def __len__(self) -> int:
        return len(self._lines)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return self.records()[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records())

    def __repr__(self) -> str:
        return f"LabelledLines({self._lines!r}, {self._labels!r})"


# -- S3 listings -----------------------------------------------------------------

# The element shapes the text path takes: ListObjectsV2's ``Contents`` with
# the members S3 sends unasked, in the model's order, with or without one
# checksum algorithm and its type. ``LastModified`` is matched as S3 writes
# it, with milliseconds, and rewritten as ISO 8601 after the split (below);
# a size is an integer as written.
_TEXT = rb"([^<]*)"
_ISO = (
    rb"([0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    rb"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{3})Z"
)
_HEAD = rb"<Contents><Key>" + _TEXT + rb"</Key><LastModified>" + _ISO + rb"</LastModified>"
# S3 quotes every ETag: the quotes are the lines' own.
_HEAD += rb"<ETag>&quot;([^<&]*)&quot;</ETag>"
_TAIL = rb"<Size>(0|[1-9][0-9]{0,17})</Size><StorageClass>" + _TEXT + rb"</StorageClass></Contents>"
_PLAIN_OBJECT = re.compile(_HEAD + _TAIL)
_CHECKSUM_OBJECT = re.compile(
    _HEAD
    + rb"(?:<ChecksumAlgorithm>([^<]+)</ChecksumAlgorithm><ChecksumType>([^<]+)</ChecksumType>)?"
    + _TAIL
)
_PLAIN_LINE = (
    b'{"Key":"%s","LastModified":"%s+00:00","ETag":"\\"%s\\"","Size":%s,"StorageClass":"%s"}\n'
)
_CHECKSUM_LINE = (
    b'{"Key":"%s","LastModified":"%s+00:00","ETag":"\\"%s\\"","ChecksumAlgorithm":["%s"],'
    b'"ChecksumType":"%s","Size":%s,"StorageClass":"%s"}\n'
)


def object_lines(run: bytes, references: int = 2, *, url_encoded: bool) -> ObjectLines | None:
    """A ListObjectsV2 page's run of ``<Contents>`` elements (checked by
    :mod:`asyncpager.parsers._xmlrun`'s rules: UTF-8, no character XML
    forbids, no ``]]>``, every ``&`` a reference) as the JSON Lines the
    export writes of the page's ``Contents`` in raw ``"json"`` mode: the
    members in the model's order, ``LastModified`` as the ISO 8601 text of
    botocore's datetime, ``Size`` a number. ``None`` for any other shape of
    element or a character reference. ``references`` is what the run was
    found to hold (as :attr:`asyncpager.parsers._xmlrun.UniformRun.references`:
    below 2, no character reference, and no search for one).

    The keys of a ``url_encoded`` page that holds ``%`` or ``+`` are
    decoded or not as botocore's handler decides after the parse (only
    where botocore itself asked for the encoding), so those lines are made
    by :meth:`ObjectLines.finish`."""
    if references > 1 and b"&#" in run:
        return None
    # Keys to decode are decoded one by one, after the run is read: what
    # they decode to may look like markup or references. S3 encodes
    # anything special in them, so any other reference, quote, backslash or
    # control character is a page for the ordinary parse.
    pending = url_encoded and (b"%" in run or b"+" in run)
    if pending and (
        run.count(b"&") != run.count(b"&quot;")
        or any(special in run for special in (b"\\", b'"', b"\t", b"\n"))
    ):
        return None
    from asyncpager.parsers._timestamps import zulu_is_utc

    if not zulu_is_utc():
        return None
    # JSON's escapes first, while the only quotes and backslashes are the
    # text's own (XML text holds no other control character than these two).
    text = run
    for raw, escaped in ((b"\\", b"\\\\"), (b'"', b'\\"'), (b"\t", b"\\t"), (b"\n", b"\\n")):
        if raw in text:
            text = text.replace(raw, escaped)
    # One pass reads every element; nothing may lie between two of them.
    checksums = b"<ChecksumType>" in text
    pattern = _CHECKSUM_OBJECT if checksums else _PLAIN_OBJECT
    parts = pattern.split(text)
    width = pattern.groups + 1
    if any(parts[::width]):
        return None
    count = len(parts) // width
    # isoformat() of the UTC datetime (the lines' format adds "+00:00"):
    # six digits of a fraction, none of a zero one. Rewritten here, field
    # by field, not in the text: two passes over it cost three times more.
    parts[2::width] = [
        when[:-4] if when.endswith(b".000") else when + b"000" for when in parts[2::width]
    ]
    if pending:
        return ObjectLines(None, count, partial(_object_lines, parts, width, checksums))
    return ObjectLines(_object_lines(parts, width, checksums, False), count)


def _object_lines(parts: list[bytes], width: int, checksums: bool, decode: bool) -> bytes:
    """The lines of a run split by the object pattern; ``decode``: its keys
    URL-decoded as botocore decodes them."""
    if decode:
        parts[1::width] = _decoded_keys(parts[1::width])
    fields = parts[1::width], *(parts[i::width] for i in range(2, width))
    objects = zip(*fields, strict=True)
    if not checksums:
        lines = b"".join([_PLAIN_LINE % fields for fields in objects])
    elif all(parts[4::width]):
        # Every object with its checksum, as S3 lists the objects written
        # since it adds one to each: no test per object.
        lines = b"".join([_CHECKSUM_LINE % fields for fields in objects])
    else:
        lines = b"".join([_checksum_line(fields) for fields in objects])
    # References last, "&amp;" after the others ("&amp;lt;" is the text
    # "&lt;"). Decoded keys had none, and may hold an "&" of their own.
    if not decode and b"&" in lines:
        lines = lines.replace(b"&quot;", b'\\"').replace(b"&apos;", b"'")
        lines = lines.replace(b"&lt;", b"<").replace(b"&gt;", b">").replace(b"&amp;", b"&")
    return lines


def _decoded_key(key: bytes) -> bytes:
    """A URL-encoded key as botocore decodes it (``unquote_plus``), as the
    JSON writer writes it (between its quotes)."""
    return plain_to_json(unquote_plus(key.decode("utf-8")))[1:-1]


#: A character the JSON writer escapes, but a line break (see _decoded_keys).
_JSON_ESCAPED = re.compile(r'[\x00-\x09\x0b-\x1f"\\]')


def _decoded_keys(keys: list[bytes]) -> list[bytes]:
    """:func:`_decoded_key` of each of a page's keys.

    Where S3 encodes every key (a folder named ``year=2024`` is
    ``year%3D2024``), one call per key cost about 4 us, as much as the rest
    of the key's line. The keys are decoded in one call instead, joined by
    line breaks: an encoded key holds none (S3 writes one as ``%0A``), and
    ``unquote_plus`` decodes each run of escapes on its own, so that no
    escape reaches across a break. Keys that decode to a line break are
    decoded one by one; keys the JSON writer would escape are written by
    it, one by one."""
    joined = b"\n".join(keys)
    if b"%0A" in joined or b"%0a" in joined:
        return [_decoded_key(key) for key in keys]
    text = unquote_plus(joined.decode("utf-8"))
    if _JSON_ESCAPED.search(text) is not None:
        return [plain_to_json(key)[1:-1] for key in text.split("\n")]
    return text.encode("utf-8").split(b"\n")


def _checksum_line(fields: tuple[bytes, ...]) -> bytes:
    if fields[3]:  # a checksum algorithm, and so its type
        return _CHECKSUM_LINE % fields
    key, modified, etag, _, _, size, storage = fields
    return _PLAIN_LINE % (key, modified, etag, size, storage)


def _read_lines(lines: bytes) -> list[dict[str, Any]]:
    """JSON Lines as dicts: with orjson, the whole page read as one array
    (a line holds no raw newline; 0.3 ms for 1,000 objects, against 2.4
    for ``json.loads`` line by line), else line by line. orjson reads what
    these lines hold as ``json.loads`` does; what it refuses (an escaped
    lone surrogate in a key) is read by ``json.loads``. (The one number of
    an object's line is its size, far inside the 64 bits where orjson and
    ``json.loads`` agree.)"""
    orjson = convert._orjson
    if orjson is not None and lines:
        body = lines[:-1] if lines.endswith(b"\n") else lines
        try:
            found: list[dict[str, Any]] = orjson.loads(b"[" + body.replace(b"\n", b",") + b"]")
        except orjson.JSONDecodeError:
            pass
        else:
            return found
    return [json.loads(line) for line in lines.splitlines()]


class ObjectLines(EncodedLines):
    """A ListObjectsV2 page's ``Contents``, kept as the JSON Lines
    :func:`object_lines` made of them. Read as a sequence, it is the dicts
    the raw ``"json"`` parse gives (timestamps as ISO 8601 text)."""

    __slots__ = ("_count", "_items", "_lines", "_make", "_split")

    def __init__(
        self, lines: bytes | None, count: int, make: Callable[[bool], bytes] | None = None
    ) -> None:
        self._lines = lines
        self._count = count
        self._make = make
        self._items: list[dict[str, Any]] | None = None
        self._split: list[bytes] | None = None

    def finish(self, decode: bool) -> None:
        """Make the lines of a page whose keys botocore may URL-decode:
        ``decode`` is its decision (see :func:`object_lines`)."""
        if self._make is not None:
            self._lines = self._make(decode)
            self._make = None

    @property
    def lines(self) -> bytes:
        """The page's objects as JSON Lines."""
        if self._lines is None:
            raise RuntimeError("the lines of this page were never finished (ObjectLines.finish)")
        return self._lines

    def _read(self) -> list[dict[str, Any]]:
        if self._items is None:
            self._items = _read_lines(self.lines)
        return self._items

    def __len__(self) -> int:
        return self._count

    def _each_line(self) -> list[bytes]:
        if self._split is None:
            self._split = self.lines.split(b"\n", self._count)[: self._count]
        return self._split

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if self._items is not None:
            return self._items[index]
        if isinstance(index, slice):
            if index.step not in (None, 1):
                return self._read()[index]
            # A shard's last page is cut at its bound, and a resumed page
            # after what was delivered: the rest stays lines, as it came.
            kept = self._each_line()[index]
            return ObjectLines(b"\n".join(kept) + b"\n" if kept else b"", len(kept))
        if index == -1:
            # The last key, read on every page to go on from.
            lines = self.lines
            return json.loads(lines[lines.rfind(b"\n", 0, -1) + 1 :])
        # One object (a bisection for a shard's bound reads a few).
        return json.loads(self._each_line()[index])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._read())

    def __repr__(self) -> str:
        return f"ObjectLines({self._count} objects)"

    def __sizeof__(self) -> int:
        # The lines it keeps, for the engine's byte budget.
        lines = self._lines
        return object.__sizeof__(self) + (sys.getsizeof(lines) if lines is not None else 0)

    def keys(self, step: int = 1) -> list[str]:
        """Every ``step``-th object's key, from the first."""
        lines = self.lines.split(b"\n", self._count)[: self._count : step]
        return [json.loads(line)["Key"] for line in lines]

    def records(self, limit: int | None = None) -> list[dict[str, Any]]:
        items = self._read()
        return items if limit is None else items[:limit]

    def encoded(self, limit: int | None = None) -> tuple[bytes, int]:
        if limit is None or limit >= self._count:
            return self.lines, self._count
        lines = self.lines.split(b"\n", limit)[:limit]
        return b"\n".join(lines) + b"\n" if lines else b"", len(lines)


def with_datetimes(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Objects of a page parsed in raw mode (``LastModified`` as the ISO 8601
    text of botocore's datetime) with ``LastModified`` a datetime again, as
    botocore's own parse has it: for a sink that types its columns. The
    records are changed in place."""
    fromiso = _dt.datetime.fromisoformat
    for record in records:
        when = record.get("LastModified")
        if type(when) is str:
            record["LastModified"] = fromiso(when)
    return records


class _ObjectView(RecordsView):
    """A ListObjectsV2 page's objects kept as :class:`ObjectLines` for a
    sink that reads them itself; cut by :meth:`head`, they stay lines."""

    __slots__ = ("lines",)

    def __init__(self, lines: ObjectLines) -> None:
        self.lines = lines

    def head(self, limit: int) -> Self:
        """The first ``limit`` objects, still lines."""
        if limit >= len(self.lines):
            return self
        return type(self)(ObjectLines(*self.lines.encoded(limit)))

    def __len__(self) -> int:
        return len(self.lines)


class ObjectColumns(_ObjectView):
    """A ListObjectsV2 page's objects as :class:`ObjectLines`, for a sink
    that reads JSON Lines into columns itself
    (:class:`~asyncpager.sinks.ParquetSink`: in C, by pyarrow). Making each
    object a dict (its timestamp a datetime), and converting every value
    again into its column, cost as much as the listing.

    Read as a sequence, it holds the records botocore's parse gives
    (:func:`with_datetimes`), made on first use."""

    __slots__ = ("_records",)

    def __init__(self, lines: ObjectLines) -> None:
        super().__init__(lines)
        self._records: list[dict[str, Any]] | None = None

    def records(self) -> list[dict[str, Any]]:
        """The objects as the records botocore's parse gives."""
        if self._records is None:
            self._records = with_datetimes([dict(r) for r in self.lines.records()])
        return self._records


class ObjectRows(_ObjectView):
    """A ListObjectsV2 page's objects as :class:`ObjectLines`, for a sink
    that writes each value as text (:class:`~asyncpager.sinks.CsvSink`):
    objects of the usual shape are made into its rows straight from the
    lines (:func:`object_csv_rows`).

    Read as a sequence, it holds the objects of the raw ``"json"`` parse
    (``LastModified`` the ISO 8601 text a CSV cell holds of botocore's
    datetime)."""

    __slots__ = ()

    def records(self) -> list[dict[str, Any]]:
        """The objects, their timestamps as text."""
        return self.lines.records()


#: The columns of an object line of the usual shape, in its order.
OBJECT_ROW_COLUMNS = ("Key", "LastModified", "ETag", "Size", "StorageClass")
#: The checksum S3 lists with every object written since it adds one itself.
_CHECKSUM_COLUMNS = ("ChecksumAlgorithm", "ChecksumType")
#: The columns of an object line with its checksum, in its order.
OBJECT_CHECKSUM_COLUMNS = (*OBJECT_ROW_COLUMNS[:3], *_CHECKSUM_COLUMNS, *OBJECT_ROW_COLUMNS[3:])
#: One such line whose cells a CSV writer would write as they are: a key
#: with no escape, quote or comma and no formula's first character (the
#: only cells the writer would quote or the sink guard), a quoted ETag of
#: hex digits and dashes (always quoted, its quotes doubled), with or
#: without one checksum algorithm (capitals and digits) and its type,
#: digits, a storage class in capitals.
_ROW_KEY = rb'\{"Key":"((?![=+\-@])[^"\\,]*)","LastModified":"([0-9T:.+\-]+)",'
_ROW_ETAG = rb'"ETag":"\\"([0-9a-fA-F\-]*)\\"",'
_ROW_TAIL = rb'"Size":([0-9]+),"StorageClass":"([A-Z_]+)"\}\n'
_OBJECT_ROW_LINE = re.compile(
    _ROW_KEY
    + _ROW_ETAG
    + rb'(?:"ChecksumAlgorithm":\["([A-Z0-9]+)"\],"ChecksumType":"([A-Z_]+)",)?'
    + _ROW_TAIL
)
#: Each column's cell in a row, and the groups of the line's pattern
#: (``_OBJECT_ROW_LINE``'s, numbered from 0) it is made of.
_CELLS: dict[str, tuple[bytes, tuple[int, ...]]] = {
    "Key": (b"%s", (0,)),
    "LastModified": (b"%s", (1,)),
    "ETag": (b'"""%s"""', (2,)),
    "ChecksumAlgorithm": (b'"[""%s""]"', (3,)),
    "ChecksumType": (b"%s", (4,)),
    "Size": (b"%s", (5,)),
    "StorageClass": (b"%s", (6,)),
}
_EMPTY: tuple[bytes, tuple[int, ...]] = (b"", ())
#: The extra column's cell of a checksum the columns leave out.
_CHECKSUM_EXTRA = (b'"{""ChecksumAlgorithm"":[""%s""],""ChecksumType"":""%s""}"', (3, 4))
#: The column orders a sink takes from records of these lines: the members
#: of the first, then those that first come later.
_ROW_LAYOUTS = (
    OBJECT_ROW_COLUMNS,
    OBJECT_CHECKSUM_COLUMNS,
    OBJECT_ROW_COLUMNS + _CHECKSUM_COLUMNS,
)


def object_row_columns(lines: ObjectLines) -> tuple[str, ...]:
    """The columns in the order a CSV sink takes them from the records of
    these lines (first come, first written): the usual shape's, with the
    checksum's where the first line has one, after them where a later line
    does. (Keys are JSON text: the quotes around a member's name are the
    line's own.)"""
    text = lines.lines
    found = text.find(b',"ChecksumAlgorithm":[')
    if found < 0:
        return OBJECT_ROW_COLUMNS
    return OBJECT_CHECKSUM_COLUMNS if found < text.find(b"\n") else _ROW_LAYOUTS[2]


class _RowShape(NamedTuple):
    """A row is ``form % fields(groups)``: the groups its cells are made of."""

    form: bytes
    fields: Callable[[Sequence[bytes]], tuple[bytes, ...]]
    groups: tuple[int, ...]


@cache
def _row_shapes(columns: tuple[str, ...], extra: bool) -> tuple[_RowShape, _RowShape]:
    """How a row in ``columns`` (one of ``_ROW_LAYOUTS``, then the extra
    column if ``extra``) is written of a line without a checksum, and of a
    line with one."""

    def shape(cells: list[tuple[bytes, tuple[int, ...]]]) -> _RowShape:
        groups = tuple(g for _, each in cells for g in each)
        # Every layout has five cells at least: itemgetter gives a tuple.
        fields = itemgetter(*groups)
        return _RowShape(b",".join(cell for cell, _ in cells) + b"\r\n", fields, groups)

    plain = [_EMPTY if c in _CHECKSUM_COLUMNS else _CELLS[c] for c in columns]
    full = [_CELLS[c] for c in columns]
    if extra:
        plain.append(_EMPTY)
        # Columns without the checksum: it goes to the extra column.
        full.append(_CHECKSUM_EXTRA if columns == OBJECT_ROW_COLUMNS else _EMPTY)
    return shape(plain), shape(full)


def object_csv_rows(lines: ObjectLines, columns: Sequence[str], extra: bool) -> bytes | None:
    """The CSV rows (CRLF-ended, in ``columns``, then the extra column if
    ``extra``) that the CSV sink writes of these objects, each formatted
    from the fields one split of the page read; ``None`` unless the columns
    are those the lines' records make (``_ROW_LAYOUTS``) and every object is
    a line of the usual shape, with or without its checksum, whose cells
    need no quoting or guard (see ``_OBJECT_ROW_LINE``), for the sink to
    write the records itself."""
    layout = tuple(columns)
    if layout not in _ROW_LAYOUTS:
        return None
    pattern = _OBJECT_ROW_LINE
    parts = pattern.split(lines.lines)
    width = pattern.groups + 1
    # Nothing may lie between two lines read.
    if len(parts) // width != len(lines) or any(parts[::width]):
        return None
    plain, full = _row_shapes(layout, extra)
    algorithms = parts[4::width]
    everyone = all(algorithms)
    if everyone or not any(algorithms):
        # One shape for the page (as S3 lists a bucket written before it
        # added checksums, or since): the fields in the row's order.
        form, _, groups = full if everyone else plain
        columns_of = (parts[1 + g :: width] for g in groups)
        return b"".join([form % fields for fields in zip(*columns_of, strict=True)])
    rows = zip(*(parts[i::width] for i in range(1, width)), strict=True)
    return b"".join(
        [
            full.form % full.fields(row) if row[3] is not None else plain.form % plain.fields(row)
            for row in rows
        ]
    )
