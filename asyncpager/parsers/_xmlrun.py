"""A run of like XML elements read by one regular expression, not as a tree.

Most of an S3 listing is one run: a thousand ``<Contents>`` elements in a
row, each a handful of ``<Tag>text</Tag>`` children in the model's order.
Building them as an ElementTree and walking it costs more than everything
else on the page (measured: 11-12 ms of a 21 ms, 600-key page in a running
listing; the tree's ten thousand objects are what the time goes to). So for
an output shape whose first flattened list holds structures of scalars (or
of flattened scalar lists, or of structures of scalars) this module:

* finds the run, from the first ``<Tag>`` to the last ``</Tag>``;
* reads every element with one compiled expression (``findall``) that
  accepts only the strict form: members in model order, each at most once,
  text without markup, nothing else between them;
* proves the run is exactly a sequence of such elements (as many matches
  as the run has opening and closing tags of the element, and one junction
  fewer), free of anything XML would reject or rewrite (control
  characters, ``\\r``, ``]]>``, undefined entities);
* parses what is left (the document with the run replaced by one empty
  element) as a tree, as before, which checks well-formedness and the root
  tag for the rest, and that the empty element stands where the run stood:
  a direct child of the root, and the only element of that name.

Most pages are more regular still: every element holds the same members as
the first (S3 sends the same five or seven for every object). Such a page is
read again by an expression made for exactly those members, which captures
their texts alone (no optional groups, nothing to cut off afterwards) and
takes a timestamp only in the usual ``YYYY-MM-DDTHH:MM:SS[.fff]Z`` shape, so
the compiled parser can read it without checking it again; a page where any
element differs is read by the general expression.

Whatever fails any of these leaves the body to the full tree, so the
outcome for malformed or unusual bodies is unchanged. What this accepts is
well-formed XML whose tree a walk would read to the same values: the texts
are the same strings once the five predefined entities and character
references are replaced, which :func:`unescape` does as expat does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as _dataclass_field
from typing import NamedTuple, TypeVar
from xml.etree import ElementTree as ETree

from botocore.model import Shape

__all__ = [
    "PARSED_RUN",
    "Field",
    "RunSpec",
    "UniformRun",
    "captures",
    "local_name",
    "run_spec",
    "split",
    "split_lines",
    "unescape",
]

T = TypeVar("T")

#: Where the S3 error check leaves the run it read, beside the reduced tree.
PARSED_RUN = "asyncpager_xml_run"

SCALARS = frozenset(
    {"string", "character", "integer", "long", "float", "double", "boolean", "timestamp", "blob"}
)
_LOCATIONS = ("header", "headers", "statusCode")

# Bytes of characters XML 1.0 forbids (C0 controls but tab and newline),
# ``\r`` (which expat rewrites), and sequences it rejects or forbids in text:
# bodies with any of them take the tree. Checked on the bytes, where a
# ``translate`` that drops every allowed byte is one fast pass (a regular
# expression scanning for a character class is ten times slower).
_CONTROL = bytes(b for b in range(32) if b not in (0x09, 0x0A))
_ALLOWED = bytes(b for b in range(256) if b not in _CONTROL)
_NOT_CHARACTERS = ("\ufffe".encode(), "\uffff".encode())
_BAD_AMPERSAND = re.compile(r"&(?!(?:lt|gt|amp|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);)")
_REFERENCE = re.compile(r"&(?:(lt|gt|amp|quot|apos)|#([0-9]+)|#x([0-9a-fA-F]+));")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}
# S3 quotes every ETag, so nearly every run holds ``&quot;``; one search for
# any other reference spares the two scans that validate references.
_OTHER_REFERENCE = re.compile("&(?!quot;)")


class _BadReference(Exception):
    pass


def _code_point(number: int) -> str:
    # XML 1.0's Char production: a reference to anything else is an error.
    if (
        number in (0x9, 0xA, 0xD)
        or 0x20 <= number <= 0xD7FF
        or 0xE000 <= number <= 0xFFFD
        or 0x10000 <= number <= 0x10FFFF
    ):
        return chr(number)
    raise _BadReference(number)


def _replace(match: re.Match[str]) -> str:
    named, decimal, hexadecimal = match.groups()
    if named is not None:
        return _NAMED[named]
    return _code_point(int(decimal) if decimal is not None else int(hexadecimal, 16))


def unescape(text: str) -> str:
    """``text`` with its references replaced, as expat replaces them (the
    run has been checked to hold no other ``&``)."""
    # S3 quotes every ETag: the common case is one plain replace.
    text = text.replace("&quot;", '"')
    if "&" not in text:
        return text
    return _REFERENCE.sub(_replace, text)


@dataclass(frozen=True)
class Field:
    """One member of the run's element structure, and where the match puts
    it: ``group`` is the index of the member's whole element (``<Tag>text
    </Tag>``) in a match's groups (``""`` when absent)."""

    name: str
    shape: Shape
    tag: str
    group: int
    #: "scalar", "list" (a flattened list of scalars) or "structure"
    kind: str
    #: For "structure": its scalar members.
    members: tuple[Field, ...] = ()


#: What the first element of a run holds of one member: ``ABSENT``; its
#: ``TEXT`` (for a flattened list: exactly one item); or, for a timestamp,
#: ``ZULU`` (the usual shape, captured without its ``Z``). A structure's entry
#: is ``None`` when absent, else a tuple of its members' entries.
ABSENT, TEXT, ZULU = 0, 1, 2
Entry = int | tuple[int, ...] | None
Signature = tuple[Entry, ...]

# The shapes ``_timestamps._zulu_naive`` hands to ``datetime.fromisoformat``,
# hour below 24 included: a Python whose fromisoformat reads ``T24:00`` as
# the next midnight would differ from dateutil, which rejects it.
_ZULU_TEXT = (
    "[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-9]{2}:[0-9]{2}(?:\\.[0-9]{3}|\\.[0-9]{6})?"
)
_ZULU = re.compile(_ZULU_TEXT + "Z")


@dataclass(frozen=True, slots=True)
class UniformRun:
    """The elements of a run that all hold the members of its first, read as
    ``re.split`` gives them: an empty string, then for each element the
    texts of those members in model order and an empty string. References
    are left in; ``references`` says what they may be: 0 none, 1 only
    ``&quot;``, 2 any (all valid: :func:`unescape` reads them)."""

    signature: Signature
    texts: list[str]
    references: int

    def __len__(self) -> int:
        return (len(self.texts) - 1) // (captures(self.signature) + 1)


class _Cut(NamedTuple):
    head: bytes
    raw: bytes
    run: str
    tail: bytes
    #: As :attr:`UniformRun.references`.
    references: int


@dataclass(frozen=True)
class RunSpec:
    member: str
    tag: str
    #: One element (groups: the fields' own, in order).
    element: re.Pattern[str]
    fields: tuple[Field, ...]
    #: For "list" fields: tag -> the expression reading its items' texts.
    items: dict[str, re.Pattern[str]]
    #: Signature -> the expression reading elements with exactly those
    #: members (see :class:`UniformRun`), made on first use.
    uniform: dict[Signature, re.Pattern[str]] = _dataclass_field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def opening(self) -> str:
        return f"<{self.tag}>"

    @property
    def closing(self) -> str:
        return f"</{self.tag}>"


def _member_tag(member: Shape, name: str) -> str:
    # BaseXMLResponseParser._member_key_name
    if member.type_name == "list" and member.serialization.get("flattened"):
        inner = member.member.serialization.get("name")
        if inner is not None:
            return str(inner)
    return str(member.serialization.get("name", name))


def _plain(shape: Shape) -> bool:
    return not (
        shape.serialization.get("location") in _LOCATIONS
        or shape.serialization.get("xmlAttribute")
        or shape.serialization.get("eventheader")
    )


def _scalar_members(shape: Shape) -> list[tuple[str, Shape, str]] | None:
    if shape.type_name != "structure" or shape.is_tagged_union or shape.is_document_type:
        return None
    members = []
    for name, member in shape.members.items():
        if not _plain(member) or member.type_name not in SCALARS:
            return None
        members.append((name, member, _member_tag(member, name)))
    return members


# Text up to the next tag; possessive, since a tag must follow anyway (and
# the engine then keeps no backtracking state: half the time of ``[^<]*``).
_TEXT = "[^<]*+"


class _Counter:
    def __init__(self) -> None:
        self.next = 0

    def take(self) -> int:
        taken = self.next
        self.next += 1
        return taken


def _element(shape: Shape) -> tuple[str, tuple[Field, ...]] | None:
    """The pattern of one element's children and their fields, or ``None``
    when the structure holds anything but the three plain kinds."""
    if shape.type_name != "structure" or shape.is_tagged_union or shape.is_document_type:
        return None
    groups = _Counter()
    parts: list[str] = []
    fields: list[Field] = []
    tags: set[str] = set()
    for name, member in shape.members.items():
        if not _plain(member):
            return None
        tag = _member_tag(member, name)
        if tag in tags:
            return None
        tags.add(tag)
        quoted = re.escape(tag)
        kind = member.type_name
        if kind in SCALARS:
            parts.append(f"(<{quoted}>{_TEXT}</{quoted}>)?")
            fields.append(Field(name, member, tag, groups.take(), "scalar"))
        elif (
            kind == "list"
            and member.serialization.get("flattened")
            and member.member.type_name in SCALARS
        ):
            parts.append(f"((?:<{quoted}>{_TEXT}</{quoted}>)*)")
            fields.append(Field(name, member, tag, groups.take(), "list"))
        elif kind == "structure":
            inner = _scalar_members(member)
            if inner is None:
                return None
            group = groups.take()
            inner_fields = []
            inner_parts = []
            for inner_name, inner_shape, inner_tag in inner:
                q = re.escape(inner_tag)
                inner_parts.append(f"(<{q}>{_TEXT}</{q}>)?")
                inner_fields.append(
                    Field(inner_name, inner_shape, inner_tag, groups.take(), "scalar")
                )
            if len({f.tag for f in inner_fields}) != len(inner_fields):
                return None
            parts.append(f"(<{quoted}>{''.join(inner_parts)}</{quoted}>)?")
            fields.append(Field(name, member, tag, group, "structure", tuple(inner_fields)))
        else:
            return None
    if not fields:
        return None
    return "".join(parts), tuple(fields)


def run_spec(shape: Shape | None) -> RunSpec | None:
    """The run to read for ``shape`` (a ``rest-xml`` output shape without a
    payload): its first flattened list of plain structures, if any."""
    if shape is None or shape.type_name != "structure":
        return None
    if shape.serialization.get("payload") is not None:
        return None
    for name, member in shape.members.items():
        if not _plain(member) or member.type_name != "list":
            continue
        if not member.serialization.get("flattened"):
            continue
        element = _element(member.member)
        if element is None:
            continue
        children, fields = element
        tag = _member_tag(member, name)
        inner_tags = {f.tag for f in fields} | {i.tag for f in fields for i in f.members}
        if tag in inner_tags:
            # split() counts the element's tags in the run to prove it is
            # tiled by the matches; a child of the same name would confuse it.
            continue
        quoted = re.escape(tag)
        items = {
            f.tag: re.compile(f"<{re.escape(f.tag)}>([^<]*)</{re.escape(f.tag)}>")
            for f in fields
            if f.kind == "list"
        }
        pattern = re.compile(f"<{quoted}>{children}</{quoted}>")
        return RunSpec(name, tag, pattern, fields, items)
    return None


# botocore's BaseXMLResponseParser._namespace_re.
_NS_RE = re.compile("{.*}")
_LOCAL_CACHE: dict[str, str] = {}


def local_name(tag: str) -> str:
    """botocore's ``_node_tag``: the tag without its ``{namespace}``."""
    local = _LOCAL_CACHE.get(tag)
    if local is None:
        local = _NS_RE.sub("", tag)
        if len(_LOCAL_CACHE) < 4096:
            _LOCAL_CACHE[tag] = local
    return local


def _cut(body: bytes, spec: RunSpec) -> _Cut | None:
    """The run cut out of ``body``, once it has nothing XML would reject or
    rewrite; ``None`` otherwise."""
    opening = f"<{spec.tag}>".encode()
    closing = f"</{spec.tag}>".encode()
    start = body.find(opening)
    if start < 0:
        return None
    end = body.rfind(closing)
    if end < start:
        return None
    end += len(closing)
    head, tail = body[:start], body[end:]
    # Comments, CDATA, doctypes and processing instructions (other than the
    # declaration) could hide or fake elements around the run.
    if b"<!" in head or b"<!" in tail or head.find(b"<?", 1) >= 0 or b"<?" in tail:
        return None
    raw = body[start:end]
    if raw.translate(None, _ALLOWED) or (b"]" in raw and b"]]>" in raw):
        return None
    # A byte is found at memchr's speed; several, at a tenth of it.
    if (
        b"\xef" in raw
        and b"\xef\xbf" in raw
        and (_NOT_CHARACTERS[0] in raw or _NOT_CHARACTERS[1] in raw)
    ):
        return None
    try:
        run = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    references = 0
    if "&" in run:
        references = 1
        if _OTHER_REFERENCE.search(run) is not None:
            references = 2
            if _BAD_AMPERSAND.search(run) is not None:
                return None
            if "&#" in run:
                try:
                    _REFERENCE.sub(_replace, run)
                except _BadReference:
                    return None
    return _Cut(head, raw, run, tail, references)


def _rest(
    head: bytes, tail: bytes, spec: RunSpec, parse_tree: Callable[[bytes], ETree.Element]
) -> ETree.Element | None:
    """The tree of the body with the run replaced by one empty element,
    when that element is where the run stood (see the module docstring)."""
    try:
        root = parse_tree(head + f"<{spec.tag}></{spec.tag}>".encode() + tail)
    except ETree.ParseError:
        return None
    found = [e for e in root.iter() if local_name(e.tag) == spec.tag]
    if len(found) != 1 or len(found[0]) or found[0].text is not None:
        return None
    if not any(child is found[0] for child in root):
        return None
    return root


def split(
    body: bytes, spec: RunSpec, parse_tree: Callable[[bytes], ETree.Element]
) -> tuple[ETree.Element, list[tuple[str, ...]] | UniformRun] | None:
    """``(tree of the rest, the run's matches)``, or ``None`` when the body
    must be read as a whole tree (see the module docstring). The matches are
    a :class:`UniformRun` when every element holds the members of the first."""
    cut = _cut(body, spec)
    if cut is None:
        return None
    run = cut.run
    matches: list[tuple[str, ...]] | UniformRun | None = _uniform(spec, run, cut.references)
    if matches is None:
        matches = spec.element.findall(run)
        # The matches tile the run exactly when every opening and closing tag
        # of the element in it belongs to a match (no text holds a "<", no
        # child has the element's name) and every match but the last is
        # followed by the next: k matches, k openings, k closings, k - 1
        # junctions. The run starts with an opening and ends with a closing
        # by construction.
        opening, closing = spec.opening, spec.closing
        count = len(matches)
        if (
            run.count(opening) != count
            or run.count(closing) != count
            or run.count(closing + opening) != count - 1
        ):
            return None
    root = _rest(cut.head, cut.tail, spec, parse_tree)
    return None if root is None else (root, matches)


#: Signatures remembered per run spec; a body that makes more (each element
#: shape its own) is read by the general expression.
_MAX_SIGNATURES = 64


def _uniform(spec: RunSpec, run: str, references: int) -> UniformRun | None:
    first = spec.element.match(run)
    if first is None:
        return None
    signature = _signature(spec, first.groups())
    if signature is None:
        return None
    pattern = spec.uniform.get(signature)
    if pattern is None:
        if len(spec.uniform) >= _MAX_SIGNATURES:
            return None
        pattern = spec.uniform[signature] = _uniform_pattern(spec, signature)
    # A match is one whole element (its tags are literal, its texts hold no
    # "<"), so the run is a sequence of them exactly when split() leaves
    # nothing between them: k + 1 empty strings, one before each element's
    # texts and one after the last. (Cheaper than counting tags.)
    texts = pattern.split(run)
    if any(texts[:: pattern.groups + 1]):
        return None
    return UniformRun(signature, texts, references)


def _entry(field: Field, element: str) -> int:
    if not element:
        return ABSENT
    if field.shape.type_name == "timestamp":
        text = element[len(field.tag) + 2 : -(len(field.tag) + 3)]
        if _ZULU.fullmatch(text) is not None:
            return ZULU
    return TEXT


def _signature(spec: RunSpec, groups: tuple[str, ...]) -> Signature | None:
    entries: list[Entry] = []
    for field in spec.fields:
        element = groups[field.group]
        if field.kind == "scalar":
            entries.append(_entry(field, element))
        elif field.kind == "list":
            found = len(spec.items[field.tag].findall(element)) if element else 0
            if found > 1:
                return None
            entries.append(TEXT if found else ABSENT)
        elif element:
            entries.append(tuple(_entry(m, groups[m.group]) for m in field.members))
        else:
            entries.append(None)
    signature = tuple(entries)
    # With nothing to capture, elements could not be told apart.
    return signature if captures(signature) else None


def captures(signature: Signature) -> int:
    """How many texts a :class:`UniformRun` of ``signature`` holds per element."""
    return sum(
        sum(1 for inner in entry if inner) if isinstance(entry, tuple) else int(bool(entry))
        for entry in signature
    )


def _uniform_pattern(spec: RunSpec, signature: Signature) -> re.Pattern[str]:
    def member(tag: str, entry: int) -> str:
        quoted = re.escape(tag)
        text = f"({_ZULU_TEXT})Z" if entry == ZULU else f"({_TEXT})"
        return f"<{quoted}>{text}</{quoted}>" if entry else ""

    parts = []
    for field, entry in zip(spec.fields, signature, strict=True):
        if isinstance(entry, tuple):
            inner = "".join(member(m.tag, e) for m, e in zip(field.members, entry, strict=True))
            parts.append(f"<{re.escape(field.tag)}>{inner}</{re.escape(field.tag)}>")
        elif entry is not None:
            parts.append(member(field.tag, entry))
    quoted = re.escape(spec.tag)
    return re.compile(f"<{quoted}>{''.join(parts)}</{quoted}>")


def split_lines(
    body: bytes,
    spec: RunSpec,
    parse_tree: Callable[[bytes], ETree.Element],
    to_lines: Callable[[bytes, int], T | None],
) -> tuple[ETree.Element, T] | None:
    """As :func:`split`, with the run made into JSON Lines by ``to_lines``
    (which checks its shape; it is also told what references the run holds,
    as :attr:`UniformRun.references`) instead of read into matches: ``(tree
    of the rest, what to_lines made)``."""
    cut = _cut(body, spec)
    if cut is None:
        return None
    made = to_lines(cut.raw, cut.references)
    if made is None:
        return None
    root = _rest(cut.head, cut.tail, spec, parse_tree)
    return None if root is None else (root, made)
