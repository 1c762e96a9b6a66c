"""Compile a botocore output shape into Python source that parses one response.

botocore parses a response by walking the output shape for every value: a
``getattr`` dispatch per node, a namespace regex per XML tag, a
``_build_name_to_xml_node`` dict per XML element, a ``value.get`` for every
member of every JSON structure whether present or not. The shape is the same
for every page, so here it is walked once and turned into straight-line
Python (``exec``): one function per structure, list and map, each doing only
the conversions its members need, with constants (tag tables, member tables)
bound as globals.

The generated code reproduces botocore's results value for value, type for
type and key order for key order, for well-formed responses. Whatever it does
not expect (a member twice, a list that is not a list, a body the tokenizer
rejects, a tag table gone wrong) raises, and the caller hands the response to
botocore's own parser, so odd input gets botocore's odd output or botocore's
error. Shapes it cannot reproduce cheaply (XML attributes, XML unions,
event streams, streaming payloads, JSON-valued headers) are not compiled at
all: :func:`compile_operation` returns ``None``.

Per protocol, what botocore does and what the generated code mirrors:

``rest-xml`` / ``query`` / ``ec2`` (``BaseXMLResponseParser``)
    Children are matched by tag with any ``{namespace}`` removed; a repeated
    tag is a flattened list (or, for any other member, something odd: fall
    back). Scalars come from ``.text`` (``None`` reads as ``""``): ``int``,
    ``float``, ``text == "true"``, the timestamp parser, ``b64decode``. A
    non-flattened list is every child of its wrapper, whatever their tag.
    Members come out in model order. ``query`` starts from the
    ``resultWrapper`` element and copies ``<ResponseMetadata>`` children;
    ``ec2`` copies ``<requestId>``; ``rest-xml`` puts ``ResponseMetadata``
    (``RequestId``, ``HostId`` from headers) first, then header members,
    then the body.
``json`` / ``rest-json`` (``BaseJSONParser``)
    A structure keeps the members that are present and not ``null``, in
    model order, renamed from their ``jsonName``; ``null`` structures stay
    ``None``; lists keep ``null`` items. ``json`` converts only blobs and
    timestamps (numbers and booleans pass through as decoded);
    ``rest-json`` also applies ``int``, ``float`` and ``ensure_boolean``.
    Lists and maps whose values need no conversion are returned as decoded
    (the decoded objects belong to this response alone), and maps are
    converted in place.
"""

from __future__ import annotations

import binascii
import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal
from xml.etree import ElementTree as ETree

from botocore.model import OperationModel, Shape
from botocore.utils import ensure_boolean

from asyncpager.parsers._timestamps import fast_timestamp, iso_timestamp, refresh_zones, zulu_epoch
from asyncpager.parsers._uniform import UNIFORM_NAMESPACE, VALUE, UniformField, UniformReader
from asyncpager.parsers._xmlrun import (
    PARSED_RUN,
    Field,
    RunSpec,
    UniformRun,
    run_spec,
    split,
    unescape,
)
from asyncpager.parsers._xmlrun import local_name as _local

__all__ = [
    "CompiledParser",
    "Fallback",
    "NotCompilable",
    "compile_operation",
    "default_blob_parser",
    "generated_source",
]

CompiledParser = Callable[[Mapping[str, Any]], dict[str, Any]]
Converter = Callable[[Any], Any]

XML_PROTOCOLS = frozenset({"rest-xml", "query", "ec2"})
JSON_PROTOCOLS = frozenset({"json", "rest-json"})
PROTOCOLS = XML_PROTOCOLS | JSON_PROTOCOLS

_SCALARS = frozenset(
    {"string", "character", "integer", "long", "float", "double", "boolean", "timestamp", "blob"}
)
_KNOWN_LOCATIONS = ("header", "headers", "statusCode")


class Fallback(Exception):
    """The compiled code declines this response; botocore's parser takes it."""


class NotCompilable(Exception):
    """The shape uses something the compiler does not reproduce."""


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_M = _Missing()


# -- tokenizers -------------------------------------------------------------------


#: Where the S3 error check leaves the tree it parsed, for the parser to reuse.
PARSED_ROOT = "asyncpager_xml_root"


def _xml_root(body: bytes) -> ETree.Element:
    # The same construction as botocore's ``_parse_xml_string_to_dom``: the
    # ``encoding`` argument overrides the document's declaration, so both
    # read the same text.
    parser = ETree.XMLParser(target=ETree.TreeBuilder(), encoding="utf-8")
    parser.feed(body)
    root: ETree.Element = parser.close()
    return root


def _json_stdlib(body: bytes) -> Any:
    return json.loads(body.decode("utf-8"))


try:
    import orjson

    _orjson_loads: Callable[[bytes], Any] | None = orjson.loads
except ImportError:  # pragma: no cover - orjson is optional
    _orjson_loads = None


# Every byte to ``0`` if it is a digit, ``x`` if not: a run of 19 zeros in the
# translated body is a number orjson may read differently (see below).
_DIGITS = bytes(0x30 if 0x30 <= i <= 0x39 else 0x78 for i in range(256))
_LONG_RUN = b"0" * 19


def _json_fast(body: bytes) -> Any:
    # orjson returns what json.loads returns for the documents both accept,
    # with one exception: an integer beyond 64 bits comes back as a float.
    # A body with 19 digits in a row (such an integer, or just a long number
    # inside a string) is read by json.loads instead; the check costs a
    # twentieth of the parse. What only json.loads accepts (NaN, 1e400, lone
    # surrogates) makes orjson raise, and botocore's parser takes the body;
    # so does a BOM, which json.loads refuses and botocore keeps as a message.
    if body[:3] == b"\xef\xbb\xbf":
        raise Fallback
    if body.translate(_DIGITS).find(_LONG_RUN) >= 0:
        return json.loads(body.decode("utf-8"))
    assert _orjson_loads is not None
    return _orjson_loads(body)


json_loads: Callable[[bytes], Any] = _json_stdlib if _orjson_loads is None else _json_fast


def _learn(known: dict[str, int], by_local: Mapping[str, int], tag: str) -> int:
    index = by_local.get(_local(tag), -1)
    if len(known) < 512:
        known[tag] = index
    return index


def _only_child(root: ETree.Element, name: str) -> ETree.Element:
    """``_build_name_to_xml_node(root)[name]``, for a tag that occurs once."""
    found = None
    for child in root:
        if _local(child.tag) == name:
            if found is not None:
                raise Fallback
            found = child
    if found is None:
        raise Fallback
    return found


def _query_metadata(root: ETree.Element) -> dict[str, Any] | None:
    """``QueryParser._inject_response_metadata``: the ``<ResponseMetadata>``
    children as text."""
    node = None
    for child in root:
        if _local(child.tag) == "ResponseMetadata":
            if node is not None:
                raise Fallback
            node = child
    if node is None:
        return None
    out: dict[str, Any] = {}
    for child in node:
        key = _local(child.tag)
        if key in out:
            raise Fallback
        out[key] = child.text
    return out


def _ec2_metadata(root: ETree.Element) -> dict[str, Any] | None:
    """``EC2QueryParser._inject_response_metadata``: ``<requestId>``."""
    node = None
    for child in root:
        if _local(child.tag) == "requestId":
            if node is not None:
                raise Fallback
            node = child
    if node is None:
        return None
    return {"RequestId": node.text}


def _rest_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    """``BaseRestParser._populate_response_metadata``."""
    metadata = {}
    if "x-amzn-requestid" in headers:
        metadata["RequestId"] = headers["x-amzn-requestid"]
    elif "x-amz-request-id" in headers:
        metadata["RequestId"] = headers["x-amz-request-id"]
        metadata["HostId"] = headers.get("x-amz-id-2", "")
    return metadata


def _header_map(prefix: str, headers: Mapping[str, str]) -> dict[str, str]:
    """``BaseRestParser._parse_header_map``."""
    parsed = {}
    for name in headers:
        if name.lower().startswith(prefix):
            parsed[name[len(prefix) :]] = headers[name]
    return parsed


def _header_list(value: Any) -> Any:
    """``BaseRestParser._handle_list`` for a header: comma separated."""
    if not isinstance(value, list):
        return [e.strip() for e in value.split(",")]
    return value


def _xml_empty() -> ETree.Element:
    return ETree.Element("")


# -- code generation --------------------------------------------------------------


#: ``False``: botocore's values. ``True``: values as sent wherever a
#: conversion can be skipped. ``"json"``: as ``True``, with timestamps as the
#: ISO 8601 text the JSON writers make of botocore's datetimes. ``"lines"``:
#: as ``"json"``, with the items of a DynamoDB ``Scan`` or ``Query`` page and
#: the objects of an S3 ``ListObjectsV2`` page kept as text that the JSON
#: Lines writer takes as it is (:mod:`asyncpager.item_lines`).
RawMode = bool | Literal["json", "lines"]


def _shape_key(shape: Shape) -> tuple[str, str, str]:
    # Member references may carry their own serialization (locationName,
    # flattened), so the same named shape can need two functions.
    return (shape.name, shape.type_name, json.dumps(shape.serialization, sort_keys=True))


class _Generator:
    """Source for one operation: functions named ``f0``, ``f1``... plus the
    constants they read, then one ``parse(response)`` entry point."""

    def __init__(
        self,
        protocol: str,
        timestamp: Converter,
        blob: Converter,
        raw: RawMode,
        keep: frozenset[str] = frozenset(),
    ) -> None:
        self.protocol = protocol
        self.xml = protocol in XML_PROTOCOLS
        # The mode of the code being generated: raw everywhere in raw mode,
        # except under the output's members named in ``keep`` (see
        # ``_mode_for``). In raw "json" mode timestamps become the ISO 8601
        # text the JSON writers make of botocore's datetimes.
        self.raw = bool(raw)
        self.iso = raw in ("json", "lines")
        self.keep = keep
        self._root: tuple[str, str, str] | None = None
        self.lines: list[str] = []
        self.names: dict[tuple[Any, ...], str] = {}
        self.namespace: dict[str, Any] = {
            "_M": _M,
            "_Fallback": Fallback,
            "_ts": timestamp,
            "_iso": iso_timestamp,
            "_blob": blob,
            "_learn": _learn,
            "_local": _local,
            "_xml_root": _xml_root,
            "_xml_empty": _xml_empty,
            "_split": split,
            "_json_loads": json_loads,
            "_only_child": _only_child,
            "_query_metadata": _query_metadata,
            "_ec2_metadata": _ec2_metadata,
            "_rest_metadata": _rest_metadata,
            "_header_map": _header_map,
            "_header_list": _header_list,
            "_ensure_boolean": ensure_boolean,
            "_refresh_zones": refresh_zones,
            "int": int,
            "float": float,
        }
        self._identity: dict[tuple[bool, tuple[str, str, str]], bool] = {}
        self._counter = 0
        # Member tables name functions that exist only once the source is
        # executed; they are resolved then (see ``link``).
        self._tables: list[dict[str, tuple[str, str | None, bool]]] = []
        # Per structure function: its member table (JSON name -> member
        # name, converter, same name) and the keys needing nothing, which
        # loops over many one-key objects read to skip the call.
        self.tables: dict[str, tuple[str, str]] = {}

    @contextlib.contextmanager
    def _mode_for(self, shape: Shape, member_name: str) -> Iterator[None]:
        """Raw mode stops at the output's members in ``keep``: the caller
        sends them back as they are (a DynamoDB ``LastEvaluatedKey`` becomes
        the next ``ExclusiveStartKey``, and botocore would encode a blob
        left as base64 text a second time), so they are converted as botocore
        does."""
        if not (self.raw and member_name in self.keep and _shape_key(shape) == self._root):
            yield
            return
        self.raw = False
        try:
            yield
        finally:
            self.raw = True

    def _name(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def constant(self, prefix: str, value: Any) -> str:
        name = self._name(prefix)
        self.namespace[name] = value
        return name

    def link(self) -> None:
        """Replace function names in member tables with the functions."""
        namespace = self.namespace
        for table in self._tables:
            for key, (member_name, convert, same) in table.items():
                function = None if convert is None else namespace[convert]
                table[key] = (member_name, function, same)

    def emit(self, lines: Iterable[str]) -> None:
        self.lines.extend(lines)
        self.lines.append("")

    # -- identity (JSON): which values come out exactly as decoded ------------

    def is_identity(self, shape: Shape) -> bool:
        """True when botocore returns *any* decoded JSON value of ``shape``
        unchanged: unconverted scalars (botocore's default handler returns
        whatever it is given) and documents. In raw mode also containers of
        such values, unchecked (see :meth:`raw_identities`)."""
        known = self._identity.get((self.raw, _shape_key(shape)))
        if known is not None:
            return known
        kind = shape.type_name
        if kind == "timestamp":
            return self.raw and not self.iso
        if kind == "blob":
            return self.raw
        if kind in ("integer", "long", "float", "double", "boolean"):
            return self.protocol == "json" or self.raw
        if kind in ("string", "character"):
            return True
        if kind == "structure":
            # botocore drops unknown keys and nulls and orders members.
            return bool(shape.is_document_type)
        if kind in ("list", "map"):
            # botocore iterates a list member's value whatever it is (a
            # string becomes a list of characters), so a container is never
            # passed through without a type check.
            return False
        raise NotCompilable(f"unknown type {kind}")

    def raw_identities(self, root: Shape) -> None:
        """Raw mode: which containers can be handed over as decoded, as a
        greatest fixed point over the (possibly recursive) shape graph: a
        container passes through when everything in it does and no member
        is renamed."""
        shapes: dict[tuple[str, str, str], Shape] = {}
        stack = [root]
        while stack:
            shape = stack.pop()
            key = _shape_key(shape)
            if key in shapes:
                continue
            shapes[key] = shape
            stack.extend(_children(shape))
        value = {key: self.is_identity(shape) for key, shape in shapes.items()}
        for key, shape in shapes.items():
            if shape.type_name in ("list", "map", "structure") and not value[key]:
                value[key] = True
        changed = True
        while changed:
            changed = False
            for key, shape in shapes.items():
                if not value[key] or shape.type_name not in ("list", "map", "structure"):
                    continue
                if shape.type_name == "structure" and shape.is_document_type:
                    continue
                ok = all(value[_shape_key(child)] for child in _children(shape))
                if shape.type_name == "structure":
                    ok = ok and all(
                        member.serialization.get("name", name) == name
                        for name, member in shape.members.items()
                    )
                if not ok:
                    value[key] = False
                    changed = True
        self._identity.update({(True, key): known for key, known in value.items()})

    def container_type(self, shape: Shape) -> str | None:
        """``"list"``/``"dict"`` when a value of ``shape`` comes out unchanged
        once it is known to be a list/dict (of values that always do)."""
        if shape.type_name == "list" and self.is_identity(shape.member):
            return "list"
        if (
            shape.type_name == "map"
            and self.is_identity(shape.key)
            and self.is_identity(shape.value)
        ):
            return "dict"
        return None

    # -- JSON -------------------------------------------------------------------

    def json_value(self, shape: Shape, var: str) -> str:
        """An expression converting the decoded, non-null ``var``."""
        if self.is_identity(shape):
            return var
        container = self.container_type(shape)
        if container is not None:
            return f"({var} if type({var}) is {container} else _fail())"
        kind = shape.type_name
        if kind == "timestamp":
            return f"_iso({var})" if self.raw else f"_ts({var})"
        if kind == "blob":
            return f"_blob({var})"
        if kind in ("integer", "long"):
            return f"int({var})"
        if kind in ("float", "double"):
            return f"float({var})"
        if kind == "boolean":
            return f"_ensure_boolean({var})"
        return f"{self.json_function(shape)}({var})"

    def json_function(self, shape: Shape) -> str:
        key = ("json", self.raw, *_shape_key(shape))
        name = self.names.get(key)
        if name is not None:
            return name
        name = self._name("f")
        self.names[key] = name
        kind = shape.type_name
        if kind == "structure":
            # Named before the body is generated: recursive shapes use it.
            self.tables[name] = (self.constant("U", {}), self.constant("P", frozenset()))
            self._json_structure(shape, name)
        elif kind == "list":
            self._json_list(shape, name)
        elif kind == "map":
            self._json_map(shape, name)
        else:  # pragma: no cover - scalars are expressions
            raise NotCompilable(kind)
        return name

    def _json_members(self, shape: Shape) -> list[tuple[str, str, Shape]]:
        return [
            (name, member.serialization.get("name", name), member)
            for name, member in shape.members.items()
        ]

    def _json_structure(self, shape: Shape, name: str) -> None:
        members = self._json_members(shape)
        walk = name + "_walk"
        body = [f"def {walk}(v):", "    r = {}"]
        converters: dict[str, str | None] = {}
        for member_name, json_name, member in members:
            with self._mode_for(shape, member_name):
                value = self.json_value(member, "x")
                converters[json_name] = (
                    None if self.is_identity(member) else self._json_converter(member)
                )
            body += [
                f"    x = v.get({json_name!r})",
                "    if x is not None:",
                f"        r[{member_name!r}] = {value}",
            ]
        body.append("    return r")
        self.emit(body)

        # One key present: the common case of a union-like structure (a
        # DynamoDB AttributeValue). Its output has that one member, or
        # nothing if the key is unknown.
        table = {
            json_name: (member_name, converters[json_name], json_name == member_name)
            for member_name, json_name, _ in members
        }
        self._tables.append(table)
        table_name, plain = self.tables[name]
        self.namespace[table_name] = table
        # Keys whose one-key object comes out exactly as decoded.
        self.namespace[plain] = frozenset(
            key for key, (_, convert, same) in table.items() if convert is None and same
        )
        union = shape.is_tagged_union
        lines = [
            f"def {name}(v):",
            "    if v is None:",
            "        return None",
            "    if type(v) is dict and len(v) == 1:",
            "        (k,) = v",
            "        x = v[k]",
            "        if x is not None:",
            f"            e = {table_name}.get(k)",
            "            if e is not None:",
            "                n, fn, same = e",
            "                if fn is None:",
            "                    return v if same else {n: x}",
            "                y = fn(x)",
            "                if same:",
            "                    if y is not x:",
            "                        v[k] = y",
            "                    return v",
            "                return {n: y}",
        ]
        if union:
            lines += [
                "            elif k != '__type':",
                "                return {'SDK_UNKNOWN_MEMBER': {'name': k}}",
                # botocore: zero members set after dropping __type and nulls.
                "            raise _Fallback",
                "        raise _Fallback",
            ]
        else:
            lines += ["            else:", "                return {}"]
        if union:
            names = self.constant("N", frozenset(table))
            lines += [
                "    cleaned = v.copy()",
                "    cleaned.pop('__type', None)",
                "    cleaned = {a: b for a, b in cleaned.items() if b is not None}",
                "    if len(cleaned) != 1:",
                "        raise _Fallback",
                "    (tag,) = cleaned",
                f"    if tag not in {names}:",
                "        return {'SDK_UNKNOWN_MEMBER': {'name': tag}}",
            ]
        if not members:
            lines.append("    return {}")
        else:
            lines.append(f"    return {walk}(v)")
        self.emit(lines)

    def _json_converter(self, shape: Shape) -> str:
        """A callable (by name) converting one non-null value."""
        kind = shape.type_name
        if kind == "timestamp":
            return "_iso" if self.raw else "_ts"
        if kind == "blob":
            return "_blob"
        if kind in ("integer", "long"):
            return "int"
        if kind in ("float", "double"):
            return "float"
        if kind == "boolean":
            return "_ensure_boolean"
        return self.json_function(shape)

    def _skip_check(self, function: str, var: str, indent: str) -> list[str]:
        """The one-key path of structure ``function`` inlined into a loop
        over many such objects (DynamoDB's ``{"S": "..."}``, ``{"B": "..."}``):
        leaves ``var`` as it is or converts it in place and ``continue``s, or
        falls through to a call of ``function`` for anything else."""
        table, plain = self.tables[function]
        return [
            f"{indent}if type({var}) is dict and len({var}) == 1:",
            f"{indent}    (a,) = {var}",
            f"{indent}    if a in {plain}:",
            f"{indent}        if {var}[a] is not None:",
            f"{indent}            continue",
            f"{indent}    else:",
            f"{indent}        e = {table}.get(a)",
            f"{indent}        if e is not None and e[2]:",
            f"{indent}            y = {var}[a]",
            f"{indent}            if y is not None:",
            f"{indent}                z = e[1](y)",
            f"{indent}                if z is not y:",
            f"{indent}                    {var}[a] = z",
            f"{indent}                continue",
        ]

    def _json_list(self, shape: Shape, name: str) -> None:
        member = shape.member
        lines = [f"def {name}(v):", "    if type(v) is not list:", "        raise _Fallback"]
        if self.is_identity(member):
            lines.append("    return v")
        elif member.type_name == "structure":
            # Converted in place: the decoded list belongs to this response.
            # Structure functions map None to None themselves.
            function = self.json_function(member)
            lines += [
                "    for n in range(len(v)):",
                "        x = v[n]",
                *self._skip_check(function, "x", "        "),
                f"        y = {function}(x)",
                "        if y is not x:",
                "            v[n] = y",
                "    return v",
            ]
        else:
            value = self.json_value(member, "i")
            lines.append(f"    return [None if i is None else {value} for i in v]")
        self.emit(lines)

    def _json_map(self, shape: Shape, name: str) -> None:
        key, value = shape.key, shape.value
        lines = [f"def {name}(v):", "    if type(v) is not dict:", "        raise _Fallback"]
        if self.is_identity(key) and self.is_identity(value):
            lines.append("    return v")
        elif self.is_identity(key):
            # botocore hands a null map value to the value's handler too: a
            # structure gives None, anything else raises (so: fall back).
            convert = self._json_converter(value)
            if value.type_name != "structure":
                lines += [
                    "    for k, x in v.items():",
                    "        if x is None:",
                    "            raise _Fallback",
                    f"        y = {convert}(x)",
                    "        if y is not x:",
                    "            v[k] = y",
                ]
            else:
                lines += [
                    "    for k, x in v.items():",
                    *self._skip_check(convert, "x", "        "),
                    f"        y = {convert}(x)",
                    "        if y is not x:",
                    "            v[k] = y",
                ]
            lines.append("    return v")
        else:
            lines += [
                "    r = {}",
                "    for k, x in v.items():",
                "        if x is None:",
                "            raise _Fallback",
                f"        r[{self.json_value(key, 'k')}] = {self.json_value(value, 'x')}",
                "    return r",
            ]
        self.emit(lines)

    # -- XML --------------------------------------------------------------------

    def text_value(self, shape: Shape, text: str) -> str:
        """An expression converting ``text``, the text of a scalar element."""
        kind = shape.type_name
        if kind in ("string", "character"):
            return text
        if kind in ("integer", "long"):
            return f"int({text})"
        if kind in ("float", "double"):
            return f"float({text})"
        if kind == "boolean":
            return f"({text} == 'true')"
        if kind == "timestamp":
            if not self.raw:
                return f"_ts({text})"
            return f"_iso({text})" if self.iso else text
        if kind == "blob":
            return text if self.raw else f"_blob({text})"
        raise NotCompilable(f"not a scalar: {kind}")

    def xml_value(self, shape: Shape, var: str) -> str:
        """An expression converting the element ``var``."""
        kind = shape.type_name
        if kind in _SCALARS:
            return self.text_value(shape, f"({var}.text or '')")
        if kind == "list" and shape.serialization.get("flattened"):
            # A lone element standing for a flattened list.
            return f"[{self.xml_value(shape.member, var)}]"
        if kind == "map" and shape.serialization.get("flattened"):
            return f"{self.xml_function(shape)}(({var},))"
        if kind == "map":
            return f"{self.xml_function(shape)}({var})"
        return f"{self.xml_function(shape)}({var})"

    def xml_function(self, shape: Shape) -> str:
        key = ("xml", self.raw, *_shape_key(shape))
        name = self.names.get(key)
        if name is not None:
            return name
        name = self._name("f")
        self.names[key] = name
        kind = shape.type_name
        if kind == "structure":
            self._xml_structure(shape, name)
        elif kind == "list":
            self._xml_list(shape, name)
        elif kind == "map":
            self._xml_map(shape, name)
        else:
            raise NotCompilable(f"unknown type {kind}")
        return name

    def _xml_list(self, shape: Shape, name: str) -> None:
        value = self.xml_value(shape.member, "c")
        self.emit([f"def {name}(node):", f"    return [{value} for c in node]"])

    def _xml_map(self, shape: Shape, name: str) -> None:
        key_name = shape.key.serialization.get("name") or "key"
        value_name = shape.value.serialization.get("name") or "value"
        self.emit(
            [
                f"def {name}(entries):",
                "    r = {}",
                "    for e in entries:",
                "        k = x = _M",
                "        for p in e:",
                "            t = _local(p.tag)",
                f"            if t == {key_name!r}:",
                f"                k = {self.xml_value(shape.key, 'p')}",
                f"            elif t == {value_name!r}:",
                f"                x = {self.xml_value(shape.value, 'p')}",
                "            else:",
                "                raise _Fallback",
                "        if k is _M or x is _M:",
                "            raise _Fallback",
                "        r[k] = x",
                "    return r",
            ]
        )

    def _xml_structure(self, shape: Shape, name: str) -> None:
        if shape.is_tagged_union:
            raise NotCompilable("XML union")
        if shape.is_document_type:
            raise NotCompilable("XML document")
        members: list[tuple[str, Shape, str, bool]] = []
        for member_name, member in shape.members.items():
            serialization = member.serialization
            if serialization.get("location") in _KNOWN_LOCATIONS or serialization.get(
                "eventheader"
            ):
                continue
            if serialization.get("xmlAttribute"):
                raise NotCompilable("XML attribute")
            flattened = bool(member.type_name in ("list", "map") and serialization.get("flattened"))
            members.append((member_name, member, _xml_member_name(member, member_name), flattened))
        xml_names = [m[2] for m in members]
        if len(set(xml_names)) != len(xml_names):
            raise NotCompilable("two members share an XML name")
        if not members:
            self.emit([f"def {name}(node):", "    return {}"])
            return
        by_local = {xml_name: index for index, xml_name in enumerate(xml_names)}
        known = self.constant("K", dict[str, int]())
        local = self.constant("L", by_local)
        count = len(members)
        lines = [f"def {name}(node):"]
        lines.append("    " + " = ".join(f"v{i}" for i in range(count)) + " = _M")
        lines += [
            "    for c in node:",
            "        t = c.tag",
            f"        i = {known}.get(t)",
            "        if i is None:",
            f"            i = _learn({known}, {local}, t)",
            "        if i < 0:",
            "            continue",
        ]

        def branch(index: int, indent: str) -> list[str]:
            _, member, _, flattened = members[index]
            if flattened:
                return [
                    f"{indent}if v{index} is _M:",
                    f"{indent}    v{index} = [c]",
                    f"{indent}else:",
                    f"{indent}    v{index}.append(c)",
                ]
            with self._mode_for(shape, members[index][0]):
                value = self.xml_value(member, "c")
            return [
                f"{indent}if v{index} is not _M:",
                f"{indent}    raise _Fallback",
                f"{indent}v{index} = {value}",
            ]

        def dispatch(lo: int, hi: int, indent: str) -> list[str]:
            # A binary search over the member index: log2(n) comparisons for
            # EC2's sixty-member structures, one for S3's small ones.
            if hi - lo == 1:
                return branch(lo, indent)
            if hi - lo <= 3:
                out: list[str] = []
                for index in range(lo, hi):
                    keyword = "if" if index == lo else ("elif" if index < hi - 1 else "else")
                    out.append(
                        f"{indent}{keyword} i == {index}:"
                        if keyword != "else"
                        else f"{indent}else:"
                    )
                    out += branch(index, indent + "    ")
                return out
            mid = (lo + hi) // 2
            return [
                f"{indent}if i < {mid}:",
                *dispatch(lo, mid, indent + "    "),
                f"{indent}else:",
                *dispatch(mid, hi, indent + "    "),
            ]

        lines += dispatch(0, count, "        ")
        lines.append("    r = {}")
        for index, (member_name, member, _, flattened) in enumerate(members):
            lines.append(f"    if v{index} is not _M:")
            with self._mode_for(shape, member_name):
                if flattened and member.type_name == "list":
                    value = self.xml_value(member.member, "c")
                    lines.append(f"        r[{member_name!r}] = [{value} for c in v{index}]")
                elif flattened:
                    function = self.xml_function(member)
                    lines.append(f"        r[{member_name!r}] = {function}(v{index})")
                else:
                    lines.append(f"        r[{member_name!r}] = v{index}")
        lines.append("    return r")
        self.emit(lines)

    def xml_run(self, spec: RunSpec) -> str:
        """A function turning the matches of :func:`split` into the run's
        list, as the structure walker would from the same elements."""
        name = self._name("run")
        self.namespace["_unescape"] = unescape

        def text(var: str, tag: str) -> list[str]:
            # A match of ``<tag>text</tag>``: the text, references replaced.
            return [
                f"{var} = {var}[{len(tag) + 2}:{-(len(tag) + 3)}]",
                f"if '&' in {var}:",
                f"    {var} = _unescape({var})",
            ]

        def indent(lines: list[str], by: str) -> list[str]:
            return [by + line for line in lines]

        # A page whose elements all hold the same members is read by one
        # comprehension (asyncpager.parsers._uniform); any other, here.
        self.namespace["_UniformRun"] = UniformRun
        self.namespace.update(UNIFORM_NAMESPACE)
        fields = tuple(self._uniform_field(f) for f in spec.fields)
        reader = self.constant("U", UniformReader(fields, self.namespace, zulu_epoch))
        lines = [
            f"def {name}(run):",
            "    if type(run) is _UniformRun:",
            f"        return {reader}.read(run)",
            "    out = []",
            "    for g in run:",
            "        r = {}",
        ]
        for field in spec.fields:
            lines.append(f"        x = g[{field.group}]")
            lines.append("        if x:")
            body: list[str] = []
            if field.kind == "scalar":
                body += text("x", field.tag)
                body.append(f"r[{field.name!r}] = {self.text_value(field.shape, 'x')}")
            elif field.kind == "list":
                items = self.constant("I", spec.items[field.tag])
                value = self.text_value(field.shape.member, "(t if '&' not in t else _unescape(t))")
                body.append(f"r[{field.name!r}] = [{value} for t in {items}.findall(x)]")
            else:
                body.append("s = {}")
                for inner in field.members:
                    body += [f"y = g[{inner.group}]", "if y:"]
                    body += indent(text("y", inner.tag), "    ")
                    body.append(f"    s[{inner.name!r}] = {self.text_value(inner.shape, 'y')}")
                body.append(f"r[{field.name!r}] = s")
            lines += indent(body, "            ")
        lines += ["        out.append(r)", "    return out"]
        self.emit(lines)
        return name

    def _uniform_field(self, field: Field) -> UniformField:
        if field.kind == "structure":
            members = tuple(self._uniform_field(m) for m in field.members)
            return UniformField(field.name, "structure", members=members)
        shape = field.shape.member if field.kind == "list" else field.shape
        text = self.text_value(shape, VALUE)
        # Inline, a ZULU text costs a quarter of the call to fast_timestamp,
        # whose fast path it is.
        inline = (
            shape.type_name == "timestamp"
            and not self.raw
            and self.namespace["_ts"] is fast_timestamp
        )
        zulu = f"(_zulu + (_fromiso({VALUE}) - _naive_epoch))" if inline else ""
        return UniformField(field.name, field.kind, text, zulu)

    # -- entry points -------------------------------------------------------------

    def entry(self, operation: OperationModel) -> None:
        shape = operation.output_shape
        if shape is None:
            raise NotCompilable("no output shape")
        if operation.has_streaming_output or operation.has_event_stream_output:
            raise NotCompilable("streaming output")
        if getattr(shape, "event_stream_name", None):
            raise NotCompilable("event stream")
        protocol = self.protocol
        self._root = _shape_key(shape)
        if self.raw and not self.xml:
            self.raw_identities(shape)
        lines = ["def parse(response):", "    _refresh_zones()"]
        if protocol == "json":
            lines += [
                "    body = response['body']",
                "    obj = _json_loads(body) if body else {}",
                f"    parsed = {self._json_top(shape, 'obj')}",
                "    headers = response['headers']",
                "    if 'x-amzn-requestid' in headers:",
                "        parsed.setdefault('ResponseMetadata', {})['RequestId'] = "
                "headers['x-amzn-requestid']",
                "    return parsed",
            ]
        elif protocol in ("query", "ec2"):
            start = "root"
            wrapper = shape.serialization.get("resultWrapper")
            lines += ["    root = _xml_root(response['body'])"]
            if wrapper:
                lines.append(f"    start = _only_child(root, {wrapper!r})")
                start = "start"
            lines.append(f"    parsed = {self.xml_function(shape)}({start})")
            metadata = "_query_metadata" if protocol == "query" else "_ec2_metadata"
            lines += [
                f"    metadata = {metadata}(root)",
                "    if metadata is not None:",
                "        parsed['ResponseMetadata'] = metadata",
                "    return parsed",
            ]
        else:
            lines += [
                "    headers = response['headers']",
                "    final = {'ResponseMetadata': _rest_metadata(headers)}",
            ]
            lines += self._rest_headers(shape)
            lines += self._rest_payload(shape)
            lines.append("    return final")
        self.emit(lines)

    def _json_top(self, shape: Shape, var: str) -> str:
        # A null body document: botocore's structure handler gives None and
        # then fails to add metadata; leave that to botocore.
        return f"{self.json_function(shape)}({var}) if {var} is not None else _fail()"

    def _rest_headers(self, shape: Shape) -> list[str]:
        lines: list[str] = []
        for member_name, member in shape.members.items():
            serialization = member.serialization
            location = serialization.get("location")
            if location is None:
                continue
            if location == "statusCode":
                value = self._header_scalar(member, "response['status_code']")
                lines.append(f"    final[{member_name!r}] = {value}")
            elif location == "headers":
                prefix = serialization.get("name", "").lower()
                lines.append(f"    final[{member_name!r}] = _header_map({prefix!r}, headers)")
            elif location == "header":
                header = serialization.get("name", member_name)
                value = self._header_scalar(member, f"headers[{header!r}]")
                lines += [
                    f"    if {header!r} in headers:",
                    f"        final[{member_name!r}] = {value}",
                ]
        return lines

    def _header_scalar(self, shape: Shape, var: str) -> str:
        kind = shape.type_name
        if kind in ("string", "character"):
            if shape.serialization.get("jsonvalue"):
                raise NotCompilable("JSON-valued header")
            return var
        if kind in ("integer", "long"):
            return f"int({var})"
        if kind in ("float", "double"):
            return f"float({var})"
        if kind == "boolean":
            if self.xml:
                return f"({var} == 'true')"
            return f"_ensure_boolean({var})"
        if kind == "timestamp":
            return f"_ts({var})"
        if kind == "blob":
            return f"_blob({var})"
        if kind == "list" and shape.member.type_name in ("string", "character"):
            if shape.member.serialization.get("jsonvalue"):
                raise NotCompilable("JSON-valued header")
            return f"_header_list({var})"
        raise NotCompilable(f"{kind} in a header")

    def _rest_payload(self, shape: Shape) -> list[str]:
        if self.xml:
            root = [
                "    body = response['body']",
                # S3's body was already parsed once to look for an error
                # hidden in a 200 answer (see _install.py): reuse that tree.
                f"    root = response.pop({PARSED_ROOT!r}, None)",
                "    if root is None:",
                "        root = _xml_root(body) if body else _xml_empty()",
            ]
        else:
            root = [
                "    body = response['body']",
                "    root = _json_loads(body) if body else {}",
            ]
        payload = shape.serialization.get("payload")
        if payload is not None:
            body_shape = shape.members[payload]
            if body_shape.serialization.get("eventstream"):
                raise NotCompilable("event stream payload")
            if body_shape.type_name in ("string", "blob"):
                raise NotCompilable("raw payload")
            value = (
                self.xml_value(body_shape, "root")
                if self.xml
                else self._json_top(body_shape, "root")
            )
            return [*root, f"    final[{payload!r}] = {value}"]
        value = f"{self.xml_function(shape)}(root)" if self.xml else self._json_top(shape, "root")
        spec = run_spec(shape) if self.xml else None
        if spec is None:
            return [*root, f"    final.update({value})"]
        # The run is read by one expression when it has the strict form
        # (see _xmlrun.py); the tree holds the rest, with an empty element
        # where the run stood.
        with self._mode_for(shape, spec.member):
            run = self.xml_run(spec)
        spec_name = self.constant("S", spec)
        return [
            "    body = response['body']",
            f"    root = response.pop({PARSED_ROOT!r}, None)",
            f"    run = response.pop({PARSED_RUN!r}, None)",
            "    if root is None:",
            f"        parts = _split(body, {spec_name}, _xml_root) if body else None",
            "        if parts is None:",
            "            root = _xml_root(body) if body else _xml_empty()",
            "        else:",
            "            root, run = parts",
            f"    final.update({value})",
            "    if run is not None:",
            f"        if final.get({spec.member!r}) != [{{}}]:",
            "            raise _Fallback",
            f"        final[{spec.member!r}] = {run}(run)",
        ]


def _children(shape: Shape) -> list[Shape]:
    kind = shape.type_name
    if kind == "list":
        return [shape.member]
    if kind == "map":
        return [shape.key, shape.value]
    if kind == "structure" and not shape.is_document_type:
        return list(shape.members.values())
    return []


def _fail() -> Any:
    raise Fallback


def _xml_member_name(member: Shape, member_name: str) -> str:
    """``BaseXMLResponseParser._member_key_name``."""
    if member.type_name == "list" and member.serialization.get("flattened"):
        name = member.member.serialization.get("name")
        if name is not None:
            return str(name)
    name = member.serialization.get("name")
    if name is not None:
        return str(name)
    return member_name


# -- the cache ---------------------------------------------------------------------

_CACHE: dict[tuple[Any, ...], tuple[CompiledParser | None, str]] = {}


# ``base64.b64decode(value)`` (botocore's default blob parser) is
# ``binascii.a2b_base64`` behind an ASCII check that a2b_base64 also makes.
default_blob_parser: Converter = binascii.a2b_base64


def _build(
    operation: OperationModel,
    protocol: str,
    timestamp: Converter,
    blob: Converter,
    raw: RawMode,
    keep: frozenset[str],
) -> tuple[CompiledParser | None, str]:
    if protocol not in PROTOCOLS:
        return None, f"# protocol {protocol} is not compiled"
    generator = _Generator(protocol, timestamp, blob, raw, keep)
    generator.namespace["_fail"] = _fail
    try:
        generator.entry(operation)
    except NotCompilable as exc:
        return None, f"# not compiled: {exc}"
    except RecursionError:
        return None, "# not compiled: shape too deep"
    source = "\n".join(generator.lines)
    code = compile(source, f"<asyncpager parser {operation.name}>", "exec")
    exec(code, generator.namespace)
    generator.link()
    parser: CompiledParser = generator.namespace["parse"]
    return parser, source


def _key(
    operation: OperationModel,
    protocol: str,
    timestamp: Converter,
    blob: Converter,
    raw: RawMode,
    keep: frozenset[str],
) -> tuple[Any, ...]:
    service = operation.service_model
    return (
        service.service_name,
        service.api_version,
        operation.name,
        protocol,
        timestamp,
        blob,
        raw,
        keep if raw else frozenset(),
    )


def compile_operation(
    operation: OperationModel,
    protocol: str,
    *,
    timestamp_parser: Converter,
    blob_parser: Converter = default_blob_parser,
    raw: RawMode = False,
    keep: frozenset[str] = frozenset(),
) -> CompiledParser | None:
    """The compiled parser of ``operation``'s successful responses, or
    ``None`` when it is not compiled (protocol, streaming, shape features).

    Built once per (service, API version, operation, protocol, converters,
    raw, kept members) and cached for the process. ``raw=True`` leaves
    values as decoded wherever a conversion can be skipped (see
    :func:`asyncpager.parsers.install`), except under the output members
    named in ``keep``, which the caller sends back (pagination tokens).

    The parser takes botocore's response dict (``body``, ``headers``,
    ``status_code``) and returns what ``parser.parse`` returns *before*
    ``HTTPStatusCode``/``HTTPHeaders`` are added; it raises
    :class:`Fallback` (or anything else) when botocore's parser must take
    the response.
    """
    key = _key(operation, protocol, timestamp_parser, blob_parser, raw, keep)
    entry = _CACHE.get(key)
    if entry is None:
        entry = _build(operation, protocol, timestamp_parser, blob_parser, raw, keep)
        _CACHE[key] = entry
    return entry[0]


def generated_source(
    operation: OperationModel,
    protocol: str,
    *,
    timestamp_parser: Converter,
    blob_parser: Converter = default_blob_parser,
    raw: RawMode = False,
    keep: frozenset[str] = frozenset(),
) -> str:
    """The Python source compiled for ``operation`` (or why there is none):
    for debugging and for reading what a page costs."""
    compile_operation(
        operation,
        protocol,
        timestamp_parser=timestamp_parser,
        blob_parser=blob_parser,
        raw=raw,
        keep=keep,
    )
    return _CACHE[_key(operation, protocol, timestamp_parser, blob_parser, raw, keep)][1]
